"""Rewrite the ``--help`` block of docs/cli.md from the options parser (after an option
changes; tests/test_readme.py checks that they agree): ``python scripts/cli_doc.py``."""

from __future__ import annotations

import pathlib
import re
import sys

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from pipeline.options import help_text  # noqa: E402  (after the path is set)


def main() -> None:
    path = REPO_ROOT / "docs" / "cli.md"
    text = path.read_text()
    block = "```text\n" + help_text().rstrip() + "\n```"
    path.write_text(re.sub(r"```text\n.*?```", lambda _: block, text, count=1, flags=re.S))
    print(f"rewrote the --help block of {path}")


if __name__ == "__main__":
    main()
