"""Text to sparse features, identically at training and answering time, in Chinese and English.

Words are latin/digit runs and single Han characters; features are word unigrams and bigrams
(for Chinese, character unigrams and bigrams, like OpenSearch's cjk analyzer) and character
2–5-grams inside latin words (spelling variants, inflections). Pure Python: a query costs ~0.2 ms.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter

MAX_CHARS = 2000  # what a question can usefully say; longer text is cut before featurising

_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN = re.compile(r"[a-z]")


def normalize(text: str) -> str:
    """NFKC (full-width to half-width, compatibility forms) and lower case."""
    return unicodedata.normalize("NFKC", text[:MAX_CHARS]).lower()


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(normalize(text))


def grams(text: str) -> Counter:
    """Feature counts: "w:" word 1–2-grams, "c:" character 2–5-grams of latin words."""
    words = tokens(text)
    out: Counter = Counter()
    for i, word in enumerate(words):
        out["w:" + word] += 1
        if i + 1 < len(words):
            out["w:" + word + " " + words[i + 1]] += 1
        if word.isascii():
            padded = f" {word} "
            for n in range(2, 6):
                for j in range(len(padded) - n + 1):
                    out["c:" + padded[j : j + n]] += 1
    return out


def language(text: str) -> str | None:
    """"zh" when Han characters weigh at least as much as latin letters (one character is about a
    word, so four letters), "en" otherwise, None without letters at all (emoji, digits, punctuation)."""
    han = len(_HAN.findall(text))
    latin = len(_LATIN.findall(text.lower()))
    if han == 0 and latin == 0:
        return None
    return "zh" if han * 4 >= latin else "en"
