"""Subcommand registration: a command is a name, a run function, its own arguments and the
shared option sets it takes; a group of commands becomes an argparse parser (or a subcommand
of another group: ``m2v index build`` is the ``m2v-index build`` command).

Adding a command takes one decorated function (and one adding its arguments), e.g.::

    def _serve_arguments(parser):
        parser.add_argument("index_dir", type=Path, metavar="DIR")
        parser.add_argument("--port", type=bounded_int(1, 65535), default=8000)

    @INDEX.command("serve", help="serve DIR over HTTP", options=("common", "model"),
                   arguments=_serve_arguments)
    def serve(args):
        from m2v_search.server import serve
        serve(args.index_dir, port=args.port, model=args.model)
        return EXIT_OK

Run functions import heavy modules inside, so building the parser stays cheap.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from m2v_search._version import __version__
from m2v_search.cli.options import OPTION_SETS

RunFunction = Callable[[argparse.Namespace], int]
ArgumentsFunction = Callable[[argparse.ArgumentParser], None]


@dataclass(frozen=True)
class Command:
    """One subcommand: ``run(args)`` returns its exit code; errors map through the exit-code table."""

    name: str
    run: RunFunction
    help: str
    arguments: ArgumentsFunction | None = None
    options: tuple[str, ...] = ("common",)
    description: str | None = None

    def add_to(self, subparsers: argparse._SubParsersAction, prog: str, interrupt_hint: str = "") -> None:
        """Add this command's parser (shared option sets, then its own arguments) to ``subparsers``."""
        parser = subparsers.add_parser(self.name, help=self.help, description=self.description or self.help,
                                       allow_abbrev=False)
        for name in self.options:
            OPTION_SETS[name](parser)
        if self.arguments is not None:
            self.arguments(parser)
        parser.set_defaults(run=self.run, command_parser=parser, command_name=f"{prog} {self.name}",
                            interrupt_hint=interrupt_hint)


@dataclass
class CommandGroup:
    """A command with subcommands (``m2v``, ``m2v-index`` / ``m2v index``)."""

    prog: str
    description: str
    epilog: str | None = None
    commands: dict[str, Command | CommandGroup] = field(default_factory=dict)
    help: str = ""
    interrupt_hint: str = ""  # what to tell the user after Ctrl-C in one of these commands

    def command(self, name: str, *, help: str, options: Sequence[str] = ("common",),
                arguments: ArgumentsFunction | None = None,
                description: str | None = None) -> Callable[[RunFunction], RunFunction]:
        """Decorator registering ``run`` as the subcommand ``name`` of this group.

        Args:
            name: the subcommand's name (``m2v-index NAME``).
            help: one line for the group's ``--help``.
            options: shared option sets the command takes (keys of ``options.OPTION_SETS``:
                ``common``, ``threads``, ``corpus``, ``model``).
            arguments: adds the command's own arguments to its parser.
            description: longer text for the command's ``--help`` (default: ``help``).

        Returns:
            A decorator that registers ``run(args) -> exit code`` and returns it unchanged.

        Raises:
            ValueError: an unknown option set, or (when decorating) a name registered twice.
        """
        unknown = set(options) - set(OPTION_SETS)
        if unknown:
            raise ValueError(f"unknown option sets {sorted(unknown)}; known: {sorted(OPTION_SETS)}")

        def register(run: RunFunction) -> RunFunction:
            self.add(Command(name, run, help, arguments, tuple(options), description))
            return run

        return register

    def add(self, command: Command | CommandGroup, name: str | None = None) -> None:
        """Register a command, or a group as a subcommand named ``name``.

        Args:
            command: a Command, or a CommandGroup (then ``name`` is its subcommand name).
            name: the name to register under (default: the command's name or the group's prog).

        Raises:
            ValueError: the name is registered already.
        """
        key = name or (command.name if isinstance(command, Command) else command.prog)
        if key in self.commands:
            raise ValueError(f"{self.prog} {key} is registered twice")
        self.commands[key] = command

    def build_parser(self, prog: str | None = None) -> argparse.ArgumentParser:
        """The argparse parser of this group as a top-level command.

        Args:
            prog: the program name shown in usage and error lines (default: the group's).

        Returns:
            A parser whose namespace holds ``run``, ``command_parser`` and ``command_name``.
        """
        parser = argparse.ArgumentParser(prog=prog or self.prog, description=self.description, epilog=self.epilog,
                                         allow_abbrev=False, formatter_class=argparse.RawDescriptionHelpFormatter)
        parser.add_argument("-v", "--verbose", action="store_true", help="log details (debug level) to stderr")
        parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
        self._add_commands(parser, prog or self.prog)
        return parser

    def _add_commands(self, parser: argparse.ArgumentParser, prog: str) -> None:
        subparsers = parser.add_subparsers(dest=f"{prog.replace(' ', '_')}_command", metavar="COMMAND")
        parser.set_defaults(run=None, command_parser=parser, command_name=prog)
        for name, command in self.commands.items():
            if isinstance(command, Command):
                command.add_to(subparsers, prog, self.interrupt_hint)
            else:
                child = subparsers.add_parser(name, help=command.help or command.description,
                                              description=command.description, epilog=command.epilog,
                                              allow_abbrev=False,
                                              formatter_class=argparse.RawDescriptionHelpFormatter)
                command._add_commands(child, f"{prog} {name}")
