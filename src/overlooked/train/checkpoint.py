"""Checkpoints: one safetensors file holding tensors, with the rest as JSON in its metadata.

Nothing is ever unpickled. A checkpoint file holds the model's tensors under ``model.*``, the optimiser's
tensors under ``optim.*``, RNG states under ``rng.*``, and a JSON document under the metadata key
``overlooked`` with everything that is not a tensor (step, epoch, optimiser hyper-parameters, the config).
Files are written atomically: to a temporary file in the same folder, fsynced, then renamed over the
target, and the folder fsynced after the rename, so a crash or a power loss leaves either the old file or
the new one, never half of one. A human-readable copy of
the JSON is written beside it as ``<name>.json``.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from overlooked.errors import CheckpointError, StorageError


def _read_umask() -> int:
    mask = os.umask(0)  # the only way to read it; done once, at import, before any thread writes files
    os.umask(mask)
    return mask


_UMASK = _read_umask()
FORMAT = "overlooked-checkpoint"
VERSION = 1


_STORAGE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO)


@contextlib.contextmanager
def storage_errors(path: Path | str) -> Iterator[None]:
    """Inside the block, an OSError saying the disk is full or read-only or the file may not be written becomes a
    :class:`StorageError` naming ``path`` (the command line then says it in one line); any other error passes
    as it is."""
    try:
        yield
    except OSError as err:
        if isinstance(err, StorageError) or err.errno not in _STORAGE_ERRNOS:
            raise
        raise StorageError(err.errno, f"could not write {path}: {err.strerror or err}") from err


def write_atomic(path: Path, write: Any) -> None:
    """Write ``path`` whole or not at all: ``write(tmp)`` fills a temporary file in the same folder, which is
    fsynced, given the old file's mode (or the usual one) and renamed over ``path``; the folder is fsynced after.
    A symlink's target is replaced, the link kept. A full or read-only disk is a :class:`StorageError`."""
    path = Path(os.path.realpath(path))  # through a symlink: the file it names is replaced, the link kept
    tmp = None
    try:
        with storage_errors(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            mode = stat.S_IMODE(os.stat(path).st_mode) if path.exists() else 0o666 & ~_UMASK  # an existing file keeps its mode
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            os.close(fd)
            try:
                write(tmp)
            except SafetensorError as err:  # its I/O errors come as its own type, "... Os { code: N, ... }"
                code = re.search(r"\bcode: (\d+)\b", str(err))
                raise OSError(int(code.group(1)) if code else errno.EIO, str(err)) from err
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.chmod(tmp, mode)  # mkstemp makes the file private (0600)
            os.replace(tmp, path)
            _fsync_dir(path.parent)
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def write_text_atomic(path: Path, text: str) -> None:
    """Write a run's small file (summary.json, environment.json, config.yaml, metrics.jsonl when cut) as the
    checkpoints are written: a full disk or a kill leaves the old file whole, never a truncated one."""
    write_atomic(Path(path), lambda tmp: Path(tmp).write_text(text))


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable: after a power loss the folder names the new file, not the old one
    or none (POSIX; Windows has no directory handles to sync, and there the rename alone is what we get)."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer state_dict into tensors and JSON-able data."""
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, Any] = {"param_groups": state["param_groups"], "state": {}}
    for pid, pstate in state["state"].items():
        entry: dict[str, Any] = {}
        for key, val in pstate.items():
            if isinstance(val, torch.Tensor):
                tensors[f"optim.{pid}.{key}"] = val.detach().cpu().contiguous()
                entry[key] = {"tensor": f"optim.{pid}.{key}"}
            else:
                entry[key] = val
        plain["state"][str(pid)] = entry
    return tensors, plain


def _unflatten_optimizer(plain: dict[str, Any], tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for pid, entry in plain["state"].items():
        state[int(pid)] = {
            k: (tensors[v["tensor"]] if isinstance(v, dict) and "tensor" in v else v) for k, v in entry.items()
        }
    return {"state": state, "param_groups": plain["param_groups"]}


def _kind(t: torch.Tensor) -> str:
    """``float``, ``complex``, ``bool`` or ``int``: what a stored tensor must share with the model's."""
    return "float" if t.is_floating_point() else "complex" if t.is_complex() else "bool" if t.dtype == torch.bool else "int"


def _checked_optimizer_state(path: Path, plain: Any, tensors: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The stored optimiser state, refused unless each per-parameter tensor (momentum, Adam's moments) has its
    parameter's shape: torch's ``load_state_dict`` accepts any, and the next step fails inside the optimiser."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    try:
        state = _unflatten_optimizer(plain, tensors)
        wrong = [
            f"optim.{pid}.{key} {list(value.shape)} for a parameter of shape {list(params[pid].shape)}"
            for pid, entry in state["state"].items()
            for key, value in entry.items()
            if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape != params[pid].shape
        ]
        if len(state["param_groups"]) != len(optimizer.param_groups) or any(len(a["params"]) != len(b["params"]) for a, b in zip(state["param_groups"], optimizer.param_groups)):
            wrong.append("its parameter groups differ from this optimiser's")
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"{path}: the optimiser state is damaged ({type(exc).__name__}: {exc}); resume from another checkpoint or start a new run") from None
    if wrong:
        raise CheckpointError(f"{path}: the optimiser state does not fit this model's optimiser: {'; '.join(wrong[:3])}; was it written for another model or config?")
    return state


def save_checkpoint(
    path: str | Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    rng: dict[str, torch.Tensor] | None = None,
    info: dict[str, Any] | None = None,
    ema: torch.nn.Module | None = None,
) -> Path:
    """Write a checkpoint atomically.

    Args:
        path: target ``.safetensors`` file.
        model: its ``state_dict`` is stored under ``model.*``.
        optimizer: its state (tensors and hyper-parameters), or None for weights-only files.
        rng: named RNG state tensors (``torch.get_rng_state()``, generator states).
        info: JSON-able data (step, epoch, metrics, config).
        ema: the trainer's weight average (``train.ema_decay``), stored under ``ema.*`` so a resume continues it.

    Returns:
        The path written.
    """
    path = Path(path)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    doc: dict[str, Any] = {"format": FORMAT, "version": VERSION, "info": info or {}}
    if optimizer is not None:
        opt_tensors, opt_plain = _flatten_optimizer(optimizer.state_dict())
        tensors.update(opt_tensors)
        doc["optimizer"] = opt_plain
    if ema is not None:
        tensors.update({f"ema.{k}": v.detach().cpu().contiguous() for k, v in ema.state_dict().items()})
    for name, state in (rng or {}).items():
        tensors[f"rng.{name}"] = state.detach().cpu().contiguous()
    text = json.dumps(doc, sort_keys=True)
    real = Path(os.path.realpath(path))  # a symlinked checkpoint: its readable sidecar goes beside the file it names
    write_atomic(real, lambda tmp: save_file(tensors, tmp, metadata={"overlooked": text}))
    write_atomic(real.with_suffix(".json"), lambda tmp: Path(tmp).write_text(json.dumps(doc["info"], indent=2, sort_keys=True)))
    return path


def move_checkpoint(src: Path, dst: Path) -> None:
    """Rename a checkpoint and its readable ``.json`` sidecar (where it has one) to ``dst`` (each a rename: a
    kill leaves every file whole; the tensors move first, and the file names the step it holds)."""
    os.replace(src, dst)
    if src.with_suffix(".json").exists():
        os.replace(src.with_suffix(".json"), dst.with_suffix(".json"))
    else:
        dst.with_suffix(".json").unlink(missing_ok=True)


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a checkpoint written by :func:`save_checkpoint`; anything else raises :class:`CheckpointError`.

    Returns:
        ``(tensors, doc)``: every tensor by its stored name, and the JSON document.
    """
    return _read(Path(path), with_tensors=True)


def read_checkpoint_doc(path: str | Path) -> dict[str, Any]:
    """The JSON document of a checkpoint (step, metrics, callbacks' state, ...) without reading its tensors:
    the file's header only, checked as :func:`read_checkpoint` checks it."""
    return _read(Path(path), with_tensors=False)[1]


def _read(path: Path, *, with_tensors: bool) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; pass a run folder or a .safetensors file this library wrote")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
        tensors = load_file(str(path)) if with_tensors else {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(
            f"{path} is not a readable safetensors file ({exc}); overlooked checkpoints are safetensors files "
            "written by `overlooked train` (pickled .pt/.pth files are never loaded)"
        ) from None
    if "overlooked" not in meta:
        raise CheckpointError(f"{path} is a safetensors file but not an overlooked checkpoint (no 'overlooked' metadata)")
    try:
        doc = json.loads(meta["overlooked"])
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: checkpoint metadata is not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise CheckpointError(f"{path} is a safetensors file but its 'overlooked' metadata is not an {FORMAT!r} document")
    if doc.get("version") != VERSION:
        newer = isinstance(doc.get("version"), int) and doc["version"] > VERSION
        raise CheckpointError(
            f"{path}: checkpoint format v{doc.get('version')} is not v{VERSION}, the one this overlooked reads: it was written by "
            f"{'a newer' if newer else 'another'} version; load it with the version that wrote it (the run's environment.json names its git commit)"
        )
    if not isinstance(doc.get("info", {}), dict):
        raise CheckpointError(f"{path}: the checkpoint's info is not a mapping; the file is damaged")
    return tensors, doc


def _check_fits(path: Path | str, own: dict[str, torch.Tensor], given: dict[str, torch.Tensor], what: str) -> None:
    """Refuse ``given`` tensors that are not a state dict of ``own``'s keys, shapes and kinds of dtype."""
    missing, extra = sorted(set(own) - set(given)), sorted(set(given) - set(own))
    bad = [k for k in own if k in given and own[k].shape != given[k].shape]
    # float32 <-> float64 is a cast load_state_dict makes; integers where the model holds floats (or the other
    # way round) are another file's tensors
    kinds = [f"{k} ({given[k].dtype}, the model's {own[k].dtype})" for k in own if k in given and k not in bad and _kind(own[k]) != _kind(given[k])]
    if missing or extra or bad or kinds:
        raise CheckpointError(
            f"{path} does not fit {what}: missing {missing[:5]}, unexpected {extra[:5]}, "
            f"shape mismatch {bad[:5]}{f', dtype mismatch {kinds[:5]}' if kinds else ''}; was it written for another model or config?"
        )


def load_checkpoint(
    path: str | Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    ema: torch.nn.Module | None = None,
    weights_from: str = "model",
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Load weights (and optimiser state, and the weight average) into ``model``/``optimizer``/``ema``;
    return ``(rng_states, info)``. ``weights_from="ema.module"`` loads the stored weight average into
    ``model`` instead of the raw weights.

    Raises :class:`CheckpointError` when the tensors do not match the model (a checkpoint from elsewhere).
    """
    tensors, doc = read_checkpoint(path)
    prefix = weights_from + "."
    weights = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    if not weights and weights_from != "model":
        raise CheckpointError(f"{path} holds no {weights_from}.* weights; it was written without train.ema_decay")
    _check_fits(path, model.state_dict(), weights, "this model")
    model.load_state_dict(weights)
    if optimizer is not None:
        if "optimizer" not in doc:
            raise CheckpointError(f"{path} holds no optimiser state; it cannot resume training (use it to evaluate)")
        optimizer.load_state_dict(_checked_optimizer_state(path, doc["optimizer"], tensors, optimizer))
    if ema is not None:
        averaged = {k[len("ema."):]: v for k, v in tensors.items() if k.startswith("ema.")}
        if not averaged:
            raise CheckpointError(f"{path} holds no weight average; it was written without train.ema_decay, so resume without it")
        _check_fits(path, ema.state_dict(), averaged, "this run's weight average (ema.*)")
        ema.load_state_dict(averaged)
    rng = {k[len("rng."):]: v for k, v in tensors.items() if k.startswith("rng.")}
    return rng, doc.get("info", {})
