"""``python -m zhizao``: the ``zhizao`` command."""

from zhizao.cli import main

raise SystemExit(main())
