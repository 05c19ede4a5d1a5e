"""``python -m pipeline.inspection``: see pipeline/inspection/cli.py."""

from pipeline.inspection.cli import main

raise SystemExit(main())
