"""``python -m api``: the ``heldar`` command without its console script (``python -m heldar`` would break the
rule that ``heldar/`` never imports ``api``)."""

from api.cli import main

raise SystemExit(main())
