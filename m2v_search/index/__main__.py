"""``python -m m2v_search.index`` runs the ``m2v-index`` command."""

import sys

from m2v_search.index.cli import main

sys.exit(main())
