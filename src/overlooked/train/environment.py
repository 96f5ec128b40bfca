"""What a run ran on: versions, device, git commit, command line."""

from __future__ import annotations

import datetime as _dt
import functools
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

import overlooked


def git_commit(cwd: str | Path | None = None) -> str:
    """The current git commit (with ``-dirty`` when the tree has changes), or ``unknown``."""
    cwd = cwd or Path(overlooked.__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd, capture_output=True, text=True, timeout=5).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@functools.cache
def process_commit() -> str:
    """:func:`git_commit` as it was when this process first asked, i.e. when its first run began: the code
    it imported then is the code it runs, so a long ``--each`` or ``--repeats`` run records that commit in
    every sub-run even when the tree moves on meanwhile."""
    return git_commit()


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def environment(device: str = "cpu", threads: int | None = None) -> dict[str, Any]:
    """A JSON-able record of the software and hardware a run used; ``threads``: the intra-op threads the run
    will set (``train.num_threads``), when it sets them after this record is written."""
    env: dict[str, Any] = {
        "overlooked": overlooked.__version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": threads or torch.get_num_threads(),
        "device": device,
        "git_commit": process_commit(),
        "argv": sys.argv,
        "overlooked_data_env": os.environ.get("OVERLOOKED_DATA"),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name()
    return env
