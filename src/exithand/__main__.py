"""``python -m exithand`` runs the CLI."""

from .cli import main

raise SystemExit(main())
