"""Stable enumerations shared by the API, the store and (later) the wire protocol."""

from __future__ import annotations

import enum

from . import _core

__all__ = ["Level", "CodeStatus"]


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
    """Result of verifying one code. Values are stable: they go on disk and the wire."""

    GENUINE = _core.OK
    TYPO = _core.TYPO
    MALFORMED = _core.MALFORMED
    COUNTERFEIT = _core.COUNTERFEIT
    UNKNOWN_KEY = _core.UNKNOWN_KEY
    NOT_ISSUED = _core.NOT_ISSUED

    @property
    def label(self) -> str:
        return self.name.lower()
