"""Test data for the LlamaIndex integration tests (a module name unique across the repo's test dirs)."""

from __future__ import annotations

DEFAULT_MODEL = "m2v-base"


# Each query below is about exactly one of these texts.
CORPUS = [
    (
        "The Seine river flows through Paris before reaching the English Channel at Le Havre.",
        {"topic": "geography", "country": "fr", "year": 2001, "rating": 4.5},
    ),
    (
        "The Rhine river flows from the Swiss Alps through Germany and the Netherlands to the North Sea.",
        {"topic": "geography", "country": "de", "year": 1998, "rating": 3.0},
    ),
    (
        "Photosynthesis lets green plants turn sunlight, water and carbon dioxide into sugar and oxygen.",
        {"topic": "biology", "country": "us", "year": 2010, "rating": 5.0},
    ),
    (
        "Mitochondria produce most of the chemical energy that a cell needs, stored as ATP.",
        {"topic": "biology", "country": "uk", "year": 2015, "rating": 4.0},
    ),
    (
        "A binary search halves a sorted array at every step, so it needs logarithmic time.",
        {"topic": "computing", "country": "us", "year": 2020, "rating": 4.8},
    ),
    (
        "Python lists are dynamic arrays; appending an element takes amortised constant time.",
        {"topic": "computing", "country": "nl", "year": 2021, "rating": 3.5},
    ),
    (
        "Bread dough rises because yeast ferments sugar and releases carbon dioxide gas.",
        {"topic": "cooking", "country": "fr", "year": 2005, "rating": 4.2},
    ),
    (
        "Simmer the tomato sauce slowly with garlic, olive oil and fresh basil leaves.",
        {"topic": "cooking", "country": "it", "year": 2012, "rating": 4.9},
    ),
    (
        "The violin has four strings tuned in fifths and is played with a horsehair bow.",
        {"topic": "music", "country": "it", "year": 1999, "rating": 3.8},
    ),
    (
        "A marathon race covers forty-two kilometres and runners train for months to finish it.",
        {"topic": "sport", "country": "gr", "year": 2004, "rating": 4.1},
    ),
]

QUERIES = {
    "Which river flows through Paris?": 0,
    "How do plants turn sunlight and water into sugar?": 2,
    "binary search on a sorted array": 4,
    "Why does bread dough rise with yeast?": 6,
    "how many strings does a violin have": 8,
    "how long is a marathon race in kilometres": 9,
}
