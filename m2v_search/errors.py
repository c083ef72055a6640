"""Exceptions raised by m2v_search. Each one names the file or input at fault."""

from __future__ import annotations


class M2VSearchError(Exception):
    """Base class for every error this library raises on purpose."""


class ModelLoadError(M2VSearchError, ValueError):
    """A model folder is missing, incomplete or corrupt, or a hub id cannot be resolved."""


class HubUnavailableError(ModelLoadError):
    """A hub id was given but the Hugging Face hub cannot be reached (or is disabled)."""
