"""Stable enumerations shared by the API, the store and the wire protocol.

Pure Python, importing nothing of the package: the gRPC client uses them without
loading the native core, LMDB or numpy.
"""

from __future__ import annotations

import enum

__all__ = ["Level", "CodeStatus", "Verdict", "Reason"]


class Level(enum.IntEnum):
    """Packaging level, as carried inside the code block."""

    ITEM = 1
    CASE = 2
    PALLET = 3

    @classmethod
    def parse(cls, value: str | int | Level) -> Level:
        if isinstance(value, Level):
            return value
        if isinstance(value, int):
            return cls(value)
        try:
            return cls[str(value).strip().upper()]
        except KeyError:
            names = ", ".join(m.name.lower() for m in cls)
            raise ValueError(f"level {value!r} is not one of {names}") from None

    @property
    def label(self) -> str:
        return self.name.lower()


class CodeStatus(enum.IntEnum):
    """Result of verifying one code. Values are stable: they go on disk and the wire.

    They are the native core's status codes (``scangate._core.OK``...), written out
    so that this module does not load the core; tests/test_light_import.py holds
    them equal."""

    GENUINE = 0       # _core.OK
    TYPO = 1          # _core.TYPO
    MALFORMED = 2     # _core.MALFORMED
    COUNTERFEIT = 3   # _core.COUNTERFEIT
    UNKNOWN_KEY = 4   # _core.UNKNOWN_KEY
    NOT_ISSUED = 5    # _core.NOT_ISSUED

    @property
    def label(self) -> str:
        return self.name.lower()


class Verdict(enum.IntEnum):
    """The verdict on one scan (scangate.verdicts decides it)."""

    GENUINE = 0
    COUNTERFEIT = 1
    REVOKED = 2
    SUSPECT_CLONE = 3
    DIVERTED = 4

    @property
    def label(self) -> str:
        return self.name.lower()


class Reason(str, enum.Enum):
    """Stable, machine-readable reason codes (docs/verdicts.md)."""

    GENUINE_FIRST_SCAN = "SG-G1"
    GENUINE_REPEAT_SCAN = "SG-G2"
    NOT_SHIPPED = "SG-G3"
    MALFORMED = "SG-C1"
    TYPO = "SG-C2"
    COUNTERFEIT_TAG = "SG-C3"
    UNKNOWN_KEY_VERSION = "SG-C4"
    NOT_ISSUED = "SG-C5"
    LINE_RECALLED = "SG-R1"
    RANGE_RECALLED = "SG-R2"
    CLONE_DISTINCT_ACTORS = "SG-K1"
    CLONE_IMPOSSIBLE_TRAVEL = "SG-K2"
    DIVERTED_OUTSIDE_TERRITORY = "SG-D1"
