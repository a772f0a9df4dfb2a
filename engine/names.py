"""Random container names in docker's ``adjective_surname`` style."""
from __future__ import annotations

import random

_LEFT = (
    "admiring", "agitated", "amazing", "angry", "awesome", "blissful", "bold", "boring",
    "brave", "busy", "charming", "clever", "cool", "compassionate", "competent", "condescending",
    "confident", "crazy", "dazzling", "determined", "distracted", "dreamy", "eager", "ecstatic",
    "elastic", "elated", "elegant", "eloquent", "epic", "exciting", "fervent", "festive",
    "flamboyant", "focused", "friendly", "frosty", "funny", "gallant", "gifted", "goofy",
    "gracious", "great", "happy", "hardcore", "heuristic", "hopeful", "hungry", "infallible",
    "inspiring", "intelligent", "interesting", "jolly", "jovial", "keen", "kind", "laughing",
    "loving", "lucid", "magical", "modest", "musing", "mystifying", "naughty", "nervous",
    "nice", "nifty", "nostalgic", "objective", "optimistic", "peaceful", "pedantic", "pensive",
    "practical", "priceless", "quirky", "quizzical", "recursing", "relaxed", "reverent",
    "romantic", "sad", "serene", "sharp", "silly", "sleepy", "stoic", "strange", "stupefied",
    "suspicious", "sweet", "tender", "thirsty", "trusting", "unruffled", "upbeat", "vibrant",
    "vigilant", "vigorous", "wizardly", "wonderful", "xenodochial", "youthful", "zealous", "zen",
)

# scientists, engineers and inventors
_RIGHT = (
    "agnesi", "albattani", "allen", "almeida", "archimedes", "ardinghelli", "aryabhata",
    "babbage", "banach", "bardeen", "bartik", "bassi", "bell", "benz", "bhabha", "bohr",
    "booth", "borg", "bose", "boyd", "brahmagupta", "brattain", "brown", "carson", "cerf",
    "chandrasekhar", "chaplygin", "clarke", "colden", "cori", "cray", "curie", "darwin",
    "davinci", "dijkstra", "dirac", "easley", "edison", "einstein", "elion", "engelbart",
    "euclid", "euler", "faraday", "fermat", "fermi", "feynman", "franklin", "galileo",
    "gauss", "goldberg", "goodall", "hamilton", "haslett", "hawking", "heisenberg", "hertz",
    "hodgkin", "hofstadter", "hoover", "hopper", "hypatia", "jackson", "jang", "jennings",
    "johnson", "kapitsa", "keller", "kepler", "khorana", "kilby", "knuth", "kowalevski",
    "lalande", "lamarr", "lamport", "leakey", "leavitt", "lovelace", "lumiere", "mahavira",
    "mayer", "mccarthy", "mcclintock", "meitner", "mendel", "minsky", "mirzakhani", "morse",
    "napier", "newton", "nobel", "noether", "pare", "pascal", "pasteur", "payne", "perlman",
    "pike", "poincare", "ptolemy", "raman", "ramanujan", "ritchie", "rosalind", "sammet",
    "shannon", "shaw", "shockley", "sinoussi", "snyder", "stonebraker", "swanson", "tesla",
    "thompson", "torvalds", "turing", "varahamihira", "volhard", "wescoff", "wiles",
    "williams", "wilson", "wing", "wozniak", "wright", "yalow", "yonath", "zhukovsky",
)


def random_name(taken, rng=random) -> str:
    """A name not in ``taken``; after a few collisions a digit is appended, as docker does."""
    for attempt in range(20):
        name = f"{rng.choice(_LEFT)}_{rng.choice(_RIGHT)}"
        if attempt >= 3:
            name += str(rng.randint(0, 9))
        if name not in taken:
            return name
    while True:
        name = f"{rng.choice(_LEFT)}_{rng.choice(_RIGHT)}{rng.randint(10, 99999)}"
        if name not in taken:
            return name
