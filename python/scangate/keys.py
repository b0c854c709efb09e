"""The key file: AES-128 keys by version. Keys never enter LMDB, logs or replies.

The file is JSON, owner-only (0600 whatever the umask), written atomically (temp
file, fsync, rename, fsync of the directory) so a crash leaves either the old or
the new key set.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from ._core import MAX_KEY_VERSION
from .clock import now_ms
from .errors import CorruptionError, InvalidArgument, NotFound

__all__ = ["KeyVersion", "Keyring", "KEY_FILE_ENV"]

log = logging.getLogger(__name__)

KEY_FILE_ENV = "SCANGATE_KEY_FILE"


@dataclass(frozen=True)
class KeyVersion:
    version: int
    created_at: int  # unix seconds
    key: bytes

    def __repr__(self) -> str:  # never print key material
        return f"KeyVersion(version={self.version}, created_at={self.created_at})"


class Keyring:
    """All key versions of one data directory; the newest issues new codes."""

    def __init__(self, path: Path, versions: dict[int, KeyVersion]):
        self.path = path
        self._versions = dict(versions)

    # ------------------------------------------------------------------ access
    @property
    def current(self) -> KeyVersion:
        if not self._versions:
            raise CorruptionError(f"key file {self.path} holds no key")
        return self._versions[max(self._versions)]

    def get(self, version: int) -> KeyVersion | None:
        return self._versions.get(version)

    def __getitem__(self, version: int) -> KeyVersion:
        kv = self._versions.get(version)
        if kv is None:
            raise NotFound(f"key version {version} is not in {self.path}")
        return kv

    def versions(self) -> list[KeyVersion]:
        return [self._versions[v] for v in sorted(self._versions)]

    # ------------------------------------------------------------------ files
    @classmethod
    def load(cls, path: Path) -> Keyring:
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise NotFound(f"no key file at {path}") from None
        # Decoding errors are replaced, and raised outside the except block so that
        # not even __context__ keeps them: UnicodeDecodeError and JSONDecodeError
        # carry the file's text, that is, the keys.
        failure = None
        versions: dict[int, KeyVersion] = {}
        try:
            doc = json.loads(raw.decode("utf-8"))
            for entry in doc["keys"]:
                key = bytes.fromhex(entry["key"])
                v = int(entry["version"])
                if len(key) != 16 or not 1 <= v <= MAX_KEY_VERSION:
                    raise ValueError("bad key length or version")
                versions[v] = KeyVersion(v, int(entry["created_at"]), key)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            failure = type(exc).__name__
        del raw
        if failure is not None:
            raise CorruptionError(f"key file {path} is unreadable: {failure}")
        if not versions:
            raise CorruptionError(f"key file {path} holds no key")
        return cls(path, versions)      # its mode is checked with the data directory's (check_private)

    @classmethod
    def create(cls, path: Path) -> Keyring:
        if path.exists():
            raise InvalidArgument(f"key file {path} already exists; refusing to overwrite")
        ring = cls(path, {})
        ring._add_version()
        return ring

    def rotate(self) -> KeyVersion:
        """Add a new key version; it becomes current. Old versions keep verifying."""
        return self._add_version()

    def _add_version(self) -> KeyVersion:
        version = max(self._versions, default=0) + 1
        if version > MAX_KEY_VERSION:
            raise InvalidArgument(f"key versions are exhausted (max {MAX_KEY_VERSION})")
        kv = KeyVersion(version, now_ms() // 1000, secrets.token_bytes(16))
        self._save({**self._versions, version: kv})
        self._versions[version] = kv
        log.info("key version %d added to %s", version, self.path)
        return kv

    def _save(self, versions: dict[int, KeyVersion]) -> None:
        doc = {
            "format": 1,
            "keys": [
                {"version": kv.version, "created_at": kv.created_at, "key": kv.key.hex()}
                for kv in (versions[v] for v in sorted(versions))
            ],
        }
        data = json.dumps(doc, indent=1).encode()
        from .datadir import open_private_file   # here: datadir imports this module

        tmp = self.path.with_name(self.path.name + ".tmp")
        # A leftover .tmp (a crash) would keep its own mode through O_TRUNC and then
        # become the key file: start from a new file, created 0600.
        tmp.unlink(missing_ok=True)
        fd = open_private_file(tmp, os.O_WRONLY | os.O_EXCL)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        dfd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
