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
    try:  # Ctrl-C while the command modules load or the arguments are parsed: no traceback
        from m2v_search.cli.app import main as run_m2v

        return run_m2v(argv)
    except KeyboardInterrupt:  # a command's own interruption is handled (and said) inside
        return _interrupted_at_start("m2v")


def index_main(argv: Sequence[str] | None = None) -> int:
    """Run ``m2v-index``; returns the exit code (see ``m2v_search.cli.exit_codes``)."""
    try:
        from m2v_search.cli.app import index_main as run_index

        return run_index(argv)
    except KeyboardInterrupt:
        return _interrupted_at_start("m2v-index")


def _interrupted_at_start(prog: str) -> int:
    import sys

    print(f"{prog}: interrupted before it started; nothing was done", file=sys.stderr)
    return 130


__all__ = ["main", "index_main"]
