"""``python -m m2v_search.index`` runs the ``m2v-index`` command (the CLI lives in m2v_search.cli)."""

import sys

from m2v_search.cli import index_main

sys.exit(index_main())
