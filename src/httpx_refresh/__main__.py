"""``python -m httpx_refresh``: the command-line interface."""

from ._cli import main

raise SystemExit(main())
