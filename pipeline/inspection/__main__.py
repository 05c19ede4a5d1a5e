"""``python -m pipeline.inspection``: see pipeline/inspection/cli.py."""

from pipeline.inspection.cli import console_main

console_main()
