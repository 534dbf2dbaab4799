"""ISE-SAR behaviour categories (ISE Functional Standard, NIEM code list) plus ``other``."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Category:
    code: str
    label: str
    # Part B behaviours may be constitutionally protected: vetting must gather more facts
    # before anything is shared.
    part_b: bool


CATEGORIES: dict[str, Category] = {
    c.code: c
    for c in (
        Category("AVIATION", "aviation activity", False),
        Category("CYBER", "cyber attack", False),
        Category("ELICIT", "eliciting information", True),
        Category("EXPERT", "acquisition of expertise", True),
        Category("INTRSN", "breach / attempted intrusion", False),
        Category("MATRLS", "materials acquisition / storage", True),
        Category("MISREP", "misrepresentation", False),
        Category("PHOTO", "photography", True),
        Category("RECRUT", "recruiting / financing", True),
        Category("SABOT", "sabotage / tampering / vandalism", False),
        Category("SECTOR", "sector-specific incident", True),
        Category("SURVL", "observation / surveillance", True),
        Category("TESTSEC", "testing or probing of security", True),
        Category("THEFT", "theft / loss / diversion", False),
        Category("THREAT", "expressed or implied threat", False),
        Category("WPNS", "weapons collection / discovery", True),
        Category("OTHER", "other suspicious activity", False),
    )
}

PART_B_NOTE = (
    "Part B behaviour: may be lawful or constitutionally protected. Gather more facts "
    "(reasonable suspicion of criminal activity) before approval. Report behaviour, never "
    "who someone is."
)


# Words officers use for a category's behaviour, where the category is beyond doubt. A
# word that could mean two categories (explosives: materials or weapons; burglary: theft or
# intrusion) is left out, so the officer is asked rather than guessed for.
SYNONYMS: dict[str, str] = {
    "drone": "AVIATION",
    "drones": "AVIATION",
    "uas": "AVIATION",
    "uav": "AVIATION",
    "aircraft": "AVIATION",
    "helicopter": "AVIATION",
    "hacking": "CYBER",
    "hack": "CYBER",
    "phishing": "CYBER",
    "malware": "CYBER",
    "ransomware": "CYBER",
    "ddos": "CYBER",
    "elicitation": "ELICIT",
    "trespass": "INTRSN",
    "trespassing": "INTRSN",
    "impersonation": "MISREP",
    "impersonating": "MISREP",
    "photos": "PHOTO",
    "photographing": "PHOTO",
    "pictures": "PHOTO",
    "filming": "PHOTO",
    "video": "PHOTO",
    "recruitment": "RECRUT",
    "funding": "RECRUT",
    "watching": "SURVL",
    "casing": "SURVL",
    "probe": "TESTSEC",
    "stolen": "THEFT",
    "stealing": "THEFT",
    "threats": "THREAT",
    "threatening": "THREAT",
    "weapon": "WPNS",
    "gun": "WPNS",
    "guns": "WPNS",
    "firearm": "WPNS",
    "firearms": "WPNS",
}

# Words of the labels that say nothing about the behaviour on their own ("incident" is in
# one label only, but an officer typing it means no particular category).
_GENERIC_LABEL_WORDS = frozenset(
    {
        "attack",
        "information",
        "attempted",
        "storage",
        "incident",
        "testing",
        "security",
        "loss",
        "diversion",
        "expressed",
        "implied",
        "collection",
        "discovery",
        "suspicious",
        "activity",
        "acquisition",
    }
)


def _label_words() -> dict[str, str]:
    """Each word found in exactly one category's label, to that category's code."""
    seen: dict[str, set[str]] = {}
    for category in CATEGORIES.values():
        for word in re.split(r"[\s/]+", category.label.lower()):
            if len(word) > 2:
                seen.setdefault(word, set()).add(category.code)
    return {
        word: codes.pop()
        for word, codes in seen.items()
        if len(codes) == 1 and word not in _GENERIC_LABEL_WORDS
    }


# Every word that names a category: codes, whole labels, label words and synonyms.
_NAMES: dict[str, str] = {
    **SYNONYMS,
    **_label_words(),
    **{c.label.lower(): c.code for c in CATEGORIES.values()},
    **{c.code.lower(): c.code for c in CATEGORIES.values()},
}


# Around a word, not inside it ("sector-specific").
_PUNCTUATION = " .,;:!?\"'()[]{}<>*_`~“”‘’"


def plain_word(text: str) -> str:
    """What was typed without case, surrounding punctuation or doubled spaces: ``Photo.``
    and ``photo`` are the same word."""
    return " ".join(text.lower().split()).strip(_PUNCTUATION)


def find_category(text: str) -> Category | None:
    """Accept a code (``photo``), a label (``photography``), a word found only in one
    label (``surveillance``) or a common word for it (``drone``), in any case and with
    punctuation around it."""
    code = _NAMES.get(plain_word(text))
    return CATEGORIES[code] if code is not None else None


def similar_categories(text: str) -> list[Category]:
    """The categories whose names are spelt close to what was typed (``survelance``)."""
    close = difflib.get_close_matches(plain_word(text), list(_NAMES), n=6, cutoff=0.75)
    return [CATEGORIES[code] for code in dict.fromkeys(_NAMES[name] for name in close)]


def category_list() -> str:
    return ", ".join(f"{c.code.lower()} ({c.label})" for c in CATEGORIES.values())


def category_codes() -> str:
    """The codes alone, on one line: what fits on a phone's screen."""
    return ", ".join(c.code.lower() for c in CATEGORIES.values())
