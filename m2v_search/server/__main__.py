"""``python -m m2v_search.server INDEX --port N``."""

import sys

from m2v_search.server.cli import main

sys.exit(main())
