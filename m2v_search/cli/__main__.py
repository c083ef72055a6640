"""``python -m m2v_search.cli`` runs the ``m2v`` command."""

import sys

from m2v_search.cli import main

sys.exit(main())
