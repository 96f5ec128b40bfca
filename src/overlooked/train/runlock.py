"""One training process per run folder: a process that trains or resumes a run holds an advisory lock on its
folder (``flock`` on the folder itself, so nothing is written into it) from the moment it takes the folder until
the run's summary is written; a ``--repeats`` or ``--each`` folder is held by its process through the aggregate,
and each seed's or value's folder before anything in it is read or moved. A second process that would write
into a held folder is refused by name (:class:`RunBusyError`) before it touches that folder. The lock goes when
the process ends, however it ends (a kill included). Under DDP the main rank (``RANK`` 0) holds it. Where
``fcntl`` is missing (Windows) or the filesystem refuses ``flock`` on a folder (some network filesystems), no
lock is taken, with one warning."""

from __future__ import annotations

import contextlib
import os
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

from overlooked.errors import OverlookedError

try:
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX
    fcntl = None  # type: ignore[assignment]

_HELD: set[str] = set()  # folders this process holds (a resume locks the folder, then its run again inside it)
_WARNED: set[str] = set()
WAIT_S = 1.0  # how long a start waits for a lock held only for a moment (`overlooked show` probing it)


class RunBusyError(OverlookedError):
    """The run folder is being trained by another process."""


def _key(run_dir: Path) -> str:
    return os.path.realpath(run_dir)


def _main_rank() -> bool:
    rank = os.environ.get("RANK", "").strip()
    return not rank.isdigit() or int(rank) == 0


def _unlockable(run_dir: Path, exc: OSError) -> None:
    if str(run_dir) not in _WARNED:
        _WARNED.add(str(run_dir))
        warnings.warn(f"{run_dir}: the run folder cannot be locked here ({exc.strerror or exc}), so a second process resuming it would not be refused", RuntimeWarning, stacklevel=4)


@contextlib.contextmanager
def training_lock(run_dir: str | Path | None) -> Iterator[None]:
    """Hold ``run_dir``'s training lock for the block (re-entered freely by the process that holds it);
    :class:`RunBusyError` when another process holds it. Nothing is locked for ``None``, a folder that does not
    exist yet, a DDP rank other than 0, without ``fcntl`` or where the filesystem refuses it (warned once)."""
    if run_dir is None or fcntl is None or not _main_rank() or not Path(run_dir).is_dir() or _key(Path(run_dir)) in _HELD:
        yield
        return
    key = _key(Path(run_dir))
    fd = os.open(key, os.O_RDONLY)
    try:
        deadline = time.monotonic() + WAIT_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                locked = True
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise RunBusyError(
                        f"{run_dir} is being trained by another process now (it holds the folder's lock); wait for it to end, "
                        f"or stop it, before training or resuming this folder (`overlooked show {run_dir}` shows how far it has come)"
                    ) from None
                time.sleep(0.02)
            except OSError as exc:  # e.g. NFS (EBADF on a folder), some FUSE mounts (ENOLCK, EOPNOTSUPP)
                _unlockable(Path(run_dir), exc)
                locked = False
                break
        if locked:
            _HELD.add(key)
        try:
            yield
        finally:
            if locked:
                _HELD.discard(key)
                fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def is_training(run_dir: str | Path) -> bool | None:
    """Whether a process holds ``run_dir``'s training lock now (True), not (False), or unknown (None: without
    ``fcntl``, a folder that cannot be opened, or a filesystem that refuses the probe). The probe takes a
    shared lock for a moment, which never refuses another probe; a start meeting it waits (:data:`WAIT_S`)."""
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
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return None
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)
