"""fsspec URLs (``s3://``, ``gs://``, ``az://``...): recognising them, naming them safely in
logs, and getting their filesystem. fsspec is imported only when a URL is used; credentials
are found by the filesystem's backend the usual way (environment, config files, roles).
"""

from __future__ import annotations

import os
import sys
from typing import Any

from m2v_search.index.errors import IndexError_


class URLError(IndexError_, ValueError):
    """No filesystem serves this URL (unknown protocol, or its package is not installed)."""


def is_url(source: str | os.PathLike[str]) -> bool:
    """Whether ``source`` names a file through an fsspec protocol (``s3://``, ``gs://``, ``memory://``...)."""
    return "://" in os.fspath(source) and not os.fspath(source).startswith("file://")


def redact(url: str) -> str:
    """``url`` without a ``user:password@`` part, for logs and error messages."""
    scheme, separator, rest = url.partition("://")
    if not separator:
        return url
    authority, slash, path = rest.partition("/")
    if "@" in authority:
        authority = "***@" + authority.rsplit("@", 1)[1]
    return f"{scheme}://{authority}{slash}{path}"


def filesystem(url: str) -> tuple[Any, str]:
    """(fsspec filesystem, path inside it) for ``url``; the listing cache is dropped for fresh reads."""
    import fsspec

    try:
        fs, path = fsspec.core.url_to_fs(url)
    except ImportError as error:
        raise URLError(f"cannot read {redact(url)}: {error} (for s3://: pip install "
                       "'m2v-search[s3]')") from None
    except ValueError as error:
        raise URLError(f"cannot read {redact(url)}: {error}") from None
    fs.invalidate_cache()
    return fs, path


def storage_errors() -> tuple[type[BaseException], ...]:
    """The exceptions a failed object-storage call raises: ``OSError`` (what s3fs makes of the
    server's refusals), and botocore's own errors, which are no ``OSError``
    (``EndpointConnectionError`` for a mistyped endpoint, ``NoCredentialsError``...).

    botocore is looked up only among the modules already imported: if it is not loaded, no call
    can have raised one of its errors. Use it as ``except storage_errors() as error:``.

    Returns:
        The exception classes.
    """
    botocore = sys.modules.get("botocore.exceptions")
    base = getattr(botocore, "BotoCoreError", None)
    return (OSError,) if base is None else (OSError, base)


def local_path(text: str | os.PathLike[str]) -> str:
    """A local path given plainly or as a ``file://`` URL, as a plain path."""
    value = os.fspath(text)
    return value[len("file://"):] if value.startswith("file://") else value
