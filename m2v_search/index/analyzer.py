"""Text -> search terms for the lexical (BM25) part of an index: lowercase words, stopwords removed,
Snowball stemming through PyStemmer; the language is configurable (any PyStemmer algorithm).

One-character words are terms (``python 3``, ``part B``); an index whose analyzer settings predate
that option reads words of two or more characters, as it was built.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

DEFAULT_LANGUAGE = "english"
# Runs of word characters. Indexes made before one-character words counted ("python 3", "part B")
# read runs of two or more (scikit-learn's default pattern without its \b anchors), as they were built.
_WORD = re.compile(r"\w+")
_WORD_OF_TWO = re.compile(r"\w\w+")
# What an apostrophe leaves of "it's" and "don't": dropped with the stopwords
_CONTRACTION_LETTERS = frozenset({"s", "t"})
SEPARATOR_WORD = "m2vsearchtextseparator"  # a word, so that the words before and after it are counted apart
_SEPARATOR = f"\n{SEPARATOR_WORD}\n"  # newlines: lowercasing and word boundaries see each text as on its own


def _stopword_lists() -> dict[str, Sequence[str]]:
    from bm25s import stopwords as lists

    return {"english": lists.STOPWORDS_EN, "german": lists.STOPWORDS_GERMAN, "dutch": lists.STOPWORDS_DUTCH,
            "french": lists.STOPWORDS_FRENCH, "spanish": lists.STOPWORDS_SPANISH,
            "portuguese": lists.STOPWORDS_PORTUGUESE, "italian": lists.STOPWORDS_ITALIAN,
            "russian": lists.STOPWORDS_RUSSIAN, "swedish": lists.STOPWORDS_SWEDISH,
            "norwegian": lists.STOPWORDS_NORWEGIAN, "turkish": lists.STOPWORDS_TURKISH,
            "danish": lists.STOPWORDS_DANISH}


def _stemmer_module() -> Any:
    try:
        import bm25s  # noqa: F401 - checked here so that a missing package fails before any work
        import Stemmer
    except ImportError as error:
        raise ImportError(f"the lexical (BM25) part of an index needs bm25s and PyStemmer ({error}): "
                          "pip install 'm2v-search[index]', or create the index without one "
                          "(lexical=False, m2v-index build --no-lexical)") from None
    return Stemmer


def languages() -> list[str]:
    """Languages the analyzer can stem (PyStemmer's Snowball algorithms)."""
    return sorted(_stemmer_module().algorithms())


class Analyzer:
    """Text -> search terms: lowercase words, minus stopwords, Snowball-stemmed.

    Args:
        language: a PyStemmer algorithm name (``english``, ``german``, ``french``, ...).
        stem: stem the words (False keeps them whole).
        stopwords: drop the language's stopwords (bm25s's lists; languages without one keep all words;
            in English also the ``s`` and ``t`` an apostrophe leaves).
        single_characters: one-character words are terms (``python 3``, ``part B``); False reads
            words of two or more characters only, as indexes made before this option did.

    Raises:
        ValueError: ``language`` is not a Snowball language PyStemmer knows.
        ImportError: bm25s or PyStemmer is not installed (the message says how to install them).
    """

    def __init__(self, language: str = DEFAULT_LANGUAGE, *, stem: bool = True, stopwords: bool = True,
                 single_characters: bool = True) -> None:
        Stemmer = _stemmer_module()  # noqa: N806 - the module's own name
        if not isinstance(language, str) or language not in Stemmer.algorithms():
            raise ValueError(f"unknown analyzer language {language!r}; use one of {', '.join(languages())}")
        self.language = language
        self.stem = bool(stem)
        self.stopwords = bool(stopwords)
        self._stemmer = Stemmer.Stemmer(language) if stem else None
        self.single_characters = bool(single_characters)
        self._word = _WORD if single_characters else _WORD_OF_TWO
        self._stopwords = frozenset(_stopword_lists().get(language, ())) if stopwords else frozenset()
        if stopwords and single_characters and language == "english":
            self._stopwords |= _CONTRACTION_LETTERS

    def config(self) -> dict[str, Any]:
        """The settings that :meth:`from_config` turns back into the same analyzer."""
        return {"language": self.language, "stem": self.stem, "stopwords": self.stopwords,
                "single_characters": self.single_characters}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Analyzer:
        """The analyzer described by :meth:`config`'s output."""
        return cls(config.get("language", DEFAULT_LANGUAGE), stem=bool(config.get("stem", True)),
                   stopwords=bool(config.get("stopwords", True)),
                   single_characters=bool(config.get("single_characters", False)))  # absent: made before they counted

    def words(self, text: str) -> list[str]:
        """The words of one text before stemming: lowercased, stopwords dropped, in order."""
        stopwords = self._stopwords
        return [word for word in self._word.findall(text.lower()) if word not in stopwords]

    def joined_words(self, texts: Sequence[str]) -> list[str] | None:
        """The lowercased words of many texts in one pass, stopwords *kept*, with
        :data:`SEPARATOR_WORD` between one text's words and the next's.

        Returns:
            The words, or None when a text contains the separator word itself (then the words
            cannot be told apart: analyze those texts one at a time with :meth:`words`).
        """
        joined = _SEPARATOR.join(texts).lower()
        if joined.count(SEPARATOR_WORD) != len(texts) - 1:
            return None
        return self._word.findall(joined)

    def stopwords_among(self, words: set[str]) -> set[str]:
        """The words of ``words`` that :meth:`words` drops."""
        return words & self._stopwords

    def stems(self, words: list[str]) -> list[str]:
        """The terms of ``words`` (their stems, or the words themselves without stemming)."""
        return self._stemmer.stemWords(words) if self._stemmer is not None else words

    def analyze(self, text: str) -> list[str]:
        """The terms of one text, in order (repeats kept: they are term frequencies)."""
        return self.stems(self.words(text))
