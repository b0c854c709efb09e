"""Where ``scangate issue --out`` writes its codes.

Issued codes are printed on packaging: a codes file replaced by mistake loses codes
that may already be on bottles, and a file that looks complete but is not gets
printed short. So:

- a new path: the codes go to ``PATH.part`` (created exclusively, so two runs never
  share it), are fsynced, and appear at PATH in one step only when complete, and
  only if nothing appeared at PATH meanwhile (a hard link, which fails if PATH
  exists, where ``os.replace`` would overwrite it);
- an existing regular file: refused unless ``force``; then replaced atomically;
- a FIFO or a character device (a printer's pipe, a terminal), or ``-`` (stdout):
  written as a stream, never replaced by a regular file;
- a symbolic link: followed; the rules apply to what it points to, and the link
  stays a link;
- anything else (a directory, a socket, a block device): refused.

Every refusal happens before the caller reserves serials (see ``open_codes_output``).
"""

from __future__ import annotations

import errno
import os
import stat
import sys
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    import numpy as np

from .errors import InvalidArgument

__all__ = ["CodesOutput", "open_codes_output"]

PART_SUFFIX = ".part"


class CodesOutput:
    """An open output: ``write`` chunks, then ``commit`` (complete) or ``abort``."""

    def __init__(self, stream: BinaryIO, *, target: Path | None, part: Path | None, replace: bool,
                 close: bool):
        self.stream = stream
        self.target = target      # where a completed .part goes; None for streams
        self.part = part
        self._replace = replace
        self._close = close

    @property
    def is_stream(self) -> bool:
        return self.part is None

    def write(self, data: bytes | memoryview | np.ndarray) -> None:
        # numpy's stubs give ndarray the buffer protocol (__buffer__) only for Python >= 3.12
        self.stream.write(data)  # type: ignore[arg-type]

    def commit(self) -> None:
        """Make the output complete: flush (and for files: fsync, then move the
        .part into place and fsync its directory, so a crash never shows a
        partial file under the final name)."""
        self.stream.flush()
        if self.part is None:
            if self._close:
                self.stream.close()
            return
        assert self.target is not None
        os.fsync(self.stream.fileno())
        self.stream.close()
        if self._replace:
            os.replace(self.part, self.target)
        else:
            _move_no_replace(self.part, self.target)
        _fsync_dir(self.target.parent)

    def abort(self) -> None:
        """Give up: close, and remove the .part (its codes were never complete)."""
        try:
            if self._close and not self.stream.closed:
                self.stream.close()
        finally:
            if self.part is not None:
                try:
                    self.part.unlink()
                except FileNotFoundError:
                    pass


def open_codes_output(out: str, *, force: bool = False) -> CodesOutput:
    """Open ``out`` for a run of ``scangate issue``; raise InvalidArgument, naming
    the path and the way out, for an output it must not write to."""
    if out == "-":
        return CodesOutput(sys.stdout.buffer, target=None, part=None, replace=False, close=False)
    given = Path(out)
    # Follow links (all of them, and relative ones from their own directory): the
    # rules apply to what the link names, and the link itself is never replaced.
    target = Path(os.path.realpath(given))
    try:
        st = os.stat(target)
    except FileNotFoundError:
        st = None
    shown = f"{given}" if target == given.absolute() else f"{given} (-> {target})"
    if st is not None:
        if stat.S_ISFIFO(st.st_mode) or stat.S_ISCHR(st.st_mode):
            # O_WRONLY on a FIFO waits for a reader: the printer's side of the pipe.
            return CodesOutput(open(target, "wb"), target=None, part=None, replace=False, close=True)
        if stat.S_ISDIR(st.st_mode):
            raise InvalidArgument(f"--out {shown}: is a directory")
        if not stat.S_ISREG(st.st_mode):
            raise InvalidArgument(f"--out {shown}: not a regular file, FIFO or character device")
        if not force:
            raise InvalidArgument(
                f"--out {shown}: exists; issued codes are never overwritten by accident "
                f"(pass --force to replace it, or choose another file)")
    if not target.parent.is_dir():
        raise InvalidArgument(f"--out {shown}: directory {target.parent} does not exist")
    part = target.with_name(target.name + PART_SUFFIX)
    if force:
        # --force also clears a .part a killed run left behind
        try:
            part.unlink()
        except FileNotFoundError:
            pass
    try:
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
    except FileExistsError:
        raise InvalidArgument(
            f"--out {shown}: {part} exists: another `scangate issue` is writing it, or one was "
            f"killed (its codes are genuine but incomplete); move it away, or pass --force") from None
    return CodesOutput(os.fdopen(fd, "wb"), target=target, part=part, replace=force, close=True)


def _move_no_replace(src: Path, dst: Path) -> None:
    """Rename src to dst unless dst exists (then InvalidArgument, src kept)."""
    try:
        os.link(src, dst)
    except FileExistsError:
        raise InvalidArgument(f"--out {dst}: appeared while the codes were written; they are in {src}") from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise
        # a file system without hard links: check, then rename (a narrow race left)
        if dst.exists():
            raise InvalidArgument(f"--out {dst}: appeared while the codes were written; they are in {src}") \
                from None
        os.replace(src, dst)
        return
    src.unlink()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
