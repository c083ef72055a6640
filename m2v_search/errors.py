"""Exceptions raised by m2v_search. Each one names the file or input at fault.

The command line maps each class to an exit code (``m2v_search.cli.exit_codes``); a new error
class only needs the right base class here to get the right code.
"""

from __future__ import annotations


class M2VSearchError(Exception):
    """Base class for every error this library raises on purpose."""


class InvalidInputError(M2VSearchError, ValueError):
    """Input data (a corpus line, a query, a metadata value, an argument) is malformed."""


class _NamesParameter:
    """An error about one argument of a call; ``param`` names it (the HTTP server's ``param``)."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


class ArgumentError(_NamesParameter, InvalidInputError):
    """An argument's value is refused (a bad mode, alpha or k, an empty query)."""


class ArgumentTypeError(_NamesParameter, M2VSearchError, TypeError):
    """An argument is of the wrong type (a str where a list of queries belongs)."""


class ModelLoadError(M2VSearchError, ValueError):
    """A model folder is missing, incomplete or corrupt, or a hub id cannot be resolved."""


class HubUnavailableError(ModelLoadError):
    """A hub id was given but the Hugging Face hub cannot be reached (or is disabled).

    Attributes:
        repo_id: the hub id asked for (None when unknown).
    """

    def __init__(self, message: str, repo_id: str | None = None) -> None:
        super().__init__(message)
        self.repo_id = repo_id
