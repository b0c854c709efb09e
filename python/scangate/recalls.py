"""What a recall is: the types ``scangate.verdicts`` records and
``scangate.Client.recall`` hands back.

A light module (dataclasses only) so that the gRPC client loads no LMDB or numpy;
``scangate.verdicts`` re-exports both names, where they have always been
importable from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Recall", "RecallReport"]


@dataclass(frozen=True)
class Recall:
    """One recall: a whole product line, or serials first..last (a single code is
    a range of one serial). ``source``: how it was asked for (line, range, codes)."""

    kind: str                 # "line" or "range"
    reason: str
    at_ms: int
    line_id: int | None = None
    first: int | None = None
    last: int | None = None
    source: str = "range"

    @property
    def count(self) -> int | None:
        """Serials covered by a range recall (None for a line)."""
        return None if self.first is None or self.last is None else self.last - self.first + 1

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "line_id": self.line_id, "first": self.first, "last": self.last,
                "reason": self.reason, "at_ms": self.at_ms, "source": self.source}


@dataclass(frozen=True)
class RecallReport:
    """What one recall request covers: its entries (new or already recalled before:
    asking twice changes nothing) and how many of them are new."""

    recalls: list[Recall]
    added: int

    @property
    def codes(self) -> int:
        """Serials covered by the range entries (a line recall counts none)."""
        return sum(r.count or 0 for r in self.recalls)
