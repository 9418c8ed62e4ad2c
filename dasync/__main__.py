"""``python -m dasync`` behaves like the ``dasync`` command (useful in venvs and tests)."""

from dasync.cli import main

raise SystemExit(main())
