"""A data directory: the LMDB store plus the key file, and the batch API over
them (issue and verify codes).

Layout::

    DIR/keys.json    key versions, mode 0600 (or the file named by SCANGATE_KEY_FILE)
    DIR/lmdb/        the main LMDB environment (data.mdb, lock.mdb): decisions, issuance
    DIR/lmdb/trace/  the trace's LMDB environment (scangate.state.store); uploads/ holds
                     a running link upload's scratch table
    DIR/run/         ``scangate serve``: one directory per running server

The directory holds key material, campaign draw secrets, actor ids and scans, so
everything scangate creates in it is owner-only: directories 0700, files 0600,
set at creation (``make_private_dir``, ``open_private_file``) whatever the umask.
Opening a directory that other users can read logs one warning per path and
process (``check_private``).
"""

from __future__ import annotations

import logging
import os
import shlex
import stat
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _core
from .codes import QR_ALPHANUMERIC, iter_rendered_codes, render_codes_into, verify_text
from .enums import CodeStatus, Level
from .errors import InvalidArgument, NotFound
from .keys import KEY_FILE_ENV, Keyring, KeyVersion
from .store import DEFAULT_MAP_SIZE, IssuedRange, ProductLine, Store

if TYPE_CHECKING:
    from .state.pg import PgStore

__all__ = [
    "DataDir",
    "IssuedCodes",
    "VerifyResult",
    "CodeCheck",
    "init_data_dir",
    "open_data_dir",
    "DEFAULT_URL_PREFIX",
    "make_private_dir",
    "open_private_file",
    "check_private",
]

log = logging.getLogger(__name__)

DEFAULT_URL_PREFIX = "HTTPS://SCN.EXAMPLE.COM/"


PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
# the check lists this many paths in its one line; the fix covers the rest
_LISTED = 10


def make_private_dir(path: str | os.PathLike[str]) -> None:
    """Create the directory ``path`` and its missing parents, each 0700.

    The mode is given to mkdir itself, so the directory is never reachable by
    others, not even for a moment; a umask can only take bits away from it. An
    existing directory is left as it is (its owner chose its mode).
    """
    p = Path(path)
    missing: list[Path] = []
    while not p.is_dir() and p.parent != p:
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            os.mkdir(d, PRIVATE_DIR_MODE)
        except FileExistsError:
            if not d.is_dir():
                raise


def open_private_file(path: str | os.PathLike[str], flags: int) -> int:
    """``os.open(path, flags | O_CREAT)``: a file it creates is 0600 whatever
    the umask (which can only take bits away); an existing file keeps its mode."""
    return os.open(path, flags | os.O_CREAT, PRIVATE_FILE_MODE)


_warned: set[str] = set()
_warned_lock = threading.Lock()


def _open_to_others(root: Path, outside: Iterable[Path]) -> list[tuple[str, int]]:
    """(path, mode) of ``root``, everything under it, and the ``outside`` files,
    that group or others may use. Symbolic links (their mode means nothing) and
    sockets (the 0700 directory around them is what guards them) do not count."""
    found: list[tuple[str, int]] = []

    def look(path: str, follow: bool) -> None:
        try:
            st = os.stat(path) if follow else os.lstat(path)
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            return                      # gone meanwhile (a server's run directory), or not ours to read
        if not (stat.S_ISLNK(st.st_mode) or stat.S_ISSOCK(st.st_mode)) and st.st_mode & 0o077:
            found.append((path, stat.S_IMODE(st.st_mode)))

    look(str(root), True)
    for dirpath, dirnames, filenames in os.walk(root):       # does not follow links
        for name in dirnames + filenames:
            look(os.path.join(dirpath, name), False)
    for path in outside:
        look(str(path), True)
    return found


def check_private(root: str | os.PathLike[str], also: Iterable[str | os.PathLike[str]] = ()) -> list[str]:
    """Warn when the data directory ``root``, anything in it, or a file of
    ``also`` (a key file kept elsewhere) can be read or entered by group or others.

    One WARNING line names the paths and the fix, once per process and path: a
    server's processes and a long-lived client warn once, not at every open.
    Returns the paths warned about now.
    """
    root = Path(root)
    top = os.path.abspath(root)
    outside = [Path(p) for p in also if not (os.path.abspath(p) + os.sep).startswith(top + os.sep)]
    found = _open_to_others(root, outside)
    with _warned_lock:
        new = [(p, m) for p, m in found if os.path.abspath(p) not in _warned]
        _warned.update(os.path.abspath(p) for p, _ in new)
    if not new:
        return []
    listed = ", ".join(f"{p} ({m:04o})" for p, m in new[:_LISTED])
    more = f" and {len(new) - _LISTED} more" if len(new) > _LISTED else ""
    named = {str(p) for p, _ in new}
    elsewhere = [str(p) for p in outside if str(p) in named]
    fixes = [f"chmod -R go= {shlex.quote(str(root))}"] if named - set(elsewhere) else []
    fixes += [f"chmod go= {shlex.quote(p)}" for p in elsewhere]
    log.warning("%s: group or others can read or enter %s%s; scangate keeps code keys, campaign secrets, "
                "actor ids and scans there. Fix: %s", root, listed, more, "; ".join(fixes))
    return sorted(named)


def _key_path(root: Path) -> Path:
    env = os.environ.get(KEY_FILE_ENV)
    return Path(env) if env else root / "keys.json"


@dataclass(frozen=True)
class IssuedCodes:
    """Codes issued in one call: their range, and their text as an (N x 29) array."""

    line: ProductLine
    range: IssuedRange
    text: np.ndarray  # uint8 (N x 29)

    def __len__(self) -> int:
        return len(self.text)

    def as_strings(self) -> list[str]:
        return [bytes(row).decode("ascii") for row in self.text]

    def as_bytes_array(self) -> np.ndarray:
        """A zero-copy numpy 'S29' view of the codes."""
        return self.text.view(f"S{_core.CODE_LEN}").reshape(-1)


@dataclass(frozen=True)
class CodeCheck:
    """The result of verifying one code."""

    status: CodeStatus
    key_version: int
    level: Level | None
    serial: int | None
    line: ProductLine | None

    @property
    def genuine(self) -> bool:
        return self.status is CodeStatus.GENUINE


@dataclass(frozen=True)
class VerifyResult:
    """Per-code arrays for a batch; ``lines`` maps line ids to product lines."""

    status: np.ndarray  # uint8 CodeStatus values
    key_version: np.ndarray  # uint16
    serial: np.ndarray  # uint64 (0 unless genuine)
    level: np.ndarray  # uint8 (0 unless genuine)
    line_id: np.ndarray  # int64 (-1 unless genuine)
    lines: dict[int, ProductLine]

    def __len__(self) -> int:
        return len(self.status)

    def __getitem__(self, i: int) -> CodeCheck:
        status = CodeStatus(int(self.status[i]))
        genuine = status is CodeStatus.GENUINE
        return CodeCheck(
            status,
            int(self.key_version[i]),
            Level(int(self.level[i])) if genuine else None,
            int(self.serial[i]) if genuine else None,
            self.lines[int(self.line_id[i])] if genuine else None,
        )

    def counts(self) -> dict[CodeStatus, int]:
        counts = np.bincount(self.status, minlength=len(CodeStatus))
        return {s: int(counts[s]) for s in CodeStatus}


class DataDir:
    """An open data directory. Open it in the process that uses it (never across fork).

    ``decisions``: where the decision state lives when it is not this directory's
    LMDB environment: the PostgreSQL store (scangate.state.pg) that
    ``open_data_dir(..., store=URL)`` connected to; None on LMDB (the default).
    The keys, the issuance ledger, the trace, the campaigns and the recalls stay
    in the directory either way."""

    def __init__(self, root: Path, store: Store, keys: Keyring, decisions: PgStore | None = None):
        self.root = root
        self.store = store
        self.keys = keys
        self.decisions = decisions

    def close(self) -> None:
        if self.decisions is not None:
            self.decisions.close()
        self.store.close()

    def __enter__(self) -> DataDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def url_prefix(self) -> str:
        return self.store.url_prefix or DEFAULT_URL_PREFIX

    # ------------------------------------------------------------------ keys
    def rotate_key(self) -> KeyVersion:
        return self.keys.rotate()

    # ------------------------------------------------------------------ issue
    def reserve(
        self,
        sku: str,
        level: Level | str | int,
        count: int,
        *,
        batch: str = "",
        gtin: str = "",
        attributes: dict[str, Any] | None = None,
    ) -> tuple[ProductLine, IssuedRange, KeyVersion]:
        """Find or create the line and durably reserve ``count`` serials for it."""
        line = self.store.line_for(sku, level, batch=batch, gtin=gtin, attributes=attributes)
        key = self.keys.current
        return line, self.store.reserve_range(line, count, key.version), key

    def issue_codes(
        self,
        sku: str,
        level: Level | str | int,
        count: int,
        *,
        batch: str = "",
        gtin: str = "",
        attributes: dict[str, Any] | None = None,
    ) -> IssuedCodes:
        """Issue ``count`` new codes in memory (for files use ``iter_issue``)."""
        line, rng, key = self.reserve(sku, level, count, batch=batch, gtin=gtin, attributes=attributes)
        text = np.empty((count, _core.CODE_LEN), np.uint8)
        render_codes_into(key, rng.first, line.level, text)
        rng = self.store.complete_range(rng)
        return IssuedCodes(line, rng, text)

    def iter_issue(
        self,
        line: ProductLine,
        rng: IssuedRange,
        key: KeyVersion,
        *,
        prefix: str = "",
        chunk: int = 1 << 20,
    ) -> Iterator[np.ndarray]:
        """Yield newline-terminated lines of a reserved range, chunk by chunk."""
        if any(ord(c) > 126 or ord(c) < 32 for c in prefix):
            raise InvalidArgument("prefix: must be printable ASCII")
        yield from iter_rendered_codes(
            key, rng.first, line.level, rng.count, prefix=prefix.encode(), chunk=chunk
        )

    # ------------------------------------------------------------------ verify
    def verify_codes(self, codes: bytes | bytearray | memoryview | Sequence[str] | np.ndarray) -> VerifyResult:
        """Verify a batch: a newline-separated buffer, a list of str, or an 'S' array.

        Never raises for bad codes: every input line gets a status.
        """
        table = self.store.range_table()
        v = verify_text(codes, self.keys, table)
        # the lines of the ranges hit, sorted and unique (np.unique costs more at this size)
        lines = self.store.get_lines(sorted(set(table.line_ids[v.range_hits].tolist())))
        return VerifyResult(v.status, v.key_version, v.serial, v.level, v.line_id, lines)

    def verify_code(self, code: str) -> CodeCheck:
        """Verify one code (a batch of one)."""
        return self.verify_codes([code])[0]


def init_data_dir(path: str | os.PathLike[str], *, url_prefix: str = DEFAULT_URL_PREFIX,
                  map_size: int = DEFAULT_MAP_SIZE) -> DataDir:
    """Create a data directory: the LMDB environment and key version 1."""
    root = Path(path)
    key_path = _key_path(root)
    if (root / "lmdb" / "data.mdb").exists() or key_path.exists():
        raise InvalidArgument(f"{root} already holds a scangate data directory")
    bad = sorted(set(url_prefix.upper()) - QR_ALPHANUMERIC)
    if any(ord(c) < 33 or ord(c) > 126 for c in url_prefix):
        raise InvalidArgument("url_prefix: must be printable ASCII without spaces")
    if bad:
        log.warning("url prefix %r has characters outside QR alphanumeric mode: %s", url_prefix, "".join(bad))
    make_private_dir(root)
    keys = Keyring.create(key_path)
    store = Store(root / "lmdb", map_size=map_size, create=True)
    store.url_prefix = url_prefix
    check_private(root, [key_path])          # a directory that existed before keeps its mode: say so
    return DataDir(root, store, keys)


def open_data_dir(path: str | os.PathLike[str], *, create: bool = False,
                  map_size: int = DEFAULT_MAP_SIZE, store: str | None = None) -> DataDir:
    """Open an existing data directory (or create it when ``create`` is true).
    ``store``: a ``postgresql://`` URL of the decision state (scangate.state.pg,
    whose schema ``scangate init --store`` made), or None to keep it in the
    directory's LMDB environment."""
    root = Path(path)
    if not (root / "lmdb" / "data.mdb").exists():
        if not create:
            raise NotFound(f"no scangate data directory at {root} (run: scangate init --data {root})")
        data = init_data_dir(root, map_size=map_size)
    else:
        check_private(root, [_key_path(root)])
        keys = Keyring.load(_key_path(root))
        data = DataDir(root, Store(root / "lmdb", map_size=map_size), keys)
    if store:
        try:
            data.decisions = connect_store(store)
        except BaseException:
            data.close()
            raise
    return data


def connect_store(url: str) -> PgStore:
    """The PostgreSQL decision state at ``url``, its schema checked (this release's,
    made by ``scangate init --store``). InvalidArgument for a URL that is not a
    PostgreSQL one; scangate.state.pg.StoreUnavailable when the database cannot
    be reached; CorruptionError when it holds no schema or another release's."""
    if not url.startswith(("postgresql://", "postgres://")):
        raise InvalidArgument(f"store: {url!r} is not a postgresql:// URL (the decision state's store; "
                              "leave it out for the data directory's own)")
    from .state.pg import PgStore

    pg = PgStore(url)
    try:
        pg.check()
    except BaseException:
        pg.close()
        raise
    return pg
