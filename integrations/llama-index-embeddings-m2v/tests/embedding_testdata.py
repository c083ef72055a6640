"""Test texts for the M2VEmbedding tests (a module name unique across the repo's test dirs)."""

from __future__ import annotations

DEFAULT_MODEL = "m2v-base"

# Each query below is about exactly one of these texts, in words the text shares with it.
CORPUS = [
    ("Glaciers carve deep valleys as they slowly move downhill under their own weight.", {"topic": "geology"}),
    ("Honey bees dance to tell the hive where flowers with nectar can be found.", {"topic": "biology"}),
    ("A hash table finds a key in constant time on average by hashing it to a bucket.", {"topic": "computing"}),
    ("Sourdough bread is leavened by wild yeast and lactic acid bacteria in a starter.", {"topic": "cooking"}),
    ("The Danube flows through Vienna, Budapest and Belgrade on its way to the Black Sea.", {"topic": "geography"}),
    ("A chess game opens with pawns and knights fighting for control of the centre squares.", {"topic": "games"}),
    ("Solar panels turn sunlight into electricity with layers of doped silicon.", {"topic": "energy"}),
    ("The piano has eighty-eight keys, and hammers strike its strings when a key is pressed.", {"topic": "music"}),
]

QUERIES = {
    "how do glaciers carve valleys": 0,
    "why do honey bees dance in the hive": 1,
    "hash table lookup of a key in constant time": 2,
    "sourdough starter with wild yeast": 3,
    "which river flows through Vienna and Budapest": 4,
    "opening moves in a chess game": 5,
    "solar panels turning sunlight into electricity": 6,
    "how many keys does a piano have": 7,
}
