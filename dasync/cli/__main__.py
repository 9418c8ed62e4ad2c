"""``python -m dasync.cli`` behaves like the ``dasync`` command."""

from . import main

raise SystemExit(main())
