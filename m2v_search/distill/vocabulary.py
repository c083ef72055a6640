"""The output tokenizer of a distillation, and what the teacher sees for each of its tokens.

Starting from the teacher's fast tokenizer (a ``tokenizers.Tokenizer``):

- tokens matching ``token_remove_pattern`` (e.g. BERT's ``[unused12]``) are dropped from the
  vocabulary, and the remaining ids are renumbered, so the table has no dead rows and the
  tokenizer and the table stay the same size;
- custom words are added. A word that is a single piece after the tokenizer's normaliser and
  pre-tokeniser joins the model vocabulary itself (WordPiece and WordLevel: as a whole word;
  Unigram: as a piece scored like the most likely existing piece, so it wins segmentation);
  BPE words, and words of several pieces ("New York"), become added tokens. Duplicates, words
  already in the vocabulary and empty strings are skipped;
- the post-processor, padding and truncation are removed: static models encode without special
  tokens and truncate on their own, which is what Model2Vec and Sentence Transformers expect.

Each output token gets the id sequence the teacher should embed: ``[CLS] id [SEP]`` (the
tokenizer's own special tokens) for a vocabulary token, the teacher's own encoding for a
custom word.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tokenizers import Tokenizer

logger = logging.getLogger(__name__)

SUPPORTED_MODELS = ("WordPiece", "WordLevel", "BPE", "Unigram")


@dataclass
class DistillVocabulary:
    """The tokenizer of the static model, and the teacher input for each of its ids."""

    tokenizer: Tokenizer
    teacher_ids: list[list[int]]  # teacher_ids[i]: what the teacher embeds for output token i
    removed: int  # vocabulary tokens dropped by the pattern
    added: int  # custom words added
    skipped: int  # custom words skipped (duplicates, empty, removed by the pattern)

    @property
    def size(self) -> int:
        return len(self.teacher_ids)


def special_ids(tokenizer: Tokenizer) -> tuple[list[int], list[int]]:
    """The special ids the tokenizer puts before and after a single text (e.g. [CLS] / [SEP])."""
    if tokenizer.padding or tokenizer.truncation:
        tokenizer = _plain_copy(tokenizer)
    encoding = tokenizer.encode("a", add_special_tokens=True)
    mask = encoding.special_tokens_mask
    ids = encoding.ids
    content = [i for i, special in enumerate(mask) if not special]
    if not content:
        return [], []
    return ids[: content[0]], ids[content[-1] + 1 :]


def build_vocabulary(
    tokenizer: Tokenizer,
    words: Iterable[str] | None = None,
    token_remove_pattern: str | None = None,
    keep_tokens: Iterable[str] | None = None,
) -> DistillVocabulary:
    """Make the output tokenizer and the teacher inputs (see the module docstring).

    ``keep_tokens`` keeps only those tokens of the teacher's vocabulary (plus its special and
    unknown tokens): a quick, small distillation for tests and trials.
    """
    regex = _compile(token_remove_pattern)
    tokenizer = _plain_copy(tokenizer)
    subset = None if keep_tokens is None else set(keep_tokens)
    data = json.loads(tokenizer.to_str())
    model = data["model"]
    kind = model.get("type")
    if kind not in SUPPORTED_MODELS:
        raise ValueError(f"cannot distil a tokenizer of type {kind!r}; supported: {', '.join(SUPPORTED_MODELS)}")
    prefix, suffix = special_ids(tokenizer)

    # All tokens of the teacher, in id order, with what to do with each one.
    vocabulary = tokenizer.get_vocab(with_added_tokens=True)
    by_id = sorted(vocabulary.items(), key=lambda item: item[1])
    special = {token["content"] for token in data.get("added_tokens", []) if token.get("special")}
    protected = special | {t for t in (_unk_token(model, by_id),) if t is not None}
    keep: list[tuple[str, int]] = []
    removed = 0
    for token, old_id in by_id:
        if token not in protected:
            if regex is not None and regex.search(token):
                removed += 1
                continue
            if subset is not None and token not in subset:
                continue
        keep.append((token, old_id))
    if not keep or all(token in protected for token, _ in keep):
        raise ValueError(
            f"token_remove_pattern {token_remove_pattern!r} removes every token of the vocabulary; "
            f"nothing is left to distil"
        )
    new_id = {token: index for index, (token, _) in enumerate(keep)}
    if len(keep) != len(by_id):
        _renumber(data, new_id)
    teacher_ids = [[*prefix, old_id, *suffix] for _, old_id in keep]

    added, skipped = _add_words(data, tokenizer, new_id, words or (), regex, teacher_ids)
    data["post_processor"] = None
    data["padding"] = None
    data["truncation"] = None
    output = Tokenizer.from_str(json.dumps(data))
    if output.get_vocab_size() != len(teacher_ids):  # a bug here would silently misalign the table
        raise RuntimeError(f"vocabulary surgery left {output.get_vocab_size()} tokens for {len(teacher_ids)} rows")
    if removed:
        logger.info("removed %d tokens matching %r", removed, token_remove_pattern)
    return DistillVocabulary(output, teacher_ids, removed, added, skipped)


def _plain_copy(tokenizer: Tokenizer) -> Tokenizer:
    """A copy without padding and truncation (the caller's tokenizer is left as it is)."""
    copy = Tokenizer.from_str(tokenizer.to_str())
    copy.no_padding()
    copy.no_truncation()
    return copy


def _compile(pattern: str | None) -> re.Pattern[str] | None:
    if pattern is None:
        return None
    try:
        return re.compile(pattern)
    except re.error as error:
        raise ValueError(f"token_remove_pattern {pattern!r} is not a valid regular expression: {error}") from error


def _unk_token(model: dict[str, Any], by_id: list[tuple[str, int]]) -> str | None:
    if model.get("unk_token"):
        return str(model["unk_token"])
    if model.get("unk_id") is not None and 0 <= int(model["unk_id"]) < len(by_id):
        return by_id[int(model["unk_id"])][0]
    return None


def _renumber(data: dict[str, Any], new_id: dict[str, int]) -> None:
    """Rewrite the tokenizer JSON so that it holds exactly the tokens of ``new_id``, with those ids."""
    model = data["model"]
    kind = model["type"]
    if kind == "Unigram":
        unk = model.get("unk_id")
        unk_piece = model["vocab"][unk][0] if unk is not None else None
        pieces = [entry for entry in model["vocab"] if entry[0] in new_id]
        pieces.sort(key=lambda entry: new_id[entry[0]])
        model["vocab"] = pieces
        if unk_piece is not None:
            model["unk_id"] = new_id[unk_piece]
    else:
        model["vocab"] = {token: new_id[token] for token in model["vocab"] if token in new_id}
        if kind == "BPE":
            model["merges"] = [m for m in model.get("merges", []) if _merge_kept(m, new_id)]
    data["added_tokens"] = [
        {**token, "id": new_id[token["content"]]} for token in data.get("added_tokens", []) if token["content"] in new_id
    ]
    present = _model_tokens(model) | {t["content"] for t in data["added_tokens"]}
    missing = [token for token in new_id if token not in present]
    if missing:
        raise RuntimeError(f"tokens lost during renumbering: {missing[:5]}")


def _merge_kept(merge: Any, new_id: dict[str, int]) -> bool:
    left, right = merge.split(" ", 1) if isinstance(merge, str) else merge
    return left in new_id and right in new_id and (left + right) in new_id


def _model_tokens(model: dict[str, Any]) -> set[str]:
    if model["type"] == "Unigram":
        return {entry[0] for entry in model["vocab"]}
    return set(model["vocab"])


def _add_words(
    data: dict[str, Any],
    teacher: Tokenizer,
    new_id: dict[str, int],
    words: Iterable[str],
    regex: re.Pattern[str] | None,
    teacher_ids: list[list[int]],
) -> tuple[int, int]:
    """Add custom words to ``data`` (in place); append the teacher input of each to ``teacher_ids``."""
    model = data["model"]
    kind = model["type"]
    normalizer = teacher.normalizer
    pre_tokenizer = teacher.pre_tokenizer
    added = skipped = 0
    top_score = max((entry[1] for entry in model["vocab"]), default=0.0) if kind == "Unigram" else 0.0
    added_tokens = data.setdefault("added_tokens", [])
    next_id = len(new_id)
    for position, word in enumerate(words):
        if not isinstance(word, str):
            raise TypeError(f"vocabulary[{position}] is {type(word).__name__}, expected str")
        normalized = normalizer.normalize_str(word) if normalizer is not None else word
        normalized = normalized.strip()
        if not normalized:
            skipped += 1
            continue
        pieces = [piece for piece, _ in pre_tokenizer.pre_tokenize_str(normalized)] if pre_tokenizer else [normalized]
        single = len(pieces) == 1 and kind in ("WordPiece", "WordLevel", "Unigram")
        token = pieces[0] if single else normalized
        if token in new_id or (regex is not None and regex.search(token)):
            skipped += 1
            continue
        new_id[token] = next_id
        if single and kind == "Unigram":
            model["vocab"].append([token, top_score])
        elif single:
            model["vocab"][token] = next_id
        else:
            added_tokens.append({"id": next_id, "content": token, "single_word": True, "lstrip": kind == "BPE",
                                 "rstrip": False, "normalized": True, "special": False})
        teacher_ids.append(teacher.encode(word, add_special_tokens=True).ids)
        next_id += 1
        added += 1
    if skipped:
        logger.info("skipped %d custom words (empty, duplicate or already in the vocabulary)", skipped)
    return added, skipped
