"""JSON text written by hand, byte for byte as ``json.dumps`` writes it.

The reward and verdict records are built from templates (f-strings) rather than
by ``json.dumps`` on dicts, which costs more than the rest of a decision's record
keeping; tests/test_rewards_encoding.py holds the two equal. These are the pieces
the templates share.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["esc", "number"]

esc = json.encoder.encode_basestring_ascii   # a str's JSON text (quoted, non-ASCII escaped)


def number(x: Any) -> str:
    """A number's (or None's, or a bool's) JSON text."""
    kind = type(x)
    if kind is int or (kind is float and x - x == 0):   # ints and finite floats: their repr
        return repr(x)
    return json.dumps(x)
