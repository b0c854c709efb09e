"""Configuration: a TOML file plus ``SCANGATE_*`` environment variables, validated
at start, failing with the exact key that is wrong.

    [verdicts]
    max_distinct_actors = 3
    max_speed_kmh = 900.0
    min_travel_km = 100.0
    clone_score_threshold = 0.5

An environment variable ``SCANGATE_<SECTION>_<KEY>`` (upper case) overrides the
file: ``SCANGATE_VERDICTS_MAX_DISTINCT_ACTORS=5``. Without a file, the data
directory's ``scangate.toml`` is read if present.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import InvalidArgument
from .verdicts import VerdictConfig

__all__ = ["Config", "load_config", "CONFIG_FILE_NAME"]

CONFIG_FILE_NAME = "scangate.toml"


@dataclass(frozen=True)
class Config:
    verdicts: VerdictConfig = field(default_factory=VerdictConfig)


_SECTIONS: dict[str, type] = {"verdicts": VerdictConfig}


def _coerce(key: str, value: Any, kind: type) -> Any:
    if kind is int or kind == "int":
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise InvalidArgument(f"config: {key}: expected an integer, got {value!r}")
        try:
            return int(value)
        except ValueError:
            raise InvalidArgument(f"config: {key}: expected an integer, got {value!r}") from None
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
        table = doc.get(name, {})
        if not isinstance(table, dict):
            raise InvalidArgument(f"config: [{name}] must be a table")
        for key, value in table.items():
            if key not in fields:
                raise InvalidArgument(f"config: unknown key {name}.{key} (known: {', '.join(fields)})")
            values[key] = _coerce(f"{name}.{key}", value, fields[key].type)  # type: ignore[arg-type]
        for key, f in fields.items():
            var = f"SCANGATE_{name}_{key}".upper()
            if var in env:
                values[key] = _coerce(var, env[var], f.type)  # type: ignore[arg-type]
        try:
            sections[name] = cls(**values)
        except InvalidArgument as exc:
            raise InvalidArgument(f"config: {name}.{exc}") from None
    return Config(**sections)
