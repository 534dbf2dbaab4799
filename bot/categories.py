"""ISE-SAR behaviour categories (ISE Functional Standard, NIEM code list) plus ``other``."""

from __future__ import annotations

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


def find_category(text: str) -> Category | None:
    """Accept a code in any case (``photo``) or a label (``photography``)."""
    wanted = text.strip().lower()
    for category in CATEGORIES.values():
        if wanted in (category.code.lower(), category.label.lower()):
            return category
    return None


def category_list() -> str:
    return ", ".join(f"{c.code.lower()} ({c.label})" for c in CATEGORIES.values())
