"""The rule-plugin contract: how Python code adjusts a reward decision.

A plugin is an object with a ``name`` and an ``evaluate(ctx) -> RuleResult | None``
method (or a plain callable taking the context). It sees a read-only
``RuleContext`` and may:

- veto the reward (``RuleResult(veto=True)``), reason RW-N12;
- set the odds of this scan's draw (``odds_ppm``);
- replace the prize with another prize of the same campaign (``prize_id``), which
  still needs budget left, else the decision keeps its own prize;
- scale points (``points_multiplier_pct``, 100 = unchanged).

Plugins run in the order the campaign lists them; later ones see nothing of
earlier ones' results (each gets the same context) and their non-None fields win.
A plugin that raises, returns something else, or runs past ``PLUGIN_TIMEOUT_S``
never grants anything: the scan wins nothing (reason RW-N13), the failure is
counted (per campaign and plugin, in LMDB, in the decision's transaction) and
logged.

Plugins are found by ``module:attr`` (an object, or a class to instantiate with no
arguments) or by name in the entry-point group ``scangate.rules``.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import importlib
import importlib.metadata
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

from .errors import InvalidArgument

__all__ = ["RuleContext", "RuleResult", "RulePlugin", "ENTRY_POINT_GROUP", "load_plugin", "run_plugins",
           "PLUGIN_TIMEOUT_S", "available_plugins"]

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "scangate.rules"
PLUGIN_TIMEOUT_S = 0.2


@dataclass(frozen=True)
class RuleContext:
    """What a plugin may read. Frozen, and its mappings are read-only views."""

    campaign_id: str
    code: str
    serial: int
    sku: str
    batch: str
    level: str
    verdict: Mapping[str, Any]
    actor: str
    actor_type: str
    actor_tags: tuple[str, ...]
    actor_history: Mapping[str, int]     # scan_number (this one included), awards_today, awards_total
    time_ms: int
    local_time: dt.datetime              # in the campaign's time zone
    region: int | None
    prize_id: str | None                 # the prize the decision would give (None: none yet)
    odds_ppm: int                        # the odds this scan's draw would use


@dataclass(frozen=True)
class RuleResult:
    veto: bool = False
    odds_ppm: int | None = None
    prize_id: str | None = None
    points_multiplier_pct: int | None = None
    note: str = ""


@runtime_checkable
class RulePlugin(Protocol):
    name: str

    def evaluate(self, ctx: RuleContext) -> RuleResult | None: ...


def available_plugins() -> dict[str, str]:
    """Entry-point names of installed plugins and what they point at."""
    return {ep.name: ep.value for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


_cache: dict[str, Callable[[RuleContext], Any]] = {}


def load_plugin(ref: str) -> Callable[[RuleContext], Any]:
    """Resolve ``module:attr`` or an entry-point name to a callable on contexts."""
    if ref in _cache:
        return _cache[ref]
    try:
        if ":" in ref:
            module, _, attr = ref.partition(":")
            obj: Any = importlib.import_module(module)
            for part in attr.split("."):
                obj = getattr(obj, part)
        else:
            eps = [ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP) if ep.name == ref]
            if not eps:
                raise LookupError(f"no entry point {ref!r} in group {ENTRY_POINT_GROUP}")
            obj = eps[0].load()
    except Exception as exc:
        raise InvalidArgument(f"plugin {ref!r}: cannot load it ({type(exc).__name__}: {exc})") from None
    if isinstance(obj, type):
        obj = obj()
    fn = obj.evaluate if hasattr(obj, "evaluate") else obj
    if not callable(fn):
        raise InvalidArgument(f"plugin {ref!r}: neither callable nor has evaluate()")
    _cache[ref] = fn
    return fn


_pool = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="scangate-rule")


def run_plugins(refs: tuple[str, ...], ctx: RuleContext) -> tuple[RuleResult, list[tuple[str, str]]]:
    """Run a campaign's plugins on ``ctx``. Returns the merged result and the list
    of (plugin, failure) pairs; any failure makes the merged result a veto."""
    merged = RuleResult()
    failures: list[tuple[str, str]] = []
    frozen = RuleContext(**{**ctx.__dict__, "verdict": MappingProxyType(dict(ctx.verdict)),
                            "actor_history": MappingProxyType(dict(ctx.actor_history))})
    for ref in refs:
        try:
            fn = load_plugin(ref)
            result = _pool.submit(fn, frozen).result(timeout=PLUGIN_TIMEOUT_S)
            if result is None:
                continue
            if not isinstance(result, RuleResult):
                raise TypeError(f"returned {type(result).__name__}, not RuleResult")
        except concurrent.futures.TimeoutError:
            failures.append((ref, f"timed out after {PLUGIN_TIMEOUT_S} s"))
            continue
        except Exception as exc:  # a plugin's failure is data, never a reward
            failures.append((ref, f"{type(exc).__name__}: {exc}"))
            continue
        merged = RuleResult(
            veto=merged.veto or result.veto,
            odds_ppm=result.odds_ppm if result.odds_ppm is not None else merged.odds_ppm,
            prize_id=result.prize_id if result.prize_id is not None else merged.prize_id,
            points_multiplier_pct=(result.points_multiplier_pct if result.points_multiplier_pct is not None
                                   else merged.points_multiplier_pct),
            note="; ".join(x for x in (merged.note, result.note) if x),
        )
    for ref, why in failures:
        log.warning("rule plugin %s failed for campaign %s: %s", ref, ctx.campaign_id, why)
    return merged, failures
