"""Traffic Light Protocol 2.0 (FIRST) labels, ordered from least to most restricted."""

from __future__ import annotations

from enum import StrEnum


class TLP(StrEnum):
    CLEAR = "CLEAR"
    GREEN = "GREEN"
    AMBER = "AMBER"
    AMBER_STRICT = "AMBER+STRICT"
    RED = "RED"

    @property
    def rank(self) -> int:
        return _ORDER.index(self)

    @property
    def label(self) -> str:
        """The marking exactly as TLP 2.0 writes it: ``TLP:AMBER+STRICT``."""
        return f"TLP:{self.value}"

    def allowed_under(self, ceiling: TLP) -> bool:
        return self.rank <= ceiling.rank

    @classmethod
    def parse(cls, text: str, *, accept_white: bool = True) -> TLP:
        cleaned = text.strip().upper().removeprefix("TLP:").replace(" ", "")
        names = ", ".join(t.value.lower() for t in _ORDER)
        if cleaned == "WHITE":  # TLP 1.0 name for CLEAR, still common in the field
            if not accept_white:
                raise ValueError(
                    f"{text!r} is not a TLP 2.0 label; use one of {names} "
                    "(TLP:WHITE became TLP:CLEAR in TLP 2.0)"
                )
            cleaned = "CLEAR"
        try:
            return cls(cleaned)
        except ValueError:
            raise ValueError(f"{text!r} is not a TLP 2.0 label; use one of {names}") from None


_ORDER = [TLP.CLEAR, TLP.GREEN, TLP.AMBER, TLP.AMBER_STRICT, TLP.RED]
