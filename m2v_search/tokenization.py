"""Tokenizer backends that turn a batch of texts into flat token-id arrays.

Every backend returns ``(ids, offsets)``: ``ids`` is a flat int32 array of all token ids
of the batch, ``offsets`` an int64 array of ``len(texts) + 1`` row boundaries (text ``i``
owns ``ids[offsets[i]:offsets[i + 1]]``). No special tokens are added; truncation keeps
the first ``max_length`` tokens.

The reference backend is Hugging Face ``tokenizers``. Faster backends are used only when
they are installed, support the tokenizer, and give exactly the same ids on a built-in set
of hard strings (checked at load time); otherwise the reference is used.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import threading
from itertools import chain
from typing import Any, Protocol

import numpy as np
from tokenizers import Tokenizer

logger = logging.getLogger(__name__)

BACKEND_ENV_VAR = "M2V_TOKENIZER_BACKEND"
BACKEND_CHOICES = ("auto", "hf", "nanotoken", "fastokens")

# Strings that tend to expose differences between tokenizer implementations.
PARITY_STRINGS: tuple[str, ...] = (
    "",
    " ",
    "Hello, world!",
    "The QUICK brown Fox jumped over the lazy dog's back.",
    "Café naïve résumé coöperate Ångström façade",
    "e\u0301 a\u0300 combining marks o\u0308",
    "東京は日本の首都です。北京是中国的首都。",
    "한국어 텍스트와 ひらがな カタカナ",
    "Emoji: 😀👍🏽👨‍👩‍👧‍👦 🇳🇱 ❤️",
    "control\x00chars\x01\x07\x1b[0m tab\tnew\nline\r\n",
    "zero\u200bwidth\u200c\u200djoiners\ufeff",
    "exotic\u00a0spaces\u2003\u3000here\u2028\u2029",
    "Supercalifragilisticexpialidocious" * 8,
    "a" * 250,
    "ΟΔΥΣΣΕΥΣ Ὀδυσσεύς σοφός ς",
    "İstanbul ılık ıŞığı",
    "ﬁne ﬂour ǅ ½ ² ℌ",
    "العربية من اليمين إلى اليسار עברית",
    "हिन्दी भाषा ภาษาไทย",
    "[CLS] [SEP] [MASK] [PAD] [UNK] <s> </s> <unk>",
    "price: $1,234.56 (≈ €1.1k) 50% 3/4 1e-9",
    "https://example.com/path?q=1&x=y#frag user@example.org",
    "def f(x):\n    return x**2  # comment",
    "MiXeD CaSe WoRdS ALLCAPS lowercase",
    "\ue000private\U000f0000use\uffff\ufffe",
    "...!!!???---___***",
)


class TokenizerBackend(Protocol):
    """Turns texts into flat token ids; see the module docstring for the contract."""

    name: str

    def encode_flat(self, texts: list[str], max_length: int | None) -> tuple[np.ndarray, np.ndarray]: ...


def _offsets_from_lengths(lengths: np.ndarray) -> np.ndarray:
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return offsets


class _PerMaxLength:
    """Keeps one tokenizer object per truncation length, since truncation is object state."""

    def __init__(self, make: Any) -> None:
        self._make = make
        self._by_max_length: dict[int | None, Any] = {}
        self._lock = threading.Lock()

    def _for_max_length(self, max_length: int | None) -> Any:
        tokenizer = self._by_max_length.get(max_length)
        if tokenizer is None:
            with self._lock:
                tokenizer = self._make()
                tokenizer.no_padding() if hasattr(tokenizer, "no_padding") else None
                if max_length is None:
                    tokenizer.no_truncation()
                else:
                    tokenizer.enable_truncation(max_length)
                self._by_max_length[max_length] = tokenizer
        return tokenizer


class HFTokenizerBackend(_PerMaxLength):
    """The reference backend: Hugging Face ``tokenizers`` (multi-threaded in Rust)."""

    name = "hf"

    def __init__(self, tokenizer: Tokenizer) -> None:
        super().__init__(lambda: copy.deepcopy(tokenizer))

    def encode_flat(self, texts: list[str], max_length: int | None) -> tuple[np.ndarray, np.ndarray]:
        encodings = self._for_max_length(max_length).encode_batch_fast(texts, add_special_tokens=False)
        id_lists = [encoding.ids for encoding in encodings]
        lengths = np.fromiter(map(len, id_lists), dtype=np.int64, count=len(id_lists))
        offsets = _offsets_from_lengths(lengths)
        ids = np.fromiter(chain.from_iterable(id_lists), dtype=np.int32, count=int(offsets[-1]))
        return ids, offsets


class NanotokenBackend:
    """WordPiece through ``nanotoken`` (exact, many times faster); loaded from JSON text only."""

    name = "nanotoken"

    def __init__(self, tokenizer: Tokenizer) -> None:
        import nanotoken

        # from_json never touches the network, unlike nanotoken.Tokenizer(name).
        self._tokenizer = nanotoken.WordPieceTokenizer.from_json(tokenizer.to_str())

    def encode_flat(self, texts: list[str], max_length: int | None) -> tuple[np.ndarray, np.ndarray]:
        ids, offsets = self._tokenizer.encode_batch(
            texts, add_special_tokens=False, max_length=max_length, parallel=len(texts) >= _PARALLEL_FROM
        )
        return ids.astype(np.int32), offsets.astype(np.int64, copy=False)


class FastokensBackend(_PerMaxLength):
    """BPE (and other) tokenizers through ``fastokens``, returning flat buffers."""

    name = "fastokens"

    def __init__(self, tokenizer: Tokenizer) -> None:
        import fastokens

        text = tokenizer.to_str()
        super().__init__(lambda: fastokens.Tokenizer.from_json_str(text))
        self._for_max_length(None)  # fail now if fastokens cannot read this tokenizer.json

    def encode_flat(self, texts: list[str], max_length: int | None) -> tuple[np.ndarray, np.ndarray]:
        ids, offsets = self._for_max_length(max_length).encode_batch_flat(texts, add_special_tokens=False)
        return (np.frombuffer(ids, dtype="<u4").astype(np.int32),
                np.frombuffer(offsets, dtype="<u8").astype(np.int64))


_PARALLEL_FROM = 64  # below this, a thread pool costs more than it saves

_FAST_BACKENDS = {"nanotoken": NanotokenBackend, "fastokens": FastokensBackend}


def _model_type(tokenizer: Tokenizer) -> str:
    return str(json.loads(tokenizer.to_str())["model"].get("type", ""))


def check_parity(
    candidate: TokenizerBackend, reference: TokenizerBackend, texts: tuple[str, ...] = PARITY_STRINGS
) -> bool:
    """True when ``candidate`` gives exactly the reference ids, with and without truncation."""
    batch = list(texts)
    for max_length in (None, 512, 7):
        got_ids, got_offsets = candidate.encode_flat(batch, max_length)
        want_ids, want_offsets = reference.encode_flat(batch, max_length)
        if not (np.array_equal(got_offsets, want_offsets) and np.array_equal(got_ids, want_ids)):
            return False
    return True


def select_backend(tokenizer: Tokenizer, preference: str | None = None) -> TokenizerBackend:
    """Choose the tokenizer backend.

    ``preference``: ``"auto"`` (default; the fastest exact backend installed), ``"hf"`` (the
    reference), or a fast backend's name, which raises if it cannot be used. When ``None``,
    the environment variable ``M2V_TOKENIZER_BACKEND`` is read, falling back to ``"auto"``.
    """
    preference = (preference or os.environ.get(BACKEND_ENV_VAR) or "auto").lower()
    if preference not in BACKEND_CHOICES:
        raise ValueError(f"tokenizer_backend must be one of {BACKEND_CHOICES}, got {preference!r}")
    reference = HFTokenizerBackend(tokenizer)
    if preference == "hf":
        return reference
    candidates = list(_FAST_BACKENDS) if preference == "auto" else [preference]
    for name in candidates:
        reason = _try_fast_backend(name, tokenizer, reference)
        if isinstance(reason, str):
            if preference != "auto":
                raise ValueError(f"tokenizer backend {name!r} cannot be used: {reason}")
            logger.debug("tokenizer backend %s not used: %s", name, reason)
            continue
        return reason
    return reference


def _try_fast_backend(name: str, tokenizer: Tokenizer, reference: TokenizerBackend) -> TokenizerBackend | str:
    """The fast backend, or a string saying why it cannot be used."""
    model_type = _model_type(tokenizer)
    if name == "nanotoken" and model_type != "WordPiece":
        return f"it supports WordPiece tokenizers only, this one is {model_type or 'unknown'}"
    if name == "fastokens" and model_type != "BPE":
        return f"it is used for BPE tokenizers only, this one is {model_type or 'unknown'}"
    try:
        backend = _FAST_BACKENDS[name](tokenizer)
    except ImportError:
        return "the package is not installed (pip install 'm2v-search[fast]')"
    except Exception as error:  # the backend refused this tokenizer.json
        return f"it could not load this tokenizer ({error})"
    if not check_parity(backend, reference):
        logger.warning("tokenizer backend %s differs from Hugging Face tokenizers here; not used", name)
        return "its ids differ from Hugging Face tokenizers on the parity strings"
    return backend


def unknown_token_id(tokenizer: Tokenizer) -> int | None:
    """The id Model2Vec drops from encodings: the tokenizer model's unknown token, if any."""
    model = json.loads(tokenizer.to_str())["model"]
    if model.get("unk_token") is not None:
        return tokenizer.token_to_id(model["unk_token"])
    unk_id = model.get("unk_id")
    return int(unk_id) if unk_id is not None else None


def largest_token_id(tokenizer: Tokenizer) -> int:
    """The largest id the tokenizer can produce (-1 for an empty vocabulary); ids may skip numbers."""
    return max(tokenizer.get_vocab(with_added_tokens=True).values(), default=-1)
