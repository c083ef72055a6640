"""Running a command: parse, set up logging, run, and turn any error into one line and an exit code.

Results go to stdout; logs and progress bars to stderr. No traceback reaches the user unless
``--debug`` (or ``M2V_DEBUG=1``) asks for it; the exit code comes from ``exit_codes``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
import threading
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from m2v_search.cli.exit_codes import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SYSTEM,
    EXIT_TERMINATED,
    EXIT_USAGE,
    UsageError,
    describe,
    exit_code_for,
)
from m2v_search.cli.groups import COMMAND_MODULES, INDEX, M2V

_registered = False


def _register_commands() -> None:
    global _registered
    if not _registered:
        for module in COMMAND_MODULES:
            importlib.import_module(module)
        M2V.add(INDEX, "index")
        _registered = True


def build_parser(prog: str = "m2v") -> argparse.ArgumentParser:
    """The parser of ``m2v`` (``prog="m2v"``) or of ``m2v-index`` (``prog="m2v-index"``)."""
    _register_commands()
    return (INDEX if prog == "m2v-index" else M2V).build_parser(prog)


def main(argv: Sequence[str] | None = None) -> int:
    """The ``m2v`` command (``m2v distill``, ``m2v train``, ``m2v index build`` ...)."""
    return run(build_parser("m2v"), argv)


def index_main(argv: Sequence[str] | None = None) -> int:
    """The ``m2v-index`` command: the same as ``m2v index``."""
    return run(build_parser("m2v-index"), argv)


class _Terminated(BaseException):
    """Raised in the main thread when SIGTERM arrives, so that a command unwinds (its ``finally``
    blocks and context managers run: temporary files go, locks are released) instead of dying."""


@contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """Turn SIGTERM into :class:`_Terminated` while a command runs (main thread, default handler only)."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield
        return

    def terminate(signum: int, frame: Any) -> None:
        raise _Terminated

    signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _forget_commits() -> None:
    """Start a command with no commits recorded (commands run one after another in one process too)."""
    generations = sys.modules.get("m2v_search.index.generations")
    if generations is not None:
        generations.COMMITTED.clear()


def _committed(args: argparse.Namespace) -> bool:
    """Whether this process committed a generation to the index (a build's checkpoints do not count,
    nor the local work folder of a build whose output is a URL: its upload may not have finished)."""
    generations = sys.modules.get("m2v_search.index.generations")
    if generations is None:
        return False
    from m2v_search.index.build import STAGING
    from m2v_search.index.urls import is_url

    if is_url(str(getattr(args, "output", ""))):
        return False

    return any(path.name != STAGING for path in generations.COMMITTED)


def _resumable(args: argparse.Namespace) -> bool:
    """Whether the interrupted command can continue with ``--resume``: a local build into a local
    folder (Dask builds and URL outputs keep no checkpoint)."""
    from m2v_search.index.urls import is_url

    return (hasattr(args, "resume") and getattr(args, "engine", "local") == "local"
            and not is_url(str(getattr(args, "output", ""))))


def run(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    """Parse ``argv`` with ``parser`` and run the chosen command.

    Args:
        parser: a parser from ``CommandGroup.build_parser``.
        argv: the arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit code: the command's, or the exit-code table's for the error it raised.

    Raises:
        SystemExit: argument errors (code 2) and ``--help`` (code 0), through argparse.
    """
    args, unknown = parser.parse_known_args(_checked_arguments(parser, argv))
    if unknown:  # said with the subcommand's usage line, not the top-level one
        getattr(args, "command_parser", parser).error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.run is None:  # a group without its subcommand
        args.command_parser.print_help(sys.stderr)
        return EXIT_USAGE
    if sys.stdout is None:  # started with stdout closed (`>&-`): results would have nowhere to go
        print(f"{args.command_name}: error: standard output is closed; redirect it to a file or /dev/null",
              file=sys.stderr)
        return EXIT_SYSTEM
    offline_by_us = "HF_HUB_OFFLINE" not in os.environ
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    debug = bool(getattr(args, "debug", False) or os.environ.get("M2V_DEBUG"))
    with _logging_to_stderr(args.command_name.split()[0], quiet=getattr(args, "quiet", False),
                            verbose=getattr(args, "verbose", False)):
        try:
            _forget_commits()
            with _sigterm_unwinds():
                return int(args.run(args) or EXIT_OK)
        except UsageError as error:
            args.command_parser.error(str(error))  # exits 2 with the command's usage line
            return EXIT_USAGE
        except (KeyboardInterrupt, _Terminated) as stop:
            hint = getattr(args, "interrupt_hint", "")
            if hint and _committed(args):  # the signal came after the new generation was in place
                hint = "its change was committed before the signal, and the index on disk holds it"
            elif hint and _resumable(args):  # a command that can pick up where it stopped (build)
                hint += "; the same command with --resume continues"
            what = "terminated (SIGTERM)" if isinstance(stop, _Terminated) else "interrupted"
            print(f"{args.command_name}: {what}{'; ' + hint if hint else ''}", file=sys.stderr)
            return EXIT_TERMINATED if isinstance(stop, _Terminated) else EXIT_INTERRUPTED
        except BrokenPipeError:  # e.g. piped into `head`: stop quietly
            _silence_stdout()
            return EXIT_OK
        except Exception as error:  # noqa: BLE001 - every error becomes one line and a documented code
            code = exit_code_for(error)
            if debug and code == EXIT_ERROR:
                raise
            print(f"{args.command_name}: error: {_offline_hub_message(error) if offline_by_us else describe(error)}",
                  file=sys.stderr)
            if debug:
                import traceback

                traceback.print_exception(error, file=sys.stderr)
            return code


def _checked_arguments(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> list[str]:
    """The arguments, refusing text that cannot be UTF-8 (lone surrogates from undecodable bytes)."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    for position, argument in enumerate(arguments, 1):
        argument = str(argument)
        try:
            argument.encode("utf-8")
        except UnicodeEncodeError:
            shown = argument.encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace")
            parser.error(f"argument {position} ({shown}) is not valid UTF-8 text")
        arguments[position - 1] = argument
    return arguments


def _silence_stdout() -> None:
    try:  # further writes (and the interpreter's final flush) must not raise again
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # not a real file (in-process tests)
        pass


class _CurrentStderr(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record is emitted (not when it was made)."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


@contextmanager
def _logging_to_stderr(prefix: str, *, quiet: bool, verbose: bool) -> Iterator[None]:
    """For one command: our logs on stderr (info; warnings only with --quiet; debug with -v), other
    libraries' from warnings up; the loggers are put back as they were afterwards (main() may run
    in-process)."""
    ours, faiss_logger = logging.getLogger("m2v_search"), logging.getLogger("faiss")
    saved = (ours.handlers[:], ours.propagate, ours.level, faiss_logger.level)
    handler = _CurrentStderr()
    handler.setFormatter(logging.Formatter(f"{prefix}: %(message)s"))
    ours.handlers[:] = [handler]
    ours.propagate = False
    ours.setLevel(logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO)
    faiss_logger.setLevel(logging.WARNING)
    shown = warnings.showwarning

    def one_line(message: Warning | str, category: type[Warning], filename: str, *args: Any, **kwargs: Any) -> None:
        """This library's warnings (``warnings.warn`` in its code) as one log line, not Python's
        file:line: Category: text and the source line; other libraries' as Python shows them."""
        if f"{os.sep}m2v_search{os.sep}" in filename:
            ours.warning("%s", message)
        else:
            shown(message, category, filename, *args, **kwargs)

    warnings.showwarning = one_line
    try:
        yield
    finally:
        warnings.showwarning = shown
        ours.handlers[:], ours.propagate = saved[0], saved[1]
        ours.setLevel(saved[2])
        faiss_logger.setLevel(saved[3])


def _offline_hub_message(error: Exception) -> str:
    """A hub id the CLI would not download (it set HF_HUB_OFFLINE itself), said as the CLI's choice."""
    from m2v_search.errors import HubUnavailableError
    from m2v_search.persistence import bundled_model_names

    if not isinstance(error, HubUnavailableError):
        return describe(error)
    if error.repo_id is None:  # e.g. a teacher's hub id for distill: the message says what to download
        return f"{describe(error)} (the m2v commands set HF_HUB_OFFLINE=1 unless you set it: HF_HUB_OFFLINE=0 " \
               "allows downloads)"
    return (f"{error.repo_id!r} is not a model folder, and the m2v commands do not download models (run with "
            f"HF_HUB_OFFLINE=0 to allow it): give a model folder, or a bundled model "
            f"({', '.join(bundled_model_names())})")
