"""The two command groups: ``m2v`` and ``m2v-index`` (also ``m2v index``).

Command modules register into these with ``@M2V.command(...)`` / ``@INDEX.command(...)``;
``m2v_search.cli.app`` imports the modules listed in ``COMMAND_MODULES``.
"""

from __future__ import annotations

from m2v_search.cli.exit_codes import MEANINGS
from m2v_search.cli.registry import CommandGroup

_EXIT_CODES = "exit codes:\n" + "\n".join(f"  {code:>3}  {meaning}" for code, meaning in MEANINGS.items())

M2V = CommandGroup(
    "m2v", "m2v-search: static text embeddings (distil, train) and vector search (index ...).",
    epilog=_EXIT_CODES)
INDEX = CommandGroup(
    "m2v-index", "Index a text corpus with a static embedding model and FAISS, then search it.",
    epilog=_EXIT_CODES, help="build, search, add to, delete from, inspect and verify an index (m2v-index)",
    interrupt_hint="the index on disk is unchanged")

# Modules whose import registers commands, in the order they are listed in --help.
COMMAND_MODULES = (
    "m2v_search.cli.distill",
    "m2v_search.cli.train",
    "m2v_search.cli.export",
    "m2v_search.cli.encode",
    "m2v_search.cli.index_write",
    "m2v_search.cli.index_read",
    "m2v_search.cli.index_hybrid",
    "m2v_search.cli.index_serve",
)
