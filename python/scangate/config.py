"""Configuration: a TOML file plus ``SCANGATE_*`` environment variables, validated
at start, failing with the exact key that is wrong.

    [verdicts]
    max_distinct_actors = 3
    max_speed_kmh = 900.0
    min_travel_km = 100.0
    clone_score_threshold = 0.5

    [server]                  # scangate serve (docs/server.md)
    host = "127.0.0.1"
    port = 50051
    workers = 1
    metrics_port = 9464       # Prometheus /metrics; 0: off
    tls_cert = ""             # PEM files; both set: TLS
    tls_key = ""
    tls_client_ca = ""        # set: mutual TLS, clients must present a certificate
    tokens_file = ""          # default: DATA/tokens.toml when it exists
    require_auth = false      # refuse to start without tokens
    max_batch = 512           # scans per group commit
    grace_s = 10.0            # SIGTERM: time to finish in-flight work
    late_scan_s = 300.0       # a client's scan time may be this far in the past (an offline scan)...
    clock_skew_s = 10.0       # ...and this far ahead (counts as now); outside: INVALID_ARGUMENT time_ms
    epcis_schema = ""         # the GS1 EPCIS 2.0 JSON schema file: UploadEpcis(validate_schema=true)
    prepare = "auto"          # who decides a scan's read-only half: workers, writer, or auto (docs/server.md)
    deciders = 1              # decider (writer) processes; more than one with the PostgreSQL store only

    [store]
    url = ""                  # the decision state on PostgreSQL: postgresql://user@host:port/db (docs/scale-out.md)

    [limits]                  # shared by all workers; 0: off (docs/server.md)
    actor_scans_per_minute = 120
    actor_failures_per_hour = 30   # scans of codes that are not genuine (guessing)
    client_requests_per_second = 0 # per token name, or peer address without tokens
    client_codes_per_second = 50000   # codes in Scan, VerifyCodes and Trace calls
    client_failures_per_hour = 36000  # of those, codes that are not genuine

    [plugins]                 # rule plugins (docs/campaigns.md#rule-plugins)
    allow = ["mycompany.rules:vip"]   # module:attr a campaign may name, besides entry points

An environment variable ``SCANGATE_<SECTION>_<KEY>`` (upper case) overrides the
file: ``SCANGATE_VERDICTS_MAX_DISTINCT_ACTORS=5``. Without a file, the data
directory's ``scangate.toml`` is read if present. A list takes a comma-separated
value: ``SCANGATE_PLUGINS_ALLOW=mycompany.rules:vip,mycompany.rules:antifraud``.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .clock import ScanTimePolicy
from .errors import InvalidArgument
from .verdicts import VerdictConfig

__all__ = ["Config", "ServerConfig", "LimitsConfig", "PluginsConfig", "load_config", "CONFIG_FILE_NAME"]

CONFIG_FILE_NAME = "scangate.toml"


PREPARE_MODES = ("auto", "workers", "writer")


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 50051
    workers: int = 1
    metrics_port: int = 9464
    tls_cert: str = ""
    tls_key: str = ""
    tls_client_ca: str = ""
    tokens_file: str = ""
    require_auth: bool = False
    max_batch: int = 512
    grace_s: float = 10.0
    late_scan_s: float = 300.0
    clock_skew_s: float = 10.0
    epcis_schema: str = ""
    prepare: str = "auto"
    deciders: int = 1

    @property
    def scan_time_policy(self) -> ScanTimePolicy:
        """The window a client's scan time must fall in (scangate.clock)."""
        return ScanTimePolicy(round(self.late_scan_s * 1000), round(self.clock_skew_s * 1000))

    def prepares_in_workers(self, cpus: int) -> bool:
        """Whether the workers decide the read-only half of each call
        (scangate.decide.prepared) on a machine with ``cpus`` processors for the
        server: "workers" always, "writer" never, "auto" when several workers feed
        the one writer and each of them and the writer can have a processor of its
        own. With one worker, that worker's event loop is the narrower path (and
        where processes share processors the work only moves between them, the
        hand-over costing more than it saves: docs/server.md)."""
        return self.prepare == "workers" or (self.prepare == "auto" and 2 <= self.workers < cpus - 1)

    def __post_init__(self) -> None:
        if self.prepare not in PREPARE_MODES:
            raise InvalidArgument(f"prepare: {self.prepare!r} is not one of {', '.join(PREPARE_MODES)}")
        if not 0 <= self.port <= 65535:
            raise InvalidArgument(f"port: {self.port} is not a TCP port (0 to 65535; 0 picks a free one)")
        if not 0 <= self.metrics_port <= 65535:
            raise InvalidArgument(f"metrics_port: {self.metrics_port} is not a TCP port")
        if not 1 <= self.workers <= 256:
            raise InvalidArgument(f"workers: must be 1 to 256, not {self.workers}")
        if not 1 <= self.deciders <= 64:
            raise InvalidArgument(f"deciders: must be 1 to 64, not {self.deciders}")
        if not 1 <= self.max_batch <= 10_000:
            raise InvalidArgument(f"max_batch: must be 1 to 10000, not {self.max_batch}")
        for name in ("late_scan_s", "clock_skew_s"):
            value = getattr(self, name)
            if not 0 <= value <= 30 * 86400:
                raise InvalidArgument(f"{name}: must be 0 to 2592000 seconds (30 days), not {value}")
        if self.grace_s < 0:
            raise InvalidArgument(f"grace_s: must be 0 or more, not {self.grace_s}")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise InvalidArgument("tls_cert: tls_cert and tls_key go together")
        if self.tls_client_ca and not self.tls_cert:
            raise InvalidArgument("tls_client_ca: mutual TLS needs tls_cert and tls_key too")
        for name in ("tls_cert", "tls_key", "tls_client_ca", "epcis_schema"):
            value = getattr(self, name)
            if value and not Path(value).is_file():
                raise InvalidArgument(f"{name}: no file {value}")
        if self.epcis_schema:
            from .epcis import load_schema      # only when set: it imports jsonschema

            try:
                load_schema(self.epcis_schema)
            except Exception as exc:  # noqa: BLE001 - OSError, ValueError, jsonschema.SchemaError
                why = getattr(exc, "message", None) or str(exc)     # SchemaError's str is a page long
                raise InvalidArgument(f"epcis_schema: {self.epcis_schema} is not a JSON schema: {why}") from None


@dataclass(frozen=True)
class LimitsConfig:
    """Rate limits, shared by all worker processes of a server (scangate.server.limits,
    docs/server.md "Guessing limits"); 0 turns one off. Each is a bucket of that many
    tokens that refills at that rate."""

    actor_scans_per_minute: int = 120
    actor_failures_per_hour: int = 30
    client_requests_per_second: int = 0
    # across Scan, VerifyCodes and Trace; a call costs its number of codes. Above
    # what one server decides (a client scanning as fast as it can stays under it);
    # admin and line tokens are exempt
    client_codes_per_second: int = 50_000
    # the same calls' codes that are not genuine: 10 a second on average. An app
    # back end taking 100 scans a second, 5% of them counterfeits or typos, uses
    # 18,000 an hour; a guesser gets 10 a second after a burst of 36,000
    client_failures_per_hour: int = 36_000

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not 0 <= value <= 1_000_000_000:
                raise InvalidArgument(f"{f.name}: must be 0 (off) to 1000000000, not {value}")


@dataclass(frozen=True)
class PluginsConfig:
    """Which ``module:attr`` rule plugins campaigns may name, besides the entry
    points of group ``scangate.rules`` (always allowed: installing a package is the
    operator's act). Checked for shape here; ``scangate.plugins.configure(allow)``
    imports each when a process applies them, failing on one that cannot load."""

    allow: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        from .plugins import REF_RE

        for i, ref in enumerate(self.allow):
            if not isinstance(ref, str) or not REF_RE.fullmatch(ref):
                raise InvalidArgument(f"allow[{i}]: must be a \"package.module:attribute\" reference, got {ref!r}")


STORE_SCHEMES = ("postgresql://", "postgres://")


@dataclass(frozen=True)
class StoreConfig:
    """Where the decision state lives: "" (the default) in the data directory's
    LMDB environment; a ``postgresql://`` URL for PostgreSQL (scangate.state.pg,
    docs/scale-out.md). A command's ``--store`` (or ``SCANGATE_STORE``) wins over
    ``[store] url``."""

    url: str = ""

    def __post_init__(self) -> None:
        if self.url and not self.url.startswith(STORE_SCHEMES):
            # the scheme only: a URL may hold a password
            raise InvalidArgument(f"url: not a postgresql:// URL ({self.url.split(':', 1)[0][:20]!r}...); "
                                  "leave it empty for the data directory's own store")


@dataclass(frozen=True)
class Config:
    verdicts: VerdictConfig = field(default_factory=VerdictConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    plugins: PluginsConfig = field(default_factory=PluginsConfig)
    store: StoreConfig = field(default_factory=StoreConfig)


_SECTIONS: dict[str, type] = {"verdicts": VerdictConfig, "server": ServerConfig, "limits": LimitsConfig,
                              "plugins": PluginsConfig, "store": StoreConfig}
STORE_ENV = "SCANGATE_STORE"


def store_url(given: str | None, data_dir: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> str:
    """The decision state's store for a command on ``data_dir``: ``given`` (its
    ``--store``), else ``SCANGATE_STORE``, else ``[store] url`` of the data
    directory's scangate.toml (or ``SCANGATE_STORE_URL``); "" for the data
    directory's own LMDB store."""
    env = os.environ if env is None else env
    url = given or env.get(STORE_ENV, "") or load_config(data_dir=data_dir, env=env).store.url
    StoreConfig(url)        # the same check, whichever way it came
    return url


def _coerce(key: str, value: Any, kind: type | str) -> Any:
    # kind is a dataclass field's type: a string where the defining module has
    # `from __future__ import annotations`, the type itself otherwise
    if kind is int or kind == "int":
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise InvalidArgument(f"config: {key}: expected an integer, got {value!r}")
        try:
            return int(value)
        except ValueError:
            raise InvalidArgument(f"config: {key}: expected an integer, got {value!r}") from None
    if kind is bool or kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            return value.lower() in ("1", "true", "yes", "on")
        raise InvalidArgument(f"config: {key}: expected true or false, got {value!r}")
    if kind is str or kind == "str":
        if not isinstance(value, str):
            raise InvalidArgument(f"config: {key}: expected a string, got {value!r}")
        return value
    if kind == "tuple[str, ...]":
        if isinstance(value, str):      # an environment variable: comma-separated
            return tuple(p.strip() for p in value.split(",") if p.strip())
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise InvalidArgument(f"config: {key}: expected an array of strings, got {value!r}")
        return tuple(value)
    if kind is float or kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise InvalidArgument(f"config: {key}: expected a number, got {value!r}")
        try:
            return float(value)
        except ValueError:
            raise InvalidArgument(f"config: {key}: expected a number, got {value!r}") from None
    return value


def load_config(path: str | os.PathLike[str] | None = None, *, data_dir: str | os.PathLike[str] | None = None,
                env: Mapping[str, str] | None = None) -> Config:
    """Read ``path`` (or ``data_dir/scangate.toml`` if it exists), then apply
    ``SCANGATE_<SECTION>_<KEY>`` overrides; raise InvalidArgument naming the key."""
    env = os.environ if env is None else env
    doc: dict[str, Any] = {}
    source = Path(path) if path is not None else (Path(data_dir) / CONFIG_FILE_NAME if data_dir else None)
    if source is not None and (path is not None or source.exists()):
        try:
            doc = tomllib.loads(source.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InvalidArgument(f"config: no file {source}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise InvalidArgument(f"config: {source}: {exc}") from None
    for key in doc:
        if key not in _SECTIONS:
            raise InvalidArgument(f"config: unknown section [{key}] (known: {', '.join(_SECTIONS)})")
    sections = {}
    for name, cls in _SECTIONS.items():
        fields = {f.name: f for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        from_env: dict[str, str] = {}
        table = doc.get(name, {})
        if not isinstance(table, dict):
            raise InvalidArgument(f"config: [{name}] must be a table")
        for key, value in table.items():
            if key not in fields:
                raise InvalidArgument(f"config: unknown key {name}.{key} (known: {', '.join(fields)})")
            values[key] = _coerce(f"{name}.{key}", value, fields[key].type)
        for key, f in fields.items():
            var = f"SCANGATE_{name}_{key}".upper()
            if var in env:
                values[key] = _coerce(var, env[var], f.type)
                from_env[key] = var
        try:
            sections[name] = cls(**values)
        except InvalidArgument as exc:
            # name the variable when the value came from one (messages start with the key)
            env_var = next((v for k, v in from_env.items() if str(exc).startswith((f"{k}:", f"{k}["))), None)
            raise InvalidArgument(f"config: {env_var + ': ' if env_var else ''}{name}.{exc}") from None
    return Config(**sections)
