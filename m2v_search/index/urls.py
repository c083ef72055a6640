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


S3_TIMEOUT = 30.0  # seconds a socket read to S3 may wait (M2V_S3_TIMEOUT): an endpoint that never answers
# protocols whose URLs start with a bucket (container); Azure's carry ``container@account`` there
BUCKET_PROTOCOLS = ("s3", "s3a", "gs", "gcs", "az", "abfs", "abfss")
_NO_USERINFO = ("s3", "s3a", "gs", "gcs")  # an ``@`` in the bucket part can only be credentials


def redact(url: str) -> str:
    """``url`` without a ``user:password@`` part or a query string (presigned URLs carry their
    signature there), for logs and error messages."""
    scheme, separator, rest = url.partition("://")
    if not separator:
        return url
    authority, slash, path = rest.partition("/")
    if "@" in authority:
        authority = "***@" + authority.rsplit("@", 1)[1]
    if "?" in path:
        path = path.split("?", 1)[0] + "?***"
    return f"{scheme}://{authority}{slash}{path}"


def filesystem(url: str) -> tuple[Any, str]:
    """(fsspec filesystem, path inside it) for ``url``; the listing cache is dropped for fresh reads.

    Raises:
        URLError: no filesystem serves the URL, or an object-store URL carries credentials (its
            backend would read them as a bucket name, and echo them in its error).
    """
    import fsspec

    refuse_credentials(url)
    options = storage_options(url)
    try:
        fs, path = fsspec.core.url_to_fs(url, **options)
    except ImportError as error:
        raise URLError(f"cannot read {redact(url)}: {error} (for s3://: pip install "
                       "'m2v-search[s3]')") from None
    except ValueError as error:
        raise URLError(f"cannot read {redact(url)}: {error}") from None
    fs.invalidate_cache()
    if options and hasattr(fs, "retries"):
        fs.retries = 2  # s3fs's own retries around botocore's (5 by default)
    return fs, path


def refuse_credentials(url: str) -> None:
    """Refuse an object-store URL with a ``user:secret@`` part: its backend would take them for a
    bucket name and print them in its error.

    Raises:
        URLError: such a URL (the message shows it redacted).
    """
    scheme, _, rest = url.partition("://")
    if scheme.lower() in _NO_USERINFO and "@" in rest.partition("/")[0]:
        raise URLError(f"{redact(url)}: {scheme}:// URLs cannot carry credentials; give them the usual way "
                       "(environment variables such as AWS_ACCESS_KEY_ID, a profile, or a role)")


def storage_options(url: str) -> dict[str, Any]:
    """Options for an ``s3://`` filesystem: socket timeouts and few retries, so that an endpoint that
    accepts connections but never answers fails in about two minutes instead of hanging (unless
    fsspec's configuration sets ``config_kwargs`` itself)."""
    if url.partition("://")[0].lower() not in ("s3", "s3a"):
        return {}
    import fsspec.config

    if "config_kwargs" in fsspec.config.conf.get("s3", {}):
        return {}
    try:
        timeout = float(os.environ.get("M2V_S3_TIMEOUT", S3_TIMEOUT))
    except ValueError:
        timeout = S3_TIMEOUT
    return {"config_kwargs": {"connect_timeout": min(timeout, 10.0), "read_timeout": timeout,
                              "retries": {"max_attempts": 2}}}


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


def bucket_of(fs: Any, path: str) -> str | None:
    """The bucket (or container) ``path`` lies in on an object store's filesystem ``fs``; None for
    filesystems without buckets (local, memory, HTTP)."""
    protocols = {fs.protocol} if isinstance(fs.protocol, str) else set(fs.protocol)
    return path.strip("/").split("/", 1)[0] if protocols & set(BUCKET_PROTOCOLS) else None
