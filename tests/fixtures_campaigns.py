"""Campaign texts and scan pieces that several test modules share: one campaign
builder, the prize and table fragments the simple campaigns are made of, the
test clock's noon, region codes and the code alphabet.

A test that depends on a value (a prize's amount, a cap, a date) names it in its
own call of ``campaign``; what is left to the defaults is what no assertion reads.
"""
from __future__ import annotations

from scangate import _core

NOON = 1_780_286_400_000          # 2026-06-01 12:00 Beijing time: conftest.TEST_NOW
CHENGDU, GUANGZHOU, URUMQI = 510104, 440106, 650102
ALPHABET = _core.ALPHABET.decode() if isinstance(_core.ALPHABET, bytes) else str(_core.ALPHABET)


def typo(code: str) -> str:
    """The code with its check character changed: a misread, not a forgery."""
    last = code[-1]
    return code[:-1] + next(c for c in ALPHABET if c != last)


# prize and table fragments, whole TOML tables each
POINTS_10 = '[[prizes]]\nid = "p10"\nkind = "points"\npoints = 10\n'
CASH_1 = '[[prizes]]\nid = "cny-1"\nkind = "cash"\namount_fen = 100\n'
CASES_ONLY = '[products]\nlevels = ["case"]\n'


def points_prize(pid: str, points: int) -> str:
    return f'[[prizes]]\nid = "{pid}"\nkind = "points"\npoints = {points}\n'


def campaign(*, cid: str = "c1", name: str | None = None, actor: str = "consumer", odds: str = "100%",
             start: str = "2026-03-01", end: str = "2026-07-01", prizes: str = POINTS_10,
             extra: str = "", tail: str = "") -> str:
    """A campaign TOML in Asia/Shanghai: top-level keys in ``extra``, tables after
    the prizes in ``tail``; named "test <cid>" unless ``name`` says otherwise."""
    name = f"test {cid}" if name is None else name
    return (f'id = "{cid}"\nname = "{name}"\ntimezone = "Asia/Shanghai"\nstart = {start}\nend = {end}\n'
            f'actor = "{actor}"\nodds = "{odds}"\n{extra}\n{prizes}\n{tail}\n')
