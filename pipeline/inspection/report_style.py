"""The report page's style sheet and its one script: the script adds up every run's counts
and says in ``#check`` whether they equal the totals row (a page whose script did not run
says so too)."""

PAGE_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
tr.total td { font-weight: bold; }
.gallery { display: flex; flex-wrap: wrap; gap: 0.5em; align-items: flex-start; margin-bottom: 0.8em; }
.thumb { margin: 0; width: 104px; font-size: 11px; overflow-wrap: anywhere; }
.thumb img { max-width: 96px; max-height: 96px; display: block; }
.placeholder { width: 96px; height: 72px; background: #eee; color: #900; display: flex;
               align-items: center; justify-content: center; text-align: center; font-size: 11px; }
.message { font-size: 12px; color: #900; max-width: 30em; }
.note { color: #555; font-size: 12px; }
#check.ok { color: #060; } #check.bad { color: #900; font-weight: bold; }
"""

PAGE_CHECK_SCRIPT = """
(function () {
  var check = document.getElementById("check");
  var names = ["matched", "embedded", "errors", "skipped"];
  var wrong = names.filter(function (name) {
    var sum = 0;
    document.querySelectorAll('tr.run td[data-count="' + name + '"]').forEach(function (cell) {
      sum += Number(cell.textContent);
    });
    return sum !== Number(document.getElementById("total-" + name).textContent);
  });
  check.textContent = wrong.length ? "counts do not add up: " + wrong.join(", ") : "counts add up";
  check.className = wrong.length ? "bad" : "ok";
})();
"""
