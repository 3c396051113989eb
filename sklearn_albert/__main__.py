"""``python -m sklearn_albert``: the ``sklearn-albert`` command line."""

from ._cli import main

raise SystemExit(main())
