"""Prometheus metrics, shared by every worker process.

The supervisor points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory before the
workers start; each worker's metrics go to files there and the supervisor's HTTP
endpoint (``server.metrics_port``, path /metrics) adds them up, so one scrape sees
the whole server however many workers it has.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Histogram

__all__ = ["REQUESTS", "LATENCY", "VERDICTS", "REASONS", "NO_REWARD", "AWARDS", "COMMIT_BATCH",
           "COMMIT_SECONDS", "REFUSED", "request", "verdict", "reason", "no_reward", "award", "refused",
           "observe_commit"]

REQUESTS = Counter("scangate_requests", "gRPC requests by method and status code", ["method", "code"])
LATENCY = Histogram("scangate_request_seconds", "gRPC request latency by method", ["method"],
                    buckets=(.0005, .001, .002, .005, .01, .02, .05, .1, .2, .5, 1, 2, 5, 10))
VERDICTS = Counter("scangate_verdicts", "scan verdicts", ["verdict"])
REASONS = Counter("scangate_verdict_reasons", "scan verdict reason codes", ["reason"])
NO_REWARD = Counter("scangate_no_reward", "scans that won nothing, by reason code", ["reason"])
AWARDS = Counter("scangate_awards", "rewards granted, by kind", ["kind"])
COMMIT_BATCH = Histogram("scangate_commit_batch_size", "scans per group commit",
                         buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024))
COMMIT_SECONDS = Histogram("scangate_commit_seconds", "time to decide and commit one group",
                           buckets=(.0005, .001, .002, .005, .01, .02, .05, .1, .2, .5, 1))
REFUSED = Counter("scangate_rate_limited", "requests refused by a rate limit", ["limit"])


# Labelled children, looked up once: ``labels()`` costs microseconds per call.
_cache: dict[tuple[int, str], Any] = {}


def _child(metric: Any, *values: str) -> Any:
    key = (id(metric), "\0".join(values))
    child = _cache.get(key)
    if child is None:
        child = _cache[key] = metric.labels(*values)
    return child


def request(method: str, code: str, seconds: float | None = None) -> None:
    _child(REQUESTS, method, code).inc()
    if seconds is not None:
        _child(LATENCY, method).observe(seconds)


def verdict(label: str, n: int = 1) -> None:
    _child(VERDICTS, label).inc(n)


def reason(code: str, n: int = 1) -> None:
    _child(REASONS, code).inc(n)


def no_reward(code: str, n: int = 1) -> None:
    _child(NO_REWARD, code).inc(n)


def award(kind: str, n: int = 1) -> None:
    _child(AWARDS, kind).inc(n)


def refused(limit: str) -> None:
    _child(REFUSED, limit).inc()


def observe_commit(size: int, seconds: float) -> None:
    COMMIT_BATCH.observe(size)
    COMMIT_SECONDS.observe(seconds)
