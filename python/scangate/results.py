"""Plain results and records that the engine returns and the gRPC client hands
back alike: what an upload applied, a redemption, a dealer. Light: no LMDB, numpy
or native core (tests/test_light_import.py), so ``scangate.Client`` can return them.
Re-exported where they were defined before: ``ingest``, ``points``, ``trace``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Dealer", "EpcisReport", "LinkReport", "Redemption"]


@dataclass(frozen=True)
class LinkReport:
    rows: int
    added: int
    removed: int
    parents: int


@dataclass(frozen=True)
class EpcisReport:
    events: int
    aggregations: int
    shipments: int
    added: int
    removed: int
    skipped: int

    def to_json(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Redemption:
    request_id: str
    actor: str
    points: int
    ok: bool
    balance: int
    reason: str | None   # "insufficient_points" when refused

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Dealer:
    dealer_id: str
    name: str
    territory: tuple[str, ...]  # adcode prefixes: "44" Guangdong, "4401" Guangzhou

    def covers(self, adcode: int) -> bool:
        # str.startswith takes a tuple: true when any prefix matches (false for none)
        return f"{adcode:06d}".startswith(self.territory)

    def to_json(self) -> dict[str, Any]:
        return {"dealer_id": self.dealer_id, "name": self.name, "territory": list(self.territory)}
