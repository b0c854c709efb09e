"""What a verdict is: ``ScanVerdict`` (verdict, reason codes, evidence), its reply
JSON and the consumer's message in zh-CN and en, the thresholds (``VerdictConfig``)
and a scan's fields (``Scan``).

    counterfeit    the code does not authenticate or was never issued
    revoked        its product line or serial range was recalled
    suspect_clone  a genuine code scanned by too many distinct actors, or from
                   places too far apart for the time between them (a score)
    diverted       scanned outside the territory of the dealer its unit shipped to
    genuine        otherwise; a repeat scan carries the first scan's time and place

Precedence is the order above; every signal that fired is kept in ``reasons``.
Reason codes are documented in docs/verdicts.md and never change meaning. The
deciding is scangate.decide.verdicts.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import msgspec

from .enums import CodeStatus, Reason, Verdict
from .errors import InvalidArgument

__all__ = ["MESSAGES", "MESSAGE_ZONE", "STATUS_REASON", "TYPO_MESSAGE", "Scan", "ScanVerdict", "VerdictConfig",
           "verdict_message"]

log = logging.getLogger(__name__)


# What a consumer or store app shows for each verdict: (zh-CN, en).
MESSAGES: dict[Verdict, tuple[str, str]] = {
    Verdict.GENUINE: ("正品验证通过，感谢您的扫码。", "Genuine product. Thank you for scanning."),
    Verdict.COUNTERFEIT: ("未能验证此码，可能是假冒产品，请谨慎购买。",
                          "This code could not be verified; the product may be counterfeit."),
    Verdict.REVOKED: ("该产品批次已召回，请勿使用，并联系购买渠道。",
                      "This product batch has been recalled. Please do not use it; contact the seller."),
    Verdict.SUSPECT_CLONE: ("此码已被多次异常扫描，可能被复制，请谨慎。",
                            "This code has been scanned in unusual ways and may have been copied."),
    Verdict.DIVERTED: ("正品，但不在授权销售区域内。", "Genuine, but sold outside its authorised sales region."),
}


# A misread or mistyped code (its check character fails): not evidence of a fake.
TYPO_MESSAGE = ("此码识别或输入有误，请核对后重新扫码。", "This code was misread or mistyped; please check it and scan again.")
_HOTLINE = ("如有疑问，请拨打品牌热线 {}。", " Questions? Call the brand's hotline {}.")
_REPEAT = ("正品。此码已于{when}{where}首次扫码，这是第 {n} 次扫码。",
           "Genuine. This code was first scanned on {when} (Beijing time){where}; this is scan {n}.")
MESSAGE_ZONE = ZoneInfo("Asia/Shanghai")     # consumers' local time in the messages (China programmes)


def verdict_message(verdict: Verdict, reasons: Sequence[Reason], first_scan: dict[str, Any] | None = None,
                    scan_count: int = 0, hotline: str | None = None) -> tuple[str, str]:
    """What a consumer or store app shows for a verdict, (zh-CN, en): a typo asks
    to scan again; a counterfeit warns and gives the brand's hotline when a
    campaign names one; a repeat scan of a genuine code says when and where it
    was first scanned (the district's name from the geo data; in English, its
    adcode)."""
    if verdict is _V_COUNTERFEIT:
        if _TYPO in reasons:
            return TYPO_MESSAGE
        zh, en = MESSAGES[verdict]
        return (zh + _HOTLINE[0].format(hotline), en + _HOTLINE[1].format(hotline)) if hotline else (zh, en)
    if verdict is _V_GENUINE and first_scan is not None and first_scan.get("time_ms"):
        when = datetime.fromtimestamp(first_scan["time_ms"] / 1000, MESSAGE_ZONE).strftime("%Y-%m-%d %H:%M")
        region = first_scan.get("region")
        place = _place(region)      # the data's names are Chinese: English names the adcode
        return (_REPEAT[0].format(when=when, where=f"在{place}" if place else "", n=scan_count),
                _REPEAT[1].format(when=when, where=f" in the district with adcode {region}" if place else "",
                                  n=scan_count))
    return MESSAGES[verdict]


def _place(region: int | None) -> str | None:
    """A district's name with its city's (成都市武侯区), or None when unknown."""
    if not region:
        return None
    from . import geo       # here: the geo data (numpy) loads only for a repeat scan's message

    index = geo.default_index()
    district = index.name(region)
    if district is None:
        return None
    city = index.name(region // 100 * 100)
    return district if city is None or district.startswith(city) or city == district else city + district


STATUS_REASON = {
    CodeStatus.MALFORMED: Reason.MALFORMED,
    CodeStatus.TYPO: Reason.TYPO,
    CodeStatus.COUNTERFEIT: Reason.COUNTERFEIT_TAG,
    CodeStatus.UNKNOWN_KEY: Reason.UNKNOWN_KEY_VERSION,
    CodeStatus.NOT_ISSUED: Reason.NOT_ISSUED,
}


@dataclass(frozen=True)
class VerdictConfig:
    """Thresholds (configuration, not code)."""

    max_distinct_actors: int = 3        # more distinct scanners than this: clone signal
    max_speed_kmh: float = 900.0        # faster travel between scans: clone signal
    min_travel_km: float = 100.0        # ignore jumps shorter than this (centroids, GPS)
    clone_score_threshold: float = 0.5  # score at or above this: suspect clone

    def __post_init__(self) -> None:
        if self.max_distinct_actors < 1:
            raise InvalidArgument("max_distinct_actors: must be at least 1")
        if self.max_speed_kmh <= 0:
            raise InvalidArgument("max_speed_kmh: must be above 0")
        if self.min_travel_km < 0:
            raise InvalidArgument("min_travel_km: must be 0 or more")
        if not 0 < self.clone_score_threshold <= 1:
            raise InvalidArgument("clone_score_threshold: must be in (0, 1]")


@dataclass(frozen=True)
class Scan:
    """One scan. Region: an adcode, or latitude/longitude resolved offline."""

    code: str
    actor: str
    actor_type: str = "consumer"     # consumer | store
    region: int | None = None        # 6-digit adcode
    lat: float | None = None
    lon: float | None = None
    time_ms: int | None = None       # default: now


class ScanVerdict(msgspec.Struct, array_like=True):
    """The verdict on one scan, typed: what ``Decision.verdict`` holds and what the
    decision record stores (scangate.state.records: an array, these fields in this
    order; a change to them is a new record version). ``to_json`` gives the reply's
    JSON; the enums stay enums until then.

    ``said``: the message as it was told, (zh-CN, en), when it came from elsewhere
    (a server's reply, a record written before verdicts were typed); None for a
    verdict decided here, whose message is derived from the rest (``message``)."""

    verdict: Verdict
    reasons: list[Reason]
    code_status: CodeStatus
    region: int | None               # the scan's adcode (given or resolved)
    region_source: str               # "adcode" | "geo:<package>@<version>" | "none"
    clone_score: float = 0.0         # 0..1, to 3 decimal places
    first_scan: dict[str, Any] | None = None   # on a repeat scan: time, region, actor
    scan_count: int = 0
    evidence: dict[str, Any] = {}
    hotline: str | None = None       # the brand's, for a counterfeit's message (rewards sets it)
    said: tuple[str, str] | None = None

    @property
    def label(self) -> str:
        """The verdict's wire label: genuine, counterfeit, revoked, suspect_clone, diverted."""
        return _LABEL[self.verdict]

    def words(self) -> tuple[str, str]:
        """The message, (zh-CN, en)."""
        if self.said is not None:
            return self.said
        verdict = self.verdict
        if self.first_scan is None and self.hotline is None and verdict is not _V_COUNTERFEIT:
            return MESSAGES[verdict]     # most scans: the verdict's own words (verdict_message says so too)
        return verdict_message(verdict, self.reasons, self.first_scan, self.scan_count, self.hotline)

    @property
    def message(self) -> dict[str, str]:
        zh, en = self.words()
        return {"zh-CN": zh, "en": en}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ScanVerdict:
        """The verdict a reply's JSON (``to_json``) holds; its message kept as told.
        KeyError or ValueError when ``d`` is not one."""
        message = d["message"]
        return cls(_BY_LABEL[d["verdict"]], [Reason(r) for r in d["reasons"]], _STATUS_BY_LABEL[d["code_status"]],
                   d["region"], d["region_source"], d["clone_score"], d["first_scan"], d["scan_count"],
                   d["evidence"], said=(message["zh-CN"], message["en"]))

    def to_json(self) -> dict[str, Any]:
        zh, en = self.words()
        return {
            "verdict": _LABEL[self.verdict],
            "message": {"zh-CN": zh, "en": en},
            "reasons": list(map(_REASON_VALUE.__getitem__, self.reasons)),
            "code_status": _STATUS_LABEL[self.code_status],
            "region": self.region,
            "region_source": self.region_source,
            "clone_score": self.clone_score,
            "first_scan": self.first_scan,
            "scan_count": self.scan_count,
            "evidence": self.evidence,
        }


_STATUS_LABEL = {s: s.label for s in CodeStatus}
_REASON_VALUE = {r: r.value for r in Reason}
_LABEL = {v: v.label for v in Verdict}
_BY_LABEL = {v.label: v for v in Verdict}
_STATUS_BY_LABEL = {s.label: s for s in CodeStatus}
_V_COUNTERFEIT = Verdict.COUNTERFEIT
_V_GENUINE = Verdict.GENUINE
_TYPO = Reason.TYPO
