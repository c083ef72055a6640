"""The command line: ``m2v`` (distill, train, index ...) and ``m2v-index`` (= ``m2v index``).

    m2v distill MODEL -o OUT ...           m2v-index build CORPUS -o DIR ...
    m2v train TEACHER --corpus FILE ...    m2v index search DIR -q TEXT ...

Layout: ``registry`` (commands and groups), ``groups`` (the two groups and the modules that
register into them), ``options`` (shared option sets and value types), ``exit_codes`` (the
error class -> exit code table), ``app`` (parse, run, turn errors into one line), and one module
per family of commands (``distill``, ``train``, ``index_write``, ``index_read``).
"""

from __future__ import annotations

from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``m2v``; returns the exit code (see ``m2v_search.cli.exit_codes``)."""
    from m2v_search.cli.app import main as run_m2v

    return run_m2v(argv)


def index_main(argv: Sequence[str] | None = None) -> int:
    """Run ``m2v-index``; returns the exit code (see ``m2v_search.cli.exit_codes``)."""
    from m2v_search.cli.app import index_main as run_index

    return run_index(argv)


__all__ = ["main", "index_main"]
