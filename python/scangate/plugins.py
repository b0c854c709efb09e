"""The rule-plugin contract: how Python code adjusts a reward decision.

A plugin is an object with a ``name`` and an ``evaluate(ctx) -> RuleResult | None``
method (or a plain callable taking the context). It sees a read-only
``RuleContext`` and may:

- veto the reward (``RuleResult(veto=True)``), reason RW-N12;
- set the odds of this scan's draw (``odds_ppm``, an int from 0 to 1,000,000);
- replace the prize with another prize of the same campaign (``prize_id``), which
  still needs budget left, else the decision keeps its own prize;
- scale points (``points_multiplier_pct``, an int from 0 to 1,000; 100 = unchanged).

Plugins run in the order the campaign lists them; later ones see nothing of
earlier ones' results (each gets the same context) and their non-None fields win.

Plugins are operator-installed code, never something a campaign upload brings in.
A campaign may name only (``check_refs``, called when a campaign is loaded):

- an entry point of the group ``scangate.rules`` (a package the operator
  installed), by its name or by the ``module:attr`` it points at;
- a ``module:attr`` the operator allowed: ``configure(allow)`` (the server's
  ``[plugins] allow``), else the comma-separated ``SCANGATE_PLUGINS_ALLOW``.

Anything else, a plugin that cannot be imported, or an object that is not callable
with one argument is refused at load (InvalidArgument naming ``plugins[N]``).

A plugin that fails never grants anything and never fails anyone else's scan:
whatever it raises (``BaseException`` included), a result that is not a valid
``RuleResult``, a call past ``PLUGIN_TIMEOUT_S``, or a plugin no longer installed or
allowed (a stored campaign) makes ``run_plugins`` report a failure; the scan then
wins nothing (RW-N13, its code keeps its draw). Failures are counted per plugin
and kind (``failure_counts``) and logged once per ``LOG_EVERY`` failures of a
plugin, the first with its traceback.

Each plugin runs on a daemon thread of its own. Signals reach only the main
thread, so a ``KeyboardInterrupt`` a plugin raises is the plugin's failure like
any other exception; a real Ctrl-C arrives in the main thread, possibly while it
waits for a plugin, and propagates as always. A call past its budget is abandoned
(Python cannot stop a thread): until it returns, and for ``PLUGIN_COOLDOWN_S``
after the timeout, calls of that plugin fail at once instead of waiting again, so
a plugin that hangs costs a batch one timeout, not one per scan.
"""

from __future__ import annotations

import datetime as dt
import importlib
import importlib.metadata
import inspect
import logging
import os
import re
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

from .errors import InvalidArgument

__all__ = ["RuleContext", "RuleResult", "RulePlugin", "ENTRY_POINT_GROUP", "ALLOW_ENV", "PLUGIN_TIMEOUT_S",
           "PLUGIN_COOLDOWN_S", "LOG_EVERY", "PluginUnavailable", "available_plugins", "configure",
           "allowed_refs", "check_refs", "load_plugin", "run_plugins", "failure_counts", "reset_failure_counts"]

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "scangate.rules"
ALLOW_ENV = "SCANGATE_PLUGINS_ALLOW"
PLUGIN_TIMEOUT_S = 0.2          # one call's budget
PLUGIN_COOLDOWN_S = 1.0         # after a timeout, calls fail at once for this long (and while it still runs)
IMPORT_TIMEOUT_S = 10.0         # importing and instantiating a plugin
REFUSED_RETRY_S = 60.0          # a plugin that could not be loaded at run time: tried again after
LOG_EVERY = 1000                # a plugin's failures are logged at the 1st, the 1001st, ...
POINTS_MULTIPLIER_MAX = 1000    # percent: at most x10, as store tiers
_PPM = 1_000_000

_DOTTED = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
REF_RE = re.compile(rf"{_DOTTED}:{_DOTTED}")    # what an allow-list entry must look like


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


class PluginUnavailable(InvalidArgument):
    """A reference names no plugin the operator installed or allowed, or one that
    cannot be loaded; ``reason`` says why (without the reference)."""

    def __init__(self, ref: str, reason: str):
        super().__init__(f"plugin {ref!r}: {reason}")
        self.ref = ref
        self.reason = reason


# ---------------------------------------------------------------- the policy
_lock = threading.Lock()
_configured: frozenset[str] | None = None       # None: from the environment
_env_cache: tuple[str, frozenset[str]] | None = None


def _parse_allow(items: Iterable[str], key: str) -> frozenset[str]:
    out = []
    for i, ref in enumerate(items):
        if not isinstance(ref, str) or not REF_RE.fullmatch(ref):
            raise InvalidArgument(f"{key}[{i}]: must be a \"package.module:attribute\" reference, got {ref!r}")
        out.append(ref)
    return frozenset(out)


def configure(allow: Iterable[str] | None, *, verify: bool = True) -> None:
    """Set the ``module:attr`` references campaigns may name besides entry points
    (the server's ``[plugins] allow``); None goes back to ``SCANGATE_PLUGINS_ALLOW``.
    ``verify``: import each one now and raise InvalidArgument naming
    ``plugins.allow[N]`` if it cannot be loaded, so that a server fails at start."""
    refs = None if allow is None else list(allow)
    parsed = None if refs is None else _parse_allow(refs, "plugins.allow")
    before = _configured
    _set(parsed)
    if verify and refs is not None:
        for i, ref in enumerate(refs):
            try:
                load_plugin(ref)
            except PluginUnavailable as exc:
                _set(before)        # a start that fails leaves the policy as it was
                raise InvalidArgument(f"plugins.allow[{i}]: {exc.reason}") from None


def _set(allowed: frozenset[str] | None) -> None:
    """Switch the policy and forget everything loaded under the old one."""
    global _configured
    with _lock:
        _configured = allowed
        _cache.clear()
        _refused.clear()
        for r in _runners.values():
            r.close()
        _runners.clear()


def allowed_refs() -> frozenset[str]:
    """The allowed ``module:attr`` references: as configured, else from the
    environment (read again when it changes; a malformed one raises naming it)."""
    global _env_cache
    if _configured is not None:
        return _configured
    text = os.environ.get(ALLOW_ENV, "")
    cached = _env_cache
    if cached is not None and cached[0] == text:
        return cached[1]
    parsed = _parse_allow([p.strip() for p in text.split(",") if p.strip()], ALLOW_ENV)
    _env_cache = (text, parsed)
    return parsed


def available_plugins() -> dict[str, str]:
    """Entry-point names of installed plugins and what they point at."""
    return {ep.name: ep.value for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def _admit(ref: str) -> tuple[bool, Callable[[], Any]]:
    """How to load ``ref`` if the operator installed or allowed it, and whether it
    is admitted by the allow-list alone (checked again on each use); else raise."""
    try:
        eps = list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))
    except Exception as exc:  # broken package metadata: no entry point can be trusted
        raise PluginUnavailable(ref, f"cannot list the installed plugins ({type(exc).__name__}: {exc})") from None
    if ":" not in ref:
        for ep in eps:
            if ep.name == ref:
                return False, ep.load
        names = ", ".join(sorted(ep.name for ep in eps)) or "none"
        raise PluginUnavailable(ref, f"is not an installed plugin (entry points in group "
                                     f"{ENTRY_POINT_GROUP}: {names})")
    try:
        allowed = allowed_refs()
    except InvalidArgument as exc:
        raise PluginUnavailable(ref, f"the allow-list is malformed ({exc})") from None
    installed = ref in {ep.value.replace(" ", "") for ep in eps}
    if not installed and ref not in allowed:
        raise PluginUnavailable(ref, "is not an installed or allowed plugin: a campaign may name only entry points "
                                     f"of group {ENTRY_POINT_GROUP} and module:attr references the operator allowed "
                                     f"([plugins] allow in the server configuration, or {ALLOW_ENV})")

    def resolve() -> Any:
        module, _, attr = ref.partition(":")
        obj: Any = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
        return obj

    return not installed, resolve


def _materialize(ref: str, get: Callable[[], Any]) -> Callable[[RuleContext], Any]:
    """Import ``ref`` and check it the way pluggy checks a hook implementation when
    it is registered: an object with ``evaluate`` or a callable, callable with one
    argument. Runs on a plugin thread: anything it raises is the plugin's."""
    try:
        obj = get()
        if isinstance(obj, type):
            obj = obj()
        fn = getattr(obj, "evaluate", None)
        if fn is None:
            fn = obj
    except BaseException as exc:  # noqa: BLE001 - SystemExit at import included: the plugin's failure
        raise PluginUnavailable(ref, f"cannot be loaded ({type(exc).__name__}: {exc})") from None
    if not callable(fn):
        raise PluginUnavailable(ref, f"is {type(obj).__name__!s} {obj!r:.60}, neither callable nor with an "
                                     "evaluate() method")
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        sig = None          # some builtins cannot be inspected: checked when called
    if sig is not None:
        try:
            sig.bind(None)
        except TypeError:
            raise PluginUnavailable(ref, f"cannot be called with one argument, the context: signature {sig}") \
                from None
    return fn  # type: ignore[no-any-return]


# ref -> (admitted by the allow-list alone, the callable)
_cache: dict[str, tuple[bool, Callable[[RuleContext], Any]]] = {}
# at run time, a reference that could not be loaded is not tried again for REFUSED_RETRY_S
_refused: dict[str, tuple[float, str]] = {}


def load_plugin(ref: str) -> Callable[[RuleContext], Any]:
    """The callable on contexts that ``ref`` names, checked; PluginUnavailable
    (an InvalidArgument) says why not. Importing runs on a thread of its own with
    ``IMPORT_TIMEOUT_S``, so nothing the plugin's module does escapes as anything
    but that error (a real Ctrl-C of the main thread still does)."""
    cached = _cache.get(ref)
    if cached is not None:
        by_allow, fn = cached
        if not by_allow or ref in allowed_refs():     # an allow-list that changed is obeyed at once
            return fn
    by_allow, get = _admit(ref)
    box: list[Any] = []
    done = threading.Event()

    def work() -> None:
        try:
            box.append(_materialize(ref, get))
        except BaseException as exc:  # noqa: BLE001 - reported to the caller as data
            box.append(exc if isinstance(exc, PluginUnavailable) else
                       PluginUnavailable(ref, f"cannot be loaded ({type(exc).__name__}: {exc})"))
        finally:
            done.set()

    threading.Thread(target=work, name=f"scangate-rule-load-{ref}", daemon=True).start()
    if not done.wait(IMPORT_TIMEOUT_S):
        raise PluginUnavailable(ref, f"took more than {IMPORT_TIMEOUT_S} s to load")
    if isinstance(box[0], PluginUnavailable):
        raise box[0]
    with _lock:
        _cache[ref] = (by_allow, box[0])
    return box[0]  # type: ignore[no-any-return]


def check_refs(refs: Iterable[str]) -> None:
    """Check a campaign's ``plugins`` when it is loaded: InvalidArgument
    ``plugins[N]: why`` for the first one that is not installed or allowed, cannot
    be imported or is not callable with one argument."""
    for i, ref in enumerate(refs):
        with _lock:
            _refused.pop(ref, None)         # an operator's retry after installing it: try again
        try:
            load_plugin(ref)
        except PluginUnavailable as exc:
            raise InvalidArgument(f"plugins[{i}]: {ref!r} {exc.reason}") from None
        except Exception as exc:  # a bug of ours or of the environment: still this field's fault, said so
            raise InvalidArgument(f"plugins[{i}]: {ref!r} cannot be checked ({type(exc).__name__}: {exc})") \
                from None


# ---------------------------------------------------------------- failures
_counts: dict[tuple[str, str], int] = {}
_totals: dict[str, int] = {}


def failure_counts() -> dict[tuple[str, str], int]:
    """Failures in this process by (plugin reference, kind); kinds: ``raised``,
    ``timeout``, ``skipped`` (not called: a timed-out call still runs or cools
    down), ``bad_result``, ``unavailable`` (no longer installed or allowed)."""
    with _lock:
        return dict(_counts)


def reset_failure_counts() -> None:
    with _lock:
        _counts.clear()
        _totals.clear()


def _failed(ref: str, kind: str, why: str, campaign_id: str, detail: str = "") -> str:
    """Count a failure; log the 1st, the (LOG_EVERY+1)th... of each plugin, so a
    client scanning codes of a broken plugin's campaign cannot flood the log."""
    with _lock:
        _counts[(ref, kind)] = _counts.get((ref, kind), 0) + 1
        total = _totals[ref] = _totals.get(ref, 0) + 1
    if total % LOG_EVERY == 1 or LOG_EVERY == 1:
        log.warning("rule plugin %s failed (%s) for campaign %s: %s; %d failure(s) of it so far, logged once "
                    "per %d%s", ref, kind, campaign_id, why, total, LOG_EVERY,
                    f"\n{detail}" if detail and total == 1 else "")
    return why


# ---------------------------------------------------------------- running
def _describe(exc: BaseException) -> tuple[str, str]:
    """An exception as text, made on the plugin's thread: its __str__ is its code."""
    try:
        why = f"{type(exc).__name__}: {str(exc)[:200]}"
    except BaseException:  # noqa: BLE001 - even formatting it may fail
        why = "an exception that cannot be printed"
    try:
        detail = "".join(traceback.format_exception(exc, limit=8))[-4000:]
    except BaseException:  # noqa: BLE001
        detail = ""
    return why, detail


def _checked(result: Any) -> RuleResult | str | None:
    """A copy of a valid result, None, or why it is not valid (made on the
    plugin's thread: only plain values cross to the caller)."""
    if result is None:
        return None
    if type(result) is not RuleResult:
        return f"returned {type(result).__name__}, not RuleResult or None"
    veto, odds, prize, pct, note = (result.veto, result.odds_ppm, result.prize_id, result.points_multiplier_pct,
                                    result.note)
    if type(veto) is not bool:
        return f"veto is {type(veto).__name__}, not bool"
    if odds is not None and (type(odds) is not int or not 0 <= odds <= _PPM):
        return f"odds_ppm must be None or an int from 0 to {_PPM}"
    if prize is not None and type(prize) is not str:
        return f"prize_id is {type(prize).__name__}, not str"
    if pct is not None and (type(pct) is not int or not 0 <= pct <= POINTS_MULTIPLIER_MAX):
        return f"points_multiplier_pct must be None or an int from 0 to {POINTS_MULTIPLIER_MAX}"
    if type(note) is not str:
        return f"note is {type(note).__name__}, not str"
    return RuleResult(veto, odds, prize, pct, note[:500])


class _Runner:
    """One plugin's daemon thread. Calls are handed over one at a time; a call
    that overruns keeps this thread, and only this one, busy."""

    def __init__(self, ref: str, fn: Callable[[RuleContext], Any]):
        self.fn = fn
        self.lock = threading.Lock()
        self.pending: threading.Event | None = None   # the call that timed out, until it returns
        self.timed_out_at = -PLUGIN_COOLDOWN_S
        self._job: tuple[RuleContext, list[tuple[str, Any, str]], threading.Event] | None = None
        self._closed = False
        self._wake = threading.Condition(threading.Lock())
        threading.Thread(target=self._loop, name=f"scangate-rule-{ref}", daemon=True).start()

    def close(self) -> None:
        """Let the thread end (after the call it may be stuck in)."""
        with self._wake:
            self._closed = True
            self._wake.notify()

    def _loop(self) -> None:
        while True:
            with self._wake:
                while self._job is None and not self._closed:
                    self._wake.wait()
                if self._job is None:
                    return
                ctx, box, done = self._job
                self._job = None
            try:
                result = _checked(self.fn(ctx))
                box.append(("bad_result", result, "") if isinstance(result, str) else ("ok", result, ""))
            except BaseException as exc:  # noqa: BLE001 - SystemExit, KeyboardInterrupt...: the plugin's failure
                box.append(("raised", *_describe(exc)))
            done.set()

    def call(self, ctx: RuleContext) -> tuple[str, Any, str]:
        """(kind, RuleResult | None | why, traceback); kinds: ok, raised,
        bad_result, timeout, skipped."""
        if not self.lock.acquire(timeout=PLUGIN_TIMEOUT_S):
            return ("skipped", "not called: another call of it is still running", "")
        try:
            if self.pending is not None:
                if not self.pending.is_set():
                    return ("skipped", f"not called: a call that timed out "
                                       f"{time.monotonic() - self.timed_out_at:.1f} s ago is still running", "")
                self.pending = None
            if time.monotonic() - self.timed_out_at < PLUGIN_COOLDOWN_S:
                return ("skipped", f"not called: cooling down for {PLUGIN_COOLDOWN_S} s after a timeout", "")
            box: list[tuple[str, Any, str]] = []
            done = threading.Event()
            with self._wake:
                self._job = (ctx, box, done)
                self._wake.notify()
            if not done.wait(PLUGIN_TIMEOUT_S):     # a real Ctrl-C of the main thread raises here
                self.pending, self.timed_out_at = done, time.monotonic()
                return ("timeout", f"timed out after {PLUGIN_TIMEOUT_S} s", "")
            return box[0]
        finally:
            self.lock.release()


_runners: dict[str, _Runner] = {}


def _runner(ref: str) -> _Runner:
    fn = load_plugin(ref)
    with _lock:
        r = _runners.get(ref)
        if r is None or r.fn is not fn:
            if r is not None:
                r.close()
            r = _runners[ref] = _Runner(ref, fn)
        return r


def run_plugins(refs: tuple[str, ...], ctx: RuleContext) -> tuple[RuleResult, list[tuple[str, str]]]:
    """Run a campaign's plugins on ``ctx``. Returns the merged result and the list
    of (plugin, failure) pairs; the caller grants nothing when it is not empty.
    Never raises for anything a plugin does; the first failure stops the run."""
    merged = RuleResult()
    failures: list[tuple[str, str]] = []
    frozen = RuleContext(**{**ctx.__dict__, "verdict": MappingProxyType(dict(ctx.verdict)),
                            "actor_history": MappingProxyType(dict(ctx.actor_history))})
    for ref in refs:
        refused = _refused.get(ref)
        if refused is not None and time.monotonic() - refused[0] < REFUSED_RETRY_S:
            failures.append((ref, _failed(ref, "unavailable", refused[1], ctx.campaign_id)))
            break
        try:
            runner = _runner(ref)
        except Exception as exc:  # not BaseException: a real Ctrl-C of this thread must stop the process
            why = exc.reason if isinstance(exc, PluginUnavailable) else \
                f"cannot be loaded ({type(exc).__name__}: {exc})"
            with _lock:     # a stored campaign's plugin, uninstalled since: not one import per scan
                _refused[ref] = (time.monotonic(), why)
            failures.append((ref, _failed(ref, "unavailable", why, ctx.campaign_id)))
            break
        kind, result, detail = runner.call(frozen)
        if kind != "ok":
            why = result if isinstance(result, str) else kind
            failures.append((ref, _failed(ref, kind, why, ctx.campaign_id, detail)))
            break
        if result is None:
            continue
        merged = RuleResult(
            veto=merged.veto or result.veto,
            odds_ppm=result.odds_ppm if result.odds_ppm is not None else merged.odds_ppm,
            prize_id=result.prize_id if result.prize_id is not None else merged.prize_id,
            points_multiplier_pct=(result.points_multiplier_pct if result.points_multiplier_pct is not None
                                   else merged.points_multiplier_pct),
            note="; ".join(x for x in (merged.note, result.note) if x),
        )
    return merged, failures
