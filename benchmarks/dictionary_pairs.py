"""Experiment (issue 16): headword -> definition pairs from public-domain dictionaries in the retrieval term.

GCIDE (word -> definition) is the dev task no idea has moved by more than +0.55. Its own entries
are held out and GPL-3, WordNet is excluded, and Debian's English thesauri are GPL-2+ or built
from WordNet. Two dictionaries Debian ships are in the public domain: the Jargon File
(``dict-jargon``, 2,307 computing terms) and Ambrose Bierce's Devil's Dictionary (``dict-devil``,
1,008 satirical entries). Their headword -> first-definition pairs join the recipe's stdlib
pairs in the retrieval term, then the recipe's three terms run from v1, as
``benchmarks/package_pairs.py`` does. A headword that is a held-out GCIDE headword or a held-out
dev word is dropped, so no dev item is trained on.

    apt-get download dict-jargon dict-devil && dpkg -x dict-jargon_*.deb x && dpkg -x dict-devil_*.deb x
    HF_HUB_OFFLINE=1 python benchmarks/dictionary_pairs.py --dictd x/usr/share/dictd \\
        --similarity-teacher FOLDER_OF_all-mpnet-base-v2 --work /tmp/pairs.work

The dev tasks choose (combined = their mean); STS-B test is reported only. Writes
benchmarks/results/dictionary_pairs.md and .json.
"""

from __future__ import annotations

import argparse
import gzip
import re
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DEV_KEYS as KEYS, machine_line, write_dev_table  # noqa: E402
from package_pairs import add_teacher_arguments, recipe_with_extra_pairs, v1_and_scorer  # noqa: E402

_BASE64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_POS = re.compile(r"^\s*(?:n|v|vt|vi|adj|adv|interj|prep|pron|conj|excl|abbrev|pl|p)\.(?:\s*,?\s*(?:n|v|adj|pl)\.)*\s*",
                  re.IGNORECASE)


def _number(text: str) -> int:
    value = 0
    for char in text:
        value = value * 64 + _BASE64.index(char)
    return value


def dictd_entries(index: Path) -> list[tuple[str, str]]:
    """(headword, entry text) of a dictd dictionary (``NAME.index`` beside ``NAME.dict.dz``)."""
    data = gzip.decompress(index.with_suffix(".dict.dz").read_bytes())
    entries = []
    for line in index.read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.split("\t")
        if len(parts) < 3 or parts[0].startswith("00-database") or parts[0].startswith("00database"):
            continue
        start, length = _number(parts[1]), _number(parts[2])
        entries.append((parts[0], data[start:start + length].decode("utf-8", "replace")))
    return entries


def first_definition(headword: str, entry: str) -> str:
    """The first sense of an entry: its headword line, part of speech and sense number removed,
    cross-reference braces dropped, white space collapsed, at most 80 words."""
    text = entry.strip()
    first, _, rest = text.partition("\n")
    if first.strip().lower() == headword.lower():  # Jargon: the headword on a line of its own
        text = rest
    else:  # Devil's: "BATH, n.  A kind of ..."
        text = re.sub(rf"^{re.escape(headword)}\s*,?", "", text, flags=re.IGNORECASE)
    text = _POS.sub("", text.strip())
    for paragraph in re.split(r"\n\s*\n", text):
        sense = re.sub(r"^\s*(?:\[[^\]]*\]\s*)*(?:1\.\s*)?", "", paragraph)  # Jargon's [origin] tags
        sense = " ".join(re.sub(r"[{}]", "", sense).split()[:80])
        if len(sense.split()) >= 4:
            return sense
    return ""


def dictionary_pairs(folder: Path) -> dict[str, list[tuple[str, str, str]]]:
    """name -> (headword, definition, group) pairs of each dictd dictionary in ``folder``, held-out
    GCIDE headwords and dev words left out (any word of a multi-word headword)."""
    from m2v_search.train.heldout import is_heldout_headword, is_heldout_word

    found: dict[str, list[tuple[str, str, str]]] = {}
    for index in sorted(folder.glob("*.index")):
        pairs = []
        for headword, entry in dictd_entries(index):
            query = headword.strip().lower()
            words = re.findall(r"[a-z]+", query)
            if not words or any(is_heldout_headword(w) or is_heldout_word(w) for w in words):
                continue
            definition = first_definition(headword, entry)
            if len(definition.split()) >= 4:
                pairs.append((query, definition, f"dictionary:{index.stem}:{query}"))
        found[index.stem] = list(dict.fromkeys(pairs))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dictd", type=Path, required=True, help="folder of dictd files (NAME.index, NAME.dict.dz)")
    add_teacher_arguments(parser)
    args = parser.parse_args(argv)
    v1, scores_of = v1_and_scorer()
    by_name = dictionary_pairs(args.dictd)
    print({name: len(pairs) for name, pairs in by_name.items()}, file=sys.stderr, flush=True)
    settings = {"the recipe (stdlib pairs only)": [], **{f"+ {name}": pairs for name, pairs in by_name.items()},
                "+ " + " + ".join(by_name): [pair for pairs in by_name.values() for pair in pairs]}
    rows: dict[str, dict[str, Any]] = {}
    for name, extra in settings.items():
        model, used, total = recipe_with_extra_pairs(v1, extra, args.similarity_teacher, args.work)
        rows[name] = {"dictionary_pairs": len(used), "pairs": total, "scores": scores_of(model)}
        print(name, {k: round(rows[name]["scores"][k], 2) for k in KEYS}, file=sys.stderr, flush=True)
    result = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine_line(),
              "available": {name: len(pairs) for name, pairs in by_name.items()}, "rows": rows}
    write_dev_table("dictionary_pairs", "Headword -> definition pairs from public-domain dictionaries (issue 16)",
                    f"{result['machine']} (run {result['date']}). v1 + the recipe's retrieval, similarity and word terms; "
                    "the retrieval term's pairs are the recipe's stdlib pairs plus the headword -> first-definition pairs "
                    f"of the Jargon File and the Devil's Dictionary (public domain; {result['available']}), held-out "
                    "GCIDE headwords and dev words left out. Dev tasks choose (combined = their mean); STS-B test is "
                    "reported only.", result, ("retrieval pairs", "dictionary pairs", "dictionary_pairs"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
