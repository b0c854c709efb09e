"""Verdicts of a batch of scans: counterfeit, revoked, suspect clone, diverted or genuine.

A pure function of the scans, their codes' checks, the state the store read for
them (scan histories, trace chains, recalls) and the thresholds: it returns each
scan's verdict, with reason codes and evidence, and the scan history records to
write. Precedence: revoked > suspect clone > diverted > genuine (a code that
does not authenticate is counterfeit before any of them). Reason codes are
documented in docs/verdicts.md and never change meaning.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import xxhash

from .. import geo
from ..datadir import VerifyResult
from ..enums import CodeStatus, Reason, Verdict
from ..state.recalls import Recalls, range_recalls
from ..state.records import MAX_ACTOR_HASHES, History, pack_first_scan
from ..verdict import STATUS_REASON as _STATUS_REASON
from ..verdict import ScanVerdict, VerdictConfig
from .places import place_scans, resolve_places

__all__ = ["judge"]

_NAN = float("nan")
_GENUINE = int(CodeStatus.GENUINE)
_xxh64 = xxhash.xxh64_intdigest   # an actor's hash: _xxh64(actor.encode())


# Enum members read by the per-scan loop, as module constants: on Python 3.11 each
# ``Enum.MEMBER`` lookup goes through EnumType.__getattr__'s slow attribute hook.
_S_GENUINE = CodeStatus.GENUINE
_R_CLONE_DISTINCT_ACTORS = Reason.CLONE_DISTINCT_ACTORS
_R_CLONE_IMPOSSIBLE_TRAVEL = Reason.CLONE_IMPOSSIBLE_TRAVEL
_R_DIVERTED_OUTSIDE_TERRITORY = Reason.DIVERTED_OUTSIDE_TERRITORY
_R_GENUINE_FIRST_SCAN = Reason.GENUINE_FIRST_SCAN
_R_GENUINE_REPEAT_SCAN = Reason.GENUINE_REPEAT_SCAN
_R_LINE_RECALLED = Reason.LINE_RECALLED
_R_NOT_SHIPPED = Reason.NOT_SHIPPED
_R_RANGE_RECALLED = Reason.RANGE_RECALLED
_TYPO = Reason.TYPO
_V_COUNTERFEIT = Verdict.COUNTERFEIT
_V_DIVERTED = Verdict.DIVERTED
_V_GENUINE = Verdict.GENUINE
_V_REVOKED = Verdict.REVOKED
_V_SUSPECT_CLONE = Verdict.SUSPECT_CLONE


def judge(scans: Sequence[Any], checks: VerifyResult, histories: dict[int, History], chains: dict[int, Any],
          recalls: Recalls, config: VerdictConfig, keys: dict[int, bytes], now: int
          ) -> tuple[list[ScanVerdict], list[tuple[bytes, bytes]]]:
    """The verdict of each scan, and the scan history records to write (one per
    scanned code: its state after the batch). ``scans``: Scan objects or anything
    with their attributes (the rewards engine passes its requests); ``histories``:
    the stored history of the genuine serials scanned before; ``chains``: per
    genuine scan (by index), its trace chain (None: not shipped); ``keys``: each
    genuine serial's history key; ``now``: the time of a scan without one."""
    regions, sources, lat, lon, given, need_geo, unplaced = place_scans(scans)
    resolve_places(regions, sources, lat, lon, given, need_geo, unplaced)
    status = checks.status.tolist()
    serials = checks.serial.tolist()
    line_ids = checks.line_id.tolist()
    revoked_lines, r_first, r_last, r_reason = recalls.lines, recalls.first, recalls.last, recalls.reasons
    range_hit = range_recalls(checks.serial, r_first, r_last).tolist() if len(r_first) else None
    stored = histories
    changed: dict[int, History] = {}   # codes scanned again within the batch: their state
    # codes scanned once so far in the batch, never before: their first scan's fields
    firsts: dict[int, tuple[int, int, int, float, float, int, int, str]] = {}
    out: list[ScanVerdict] = []
    max_actors = config.max_distinct_actors
    clone_threshold = config.clone_score_threshold
    covered: dict[tuple[str, int], bool] = {}   # (dealer, region) -> inside the territory
    for i, scan in enumerate(scans):
        code_status = status[i]
        if code_status != _GENUINE:
            st_enum = CodeStatus(code_status)
            out.append(ScanVerdict(_V_COUNTERFEIT, [_STATUS_REASON[st_enum]], st_enum,
                                   regions[i], sources[i]))
            continue
        serial = serials[i]
        at = scan.time_ms
        if at is None:
            at = now
        h = changed.get(serial)
        if h is None:
            first = firsts.pop(serial, None) if firsts else None
            if first is not None:     # scanned before in this batch, for the first time
                t0, r0, loc_ms, lat0, lon0, loc_actor, hash0, actor0 = first
                h = History(t0, r0, 1, t0, r0, loc_ms, r0, lat0, lon0, loc_actor, 1, [hash0], actor0)
            elif stored:
                h = stored.get(serial)
        region = regions[i]
        reasons: list[Reason] = [_R_GENUINE_FIRST_SCAN if h is None else _R_GENUINE_REPEAT_SCAN]
        evidence: dict[str, Any] = {}
        ahash = _xxh64(scan.actor.encode())
        # ---- recalls
        revoked = False
        if revoked_lines:
            line_id = line_ids[i]
            if line_id in revoked_lines:
                revoked = True
                reasons.append(_R_LINE_RECALLED)
                evidence["recall_line"] = {"line_id": line_id, "reason": revoked_lines[line_id]}
        if range_hit is not None and (hit := range_hit[i]) >= 0:
            revoked = True
            reasons.append(_R_RANGE_RECALLED)
            evidence["recall_range"] = {"first": int(r_first[hit]), "last": int(r_last[hit]),
                                        "reason": r_reason[hit]}
        # ---- clone signals, against the history before this scan
        here_lat, here_lon = lat[i], lon[i]
        placed = here_lat == here_lat  # noqa: PLR0124 - not NaN, without a call per scan
        first_scan = None
        clone_score = 0.0
        suspect = False
        if h is not None:
            score_actors = score_travel = 0.0
            known = ahash in h.hashes
            distinct = h.distinct + (0 if known else 1)
            # Only a new actor is evidence: an actor already seen (the first
            # scanner among them) scanning again is a repeat, not a clone.
            if not known and distinct > max_actors:
                over = (distinct - max_actors) / max_actors
                score_actors = min(1.0, 0.5 + 0.5 * over)
                reasons.append(_R_CLONE_DISTINCT_ACTORS)
                evidence["distinct_actors"] = {"count": distinct, "threshold": max_actors}
            if ahash != h.loc_actor and placed and h.has_place():
                km = float(geo.haversine_km(np.array([h.loc_lat]), np.array([h.loc_lon]),
                                            np.array([here_lat]), np.array([here_lon]))[0])
                # the real gap between the two placed scans, in either order
                # (an offline scanner may upload late)
                hours = max(abs(at - h.loc_ms) / 3.6e6, 1e-6)
                speed = km / hours
                if km >= config.min_travel_km and speed > config.max_speed_kmh:
                    over = (speed - config.max_speed_kmh) / config.max_speed_kmh
                    score_travel = min(1.0, 0.5 + 0.5 * over)
                    reasons.append(_R_CLONE_IMPOSSIBLE_TRAVEL)
                    evidence["travel"] = {"from_region": h.loc_region or None, "from_time_ms": h.loc_ms,
                                          "to_region": region,
                                          "km": round(km, 1), "hours": round(hours, 3),
                                          "speed_kmh": round(speed, 1),
                                          "max_speed_kmh": config.max_speed_kmh}
            first_scan = {"time_ms": h.first_ms, "region": h.first_region or None, "actor": h.first_actor}
            score = 1.0 - (1.0 - score_actors) * (1.0 - score_travel)
            suspect = score >= clone_threshold
            # held rounded, as every reply shows it (the threshold compares the exact score)
            clone_score = round(score, 3)
        # ---- diversion
        diverted = False
        chain = chains[i]
        if chain is None:
            reasons.append(_R_NOT_SHIPPED)
        else:
            ancestors, shipment, dealer = chain
            evidence["trace"] = {"ancestors": list(ancestors),
                                 "shipped_unit": shipment.unit,
                                 "shipment_id": shipment.shipment_id,
                                 "dealer_id": dealer.dealer_id,
                                 "territory": list(dealer.territory)}
            if region is not None:
                inside = covered.get((dealer.dealer_id, region))
                if inside is None:
                    inside = covered[dealer.dealer_id, region] = dealer.covers(region)
                if not inside:
                    diverted = True
                    reasons.append(_R_DIVERTED_OUTSIDE_TERRITORY)
                    evidence["diversion"] = {"dealer_id": dealer.dealer_id,
                                             "territory": list(dealer.territory),
                                             "scan_region": region, "region_source": sources[i]}
        # ---- verdict by precedence
        if revoked:
            verdict = _V_REVOKED
        elif suspect:
            verdict = _V_SUSPECT_CLONE
        elif diverted:
            verdict = _V_DIVERTED
        else:
            verdict = _V_GENUINE
        # ---- record
        if not placed:
            here_lat = here_lon = _NAN
        if h is None:   # the first scan: its fields, packed at the end (no History for most codes)
            firsts[serial] = (at, region or 0, at if placed else 0, here_lat, here_lon, ahash if placed else 0,
                              ahash, scan.actor)
            count = 1
        else:
            if ahash not in h.hashes:
                h.distinct = min(h.distinct + 1, 65535)
                if len(h.hashes) < MAX_ACTOR_HASHES:
                    h.hashes.append(ahash)
            h.count += 1
            h.last_ms, h.last_region = at, region or 0
            if placed:   # a placeless scan leaves the travel reference alone
                h.loc_ms, h.loc_region, h.loc_lat, h.loc_lon, h.loc_actor = (
                    at, region or 0, here_lat, here_lon, ahash)
            changed[serial] = h
            count = h.count
        out.append(ScanVerdict(verdict, reasons, _S_GENUINE, region, sources[i], clone_score, first_scan, count,
                               evidence))
    # one write per scanned code, its state after the batch, in key order
    records = [(keys[serial], h.pack()) for serial, h in changed.items()]
    records += [(keys[serial], pack_first_scan(*first)) for serial, first in firsts.items()]
    return out, records
