"""Token authentication with roles.

Tokens live in a TOML file (default ``DATA/tokens.toml``), one table per client,
holding only the SHA-256 of the token, so the file leaks no credential:

    [[tokens]]
    name = "wechat-mini-program"
    role = "scanner"
    sha256 = "9f86d0..."

``scangate tokens add NAME --role ROLE`` makes a token, prints it once and stores
its hash; ``scangate tokens list`` shows names and roles; ``scangate tokens
revoke NAME`` removes the name's entries. A server reads the file at start: a
revocation takes effect when the server next starts. A client sends ``authorization: Bearer <token>`` metadata. Roles:

    scanner   scan, trace, verify, points: upstream consumer and store apps
    line      issue codes, verify, upload links, shipments and EPCIS: packaging lines
    admin     everything, including campaigns, dealers, redemptions, payouts and
              recalls (RecallService: no other role may recall or list recalls)

With no tokens configured the server runs open (and says so in its log); set
``server.require_auth = true`` to refuse that.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import tomllib
from dataclasses import dataclass
from pathlib import Path

from scangate.datadir import make_private_dir, open_private_file
from scangate.errors import InvalidArgument, NotFound

__all__ = ["ROLES", "Principal", "TokenTable", "add_token", "allowed", "list_tokens", "revoke_token"]

ROLES = ("scanner", "line", "admin")
_S = "/scangate.v1."
# method -> roles besides admin that may call it; a method not listed here
# (campaigns, dealers, redemptions, payouts, RecallService) is admin only
_ACCESS: dict[str, tuple[str, ...]] = {
    _S + "ScanService/Scan": ("scanner",),
    _S + "ScanService/ScanStream": ("scanner",),
    _S + "TraceService/Trace": ("scanner", "line"),
    _S + "CodeService/VerifyCodes": ("scanner", "line"),
    _S + "PointsService/GetPoints": ("scanner",),
    _S + "PointsService/Leaderboard": ("scanner",),
    _S + "CodeService/IssueCodes": ("line",),
    _S + "TraceService/UploadLinks": ("line",),
    _S + "TraceService/UploadShipments": ("line",),
    _S + "TraceService/UploadEpcis": ("line",),
}
# open to anyone: load-balancer health checks and schema discovery (the API is public)
PUBLIC_PREFIXES = ("/grpc.health.v1.", "/grpc.reflection.")


def allowed(role: str, method: str) -> bool:
    return role == "admin" or role in _ACCESS.get(method, ())


@dataclass(frozen=True)
class Principal:
    name: str
    role: str


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenTable:
    def __init__(self, entries: dict[str, Principal]):
        self._by_digest = entries

    def __len__(self) -> int:
        return len(self._by_digest)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TokenTable:
        """Read a tokens file; InvalidArgument names the entry and field that is wrong."""
        p = Path(path)
        try:
            doc = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InvalidArgument(f"tokens_file: no file {p}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise InvalidArgument(f"tokens_file: {p}: {exc}") from None
        entries: dict[str, Principal] = {}
        for i, t in enumerate(doc.get("tokens", [])):
            where = f"{p}: tokens[{i}]"
            if not isinstance(t, dict):
                raise InvalidArgument(f"{where}: must be a table")
            name, role, digest = t.get("name"), t.get("role"), t.get("sha256")
            if not isinstance(name, str) or not name:
                raise InvalidArgument(f"{where}.name: must be a non-empty string")
            if role not in ROLES:
                raise InvalidArgument(f"{where}.role: {role!r} is not one of {', '.join(ROLES)}")
            if not isinstance(digest, str) or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                raise InvalidArgument(f"{where}.sha256: must be 64 lower-case hex digits")
            entries[digest] = Principal(name, role)
        return cls(entries)

    def identify(self, token: str) -> Principal | None:
        digest = _digest(token)
        for known, who in self._by_digest.items():     # constant time per entry
            if hmac.compare_digest(known, digest):
                return who
        return None


def add_token(path: str | os.PathLike[str], name: str, role: str) -> str:
    """Make a token for ``name``, append its hash to the tokens file (created
    0600, in a directory created 0700 if missing), and return the token: the only
    time it is ever shown."""
    if role not in ROLES:
        raise InvalidArgument(f"role: {role!r} is not one of {', '.join(ROLES)}")
    if not name or any(c in name for c in '"\\\n'):
        raise InvalidArgument("name: must be non-empty, without quotes, backslashes or newlines")
    p = Path(path)
    if p.exists():
        TokenTable.load(p)          # refuse to append to a broken file
    make_private_dir(p.parent)      # usually the data directory, not created yet: owner-only like the rest
    token = "sg_" + secrets.token_urlsafe(32)
    fd = open_private_file(p, os.O_WRONLY | os.O_APPEND)
    with os.fdopen(fd, "a", encoding="utf-8") as f:
        f.write(f'\n[[tokens]]\nname = "{name}"\nrole = "{role}"\nsha256 = "{_digest(token)}"\n')
        f.flush()
        os.fsync(f.fileno())
    return token


def list_tokens(path: str | os.PathLike[str]) -> list[Principal]:
    """The tokens file's clients, in file order: names and roles, never a hash.
    An absent file has none."""
    p = Path(path)
    if not p.exists():
        return []
    TokenTable.load(p)              # the same checks as the server: a broken file is named, not listed
    doc = tomllib.loads(p.read_text(encoding="utf-8"))
    return [Principal(t["name"], t["role"]) for t in doc.get("tokens", [])]


# a line that opens a token's table; everything up to the next one belongs to it
_TABLE = re.compile(r"^[ \t]*\[\[[ \t]*tokens[ \t]*\]\][ \t]*(#.*)?$", re.MULTILINE)


def revoke_token(path: str | os.PathLike[str], name: str) -> int:
    """Remove every entry of client ``name`` from the tokens file and return how
    many. The rest of the file (other entries, comments) is kept as written. The
    new file is written beside the old one (created 0600), fsynced, renamed over
    it and the directory fsynced, so a crash leaves the old file or the new one,
    never a mix. NotFound for a name the file does not hold."""
    p = Path(path)
    if not p.exists():
        raise NotFound(f"tokens_file: no file {p}, so no token {name!r}")
    TokenTable.load(p)              # refuse to rewrite a broken file
    text = p.read_text(encoding="utf-8")
    starts = [m.start() for m in _TABLE.finditer(text)]
    head = text[: starts[0]] if starts else text
    blocks = [text[a:b] for a, b in zip(starts, starts[1:] + [len(text)])]
    keep, removed = [], 0
    for block in blocks:
        entries = tomllib.loads(block).get("tokens", [])
        if len(entries) == 1 and entries[0].get("name") == name:
            removed += 1
        else:
            keep.append(block)
    if not removed:
        known = ", ".join(sorted({t.name for t in list_tokens(p)})) or "none"
        raise NotFound(f"name: no token named {name!r} in {p} (names: {known})")
    new_text = head + "".join(keep)
    left = tomllib.loads(new_text).get("tokens", [])
    if any(t.get("name") == name for t in left):   # an entry written some other way: never leave it behind
        raise InvalidArgument(f"tokens_file: {p}: an entry of {name!r} is not a [[tokens]] table of its own; "
                              "edit the file by hand")
    tmp = p.with_name(f".{p.name}.{secrets.token_hex(4)}.tmp")
    fd = open_private_file(tmp, os.O_WRONLY | os.O_EXCL)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(new_text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dfd = os.open(p.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    return removed
