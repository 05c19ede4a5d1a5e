"""README.md and docs/: their examples run against a real output, their tables match the
code, the architecture map names every module once, and the README stays short."""

import contextlib
import io
import os
import pathlib
import re

import pytest

from pipeline.options import help_text, options_parser
from pipeline.run import EXIT_OK, run
from schemas import LAYER_NAMES, alias_of, layer_shape

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (REPO_ROOT / "README.md").read_text()
DOCS = {path.name: path.read_text() for path in sorted((REPO_ROOT / "docs").glob("*.md"))}
CLI_DOC = DOCS["cli.md"]
MAPPED_PACKAGES = ("schemas", "models", "transforms", "pipeline", "deploy")


def test_layer_table_matches_layer_shape():
    rows = re.findall(r"^\| `(\w+)` \| (?:`(\w+)`)? *\| (\d+)×(\d+)×(\d+) \| (\d+)×(\d+)×(\d+) \| (\d+) \|$",
                      CLI_DOC, flags=re.M)
    assert [r[0] for r in rows] == list(LAYER_NAMES)
    for name, alias, *dims in rows:
        dims = [int(d) for d in dims]
        assert (alias or None) == alias_of(name)
        assert tuple(dims[0:3]) == layer_shape(name, 224)
        assert tuple(dims[3:6]) == layer_shape(name, "384x512")
        assert dims[6] == layer_shape(name, 224).channels


def test_every_option_is_documented():
    """docs/cli.md holds --help verbatim (so every option, in the parser's own words)."""
    block = re.search(r"```text\n(.*?)```", CLI_DOC, flags=re.S).group(1)
    assert block.rstrip() == help_text().rstrip(), "run: python scripts/cli_doc.py"
    for flag in [flag for action in options_parser()._actions for flag in action.option_strings]:
        assert f"[{flag}" in block, flag


def architecture_map() -> list[str]:
    """The module paths the README's architecture map names, in order."""
    section = README[README.index("## Architecture"):README.index("## Output layout")]
    block = re.search(r"```\n(.*?)```", section, flags=re.S).group(1)
    folder, named = None, []
    for line in block.splitlines():
        heading = re.match(r"^(\S+/)\s", line)
        if heading:
            folder = heading.group(1)
            continue
        module = re.match(r"^\s+(\w+\.py)\s", line)
        if module:
            named.append(folder + module.group(1))
    return named


def test_architecture_map_names_every_module_once():
    modules = sorted(str(path.relative_to(REPO_ROOT)) for package in MAPPED_PACKAGES
                     for path in (REPO_ROOT / package).rglob("*.py")
                     if not path.name.startswith("__"))
    named = architecture_map()
    assert len(named) == len(set(named)), [n for n in named if named.count(n) > 1]
    assert sorted(named) == modules


def test_readme_is_short_and_links_every_doc():
    assert len(README.splitlines()) <= 250
    for name in DOCS:
        assert f"(docs/{name})" in README, name
    assert "## Architecture" in README[:README.index("## Output layout")]


@pytest.fixture(scope="module")
def sample_output(tmp_path_factory):
    root = tmp_path_factory.mktemp("readme")
    argv = ["--input", str(REPO_ROOT / "samples/images/*"), "--output", str(root / "output"),
            "--weights", "random", "--image_size", "32", "--layers", "res4,res5"]
    assert run(argv) == EXIT_OK
    # An incremental root with two completed runs, for the "Incremental runs" examples.
    incremental = ["--input", str(REPO_ROOT / "samples/images/*"), "--output", str(root / "runs/embeddings"),
                   "--weights", "random", "--image_size", "32", "--layers", "res5", "--mode", "incremental"]
    assert run(incremental[:1] + [str(REPO_ROOT / "samples/images/[a-c]*")] + incremental[2:]) == EXIT_OK
    assert run(incremental) == EXIT_OK
    return root


PYTHON_BLOCKS = [block for text in [README, *DOCS.values()]
                 for block in re.findall(r"```python\n(.*?)```", text, flags=re.S)]


@pytest.mark.parametrize("block", PYTHON_BLOCKS, ids=[f"example{i}" for i in range(len(PYTHON_BLOCKS))])
def test_python_examples_run(block, sample_output):
    code = block.replace("'output/", f"'{sample_output}/output/").replace('"output/', f'"{sample_output}/output/')
    code = code.replace("'runs/", f"'{sample_output}/runs/").replace('"runs/', f'"{sample_output}/runs/')
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, "README.md or docs/", "exec"), {})
    text = printed.getvalue()
    assert text.strip()
    if "(8, 2048)" in block:
        assert "(8, 2048)" in text
    if "(8, 1024)" in block:
        assert "(8, 1024)" in text
    if "EmbedImages(config)" in block:
        assert text.split()[0] == "8" and "[2048]" in text
    if "RunInference(handler)" in block:
        assert sorted(text.splitlines()) == sorted(
            f"('{name}', (2048,))" for name in os.listdir(REPO_ROOT / "samples/images"))


def test_there_are_seven_examples():
    assert len(PYTHON_BLOCKS) == 7
