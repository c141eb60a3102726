"""Safe writes of shared records: one exclusive advisory lock per record file or folder (campaign folder,
confirmations file, tuning study), and atomic replacement of a record file.

Why: every writer here reads the records, works for minutes or hours, then writes. Two writers at once would run the
same work twice or drop each other's results without a word. ``flock`` locks are released by the OS when the holder
dies, so a killed run never leaves a stale lock behind. Where ``fcntl`` is missing (Windows) no lock is taken.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["LockBusyError", "atomic_write_text", "exclusive_lock"]


class LockBusyError(RuntimeError):
    """Another process holds the lock (raised only for a non-blocking lock)."""


@contextmanager
def exclusive_lock(
    path: str | Path, *, blocking: bool, busy: str = "", error: type[LockBusyError] = LockBusyError
) -> Iterator[None]:
    """Hold an exclusive lock on the file ``path`` (created if needed; the holder's pid is written into it).

    ``blocking=False`` raises ``error`` (message ``busy`` plus the holder's pid) when the lock is taken;
    ``blocking=True`` waits for it, for short critical sections such as a read-merge-write of a records file.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as handle:
        flags = fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB
        try:
            fcntl.flock(handle.fileno(), flags)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "unknown"
            raise error(f"{busy or f'{path} is locked'} (held by pid {owner}, lock file {path})") from None
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(f"{os.getpid()}\n")
            handle.flush()
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def atomic_write_text(path: str | Path, text: str, newline: str | None = None) -> None:
    """Replace ``path`` with ``text`` through a private temporary file in the same folder (fsynced, then
    ``os.replace``): a reader, or a crash mid-write, never sees half a file, and concurrent writers never share a
    temporary file. The file keeps its permissions (a new one gets the umask's), not the temporary file's 0600.
    ``newline`` as in :func:`open` (``""``: write line endings as they are in ``text``)."""
    path = Path(path)
    mode = _file_mode(path)
    with tempfile.NamedTemporaryFile(
        "w", encoding="utf-8", newline=newline, dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
    ) as tmp:
        try:
            tmp.write(text)
            tmp.flush()
            os.fsync(tmp.fileno())
        except BaseException:
            tmp.close()
            os.unlink(tmp.name)
            raise
    try:
        os.chmod(tmp.name, mode)
    except OSError:
        pass  # a filesystem without permissions (some network or FAT mounts): the file is still written
    os.replace(tmp.name, path)


def _file_mode(path: Path) -> int:
    """The permission bits of ``path``, or those ``open()`` would give a new file under the current umask."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask
