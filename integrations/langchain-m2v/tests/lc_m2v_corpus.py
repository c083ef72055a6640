"""The real-text corpus of the langchain-m2v tests, importable by name from any test module
(``from conftest import ...`` breaks when several packages' conftest modules are collected in one run)."""

# Each text shares several content words with exactly one query below, so the expected top hit
# holds for the real model and for a random bag-of-tokens model alike.
CORPUS = [
    ("The Seine river flows through Paris before reaching the English Channel at Le Havre.",
     {"topic": "geography", "country": "fr", "year": 2001}),
    ("Photosynthesis lets green plants turn sunlight, water and carbon dioxide into sugar and oxygen.",
     {"topic": "biology", "country": "us", "year": 2010}),
    ("A binary search halves a sorted array at every step, so it runs in logarithmic time.",
     {"topic": "computing", "country": "us", "year": 2020}),
    ("Bread dough rises because yeast ferments sugar and releases carbon dioxide gas.",
     {"topic": "cooking", "country": "fr", "year": 2005}),
    ("Simmer the tomato sauce slowly with garlic, olive oil and fresh basil leaves.",
     {"topic": "cooking", "country": "it", "year": 2012}),
    ("The violin has four strings tuned in fifths and is played with a horsehair bow.",
     {"topic": "music", "country": "it", "year": 1999}),
    ("A marathon race covers forty-two kilometres and runners train for months to finish it.",
     {"topic": "sport", "country": "gr", "year": 2004}),
    ("Jupiter is the largest planet in the solar system and has dozens of moons.",
     {"topic": "astronomy", "country": "us", "year": 2016}),
    ("Vaccines train the immune system to recognise a virus before an infection happens.",
     {"topic": "medicine", "country": "uk", "year": 2021}),
    ("Central banks raise interest rates to slow down inflation in the economy.",
     {"topic": "economics", "country": "de", "year": 2022}),
    ("Volcanoes erupt when molten magma rises through cracks in the earth's crust.",
     {"topic": "geology", "country": "is", "year": 2010}),
    ("The printing press, invented by Gutenberg around 1440, spread books across Europe.",
     {"topic": "history", "country": "de", "year": 1998}),
]

QUERIES = {
    "Which river flows through Paris?": 0,
    "How do green plants turn sunlight and water into sugar?": 1,
    "binary search on a sorted array": 2,
    "Why does bread dough rise with yeast?": 3,
    "violin strings tuned in fifths, played with a bow": 5,
    "marathon race of forty-two kilometres for runners": 6,
    "What is the largest planet in the solar system?": 7,
    "how do vaccines train the immune system": 8,
    "why do central banks raise interest rates": 9,
    "what makes volcanoes erupt magma": 10,
    "who invented the printing press": 11,
}

# Queries that share no content word with their text: only a model that learnt meaning finds these,
# so they are checked with the bundled model only (not with the random fallback model).
PARAPHRASES = {
    "What gas makes dough get bigger when baking?": 3,
    "fiddle music instrument": 5,
    "immunization against disease": 8,
    "monetary policy and prices": 9,
    "the biggest world orbiting the sun": 7,
    "long distance running": 6,
    "lava and eruptions": 10,
    "italian pasta recipe": 4,
    "french waterways": 0,
}

TEXTS = [text for text, _ in CORPUS]
METADATAS = [dict(meta) for _, meta in CORPUS]
IDS = [f"doc-{i}" for i in range(len(CORPUS))]
