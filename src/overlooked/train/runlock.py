"""One training process per run folder: a process that trains or resumes a run holds an advisory lock on its
folder (``flock`` on the folder itself, so nothing is written into it), and a second process that would
write into the same folder is refused by name before it touches anything. The lock goes when the process
ends, however it ends (a kill included). Under DDP the main rank (``RANK`` 0) holds it. Where ``fcntl`` is
missing (Windows) no lock is taken."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from overlooked.errors import OverlookedError

try:
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX
    fcntl = None  # type: ignore[assignment]

_HELD: set[str] = set()  # folders this process holds (a resume locks the folder, then fit inside it again)


class RunBusyError(OverlookedError):
    """The run folder is being trained by another process."""


def _key(run_dir: Path) -> str:
    return os.path.realpath(run_dir)


@contextlib.contextmanager
def training_lock(run_dir: str | Path | None) -> Iterator[None]:
    """Hold ``run_dir``'s training lock for the block (re-entered freely by the process that holds it);
    :class:`RunBusyError` when another process holds it. Nothing is locked for ``None``, a folder that does not
    exist yet, a DDP rank other than 0, or without ``fcntl``."""
    if run_dir is None or fcntl is None or int(os.environ.get("RANK", "0")) != 0 or not Path(run_dir).is_dir() or _key(Path(run_dir)) in _HELD:
        yield
        return
    key = _key(Path(run_dir))
    fd = os.open(key, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunBusyError(
                f"{run_dir} is being trained by another process now (it holds the folder's lock); wait for it to end, or stop "
                f"it, before training or resuming this folder (`overlooked show {run_dir}` shows how far it has come)"
            ) from None
        _HELD.add(key)
        try:
            yield
        finally:
            _HELD.discard(key)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def is_training(run_dir: str | Path) -> bool | None:
    """Whether another process holds ``run_dir``'s training lock now (True), not (False), or unknown (None:
    without ``fcntl``, or the folder cannot be opened). This process's own lock counts as training."""
    if fcntl is None:
        return None
    key = _key(Path(run_dir))
    if key in _HELD:
        return True
    try:
        fd = os.open(key, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)
