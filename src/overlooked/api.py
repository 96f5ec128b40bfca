"""What the CLI and the tests call: train, evaluate, list, data, bench, demo, report, export_nir.

Each function takes typed arguments and returns plain data; the CLI only parses arguments and prints.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import datetime as _dt
import functools
import hashlib
import inspect
import json
import math
import re
import statistics
import warnings
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from overlooked import catalog
from overlooked.checks import is_count, repeated
from overlooked.config import (
    Component,
    ConfigWarning,
    ExperimentConfig,
    apply_overrides,
    check_component_kwargs,
    dump_yaml,
    load_config,
    load_yaml,
    parse_override,
)
from overlooked.data.babi import BABI_INPUT_KEYS
from overlooked.data.base import Splits
from overlooked.errors import CheckpointError, ConfigError, DataError, InputError, OverlookedError, UnreadableDataError
from overlooked.registry import ALL, AUGMENTATIONS, CALLBACKS, DATASETS, ENCODERS, MODELS, OBJECTIVES, keyword_names, takes_var_kwargs
from overlooked.stats import accuracy_interval, error_percent
from overlooked.train.callbacks import Callback
from overlooked.train.checkpoint import load_checkpoint, write_atomic, write_text_atomic
from overlooked.train.distributed import init_distributed, rank_device
from overlooked.train.environment import environment
from overlooked.train.runlock import training_lock
from overlooked.train.trainer import (
    RESUME_MAY_CHANGE,
    changed_settings,
    check_resumed_config,
    cublas_for_determinism,
    fit,
    process_settings,
)


def registries() -> dict[str, list[str]]:
    """Every registry's names (after importing all registering modules)."""
    catalog.load_all()
    return {kind: reg.names() for kind, reg in ALL.items()}


def check_config(cfg: ExperimentConfig) -> None:
    """Check every setting, and every component's name and keyword arguments, before any work starts.

    A config changed in Python after :func:`load` (``cfg.train.optimizer = "adamm"``) is checked again here as
    a loaded one is, its values converted in place as from YAML; its ConfigWarnings are not repeated."""
    catalog.load_all()
    if not isinstance(cfg.name, str) or not cfg.name or cfg.name.startswith(".") or any(c in cfg.name for c in "/\\\0"):
        raise ConfigError(f"name {cfg.name!r} names the run folder, so it must be a plain file name (no '/', '\\' or leading '.'), e.g. my_run")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConfigWarning)
        checked = ExperimentConfig.from_dict(cfg.to_dict())
    _update_in_place(cfg, checked)
    parse_device(cfg.train.device)
    for section, registry, kind in (("data", DATASETS, "dataset"), ("model", MODELS, "model"), ("objective", OBJECTIVES, "objective")):
        if not getattr(cfg, section).name:
            raise ConfigError(
                f"the config names no {kind}: set {section}.name, e.g. `{section}: NAME` or `{section}: {{name: NAME, kwargs: {{...}}}}` "
                f"in the YAML, or the override {section}.name=NAME (known: {', '.join(registry.names())})"
            )
    check_component_kwargs(DATASETS, cfg.data, "data")
    check_component_kwargs(MODELS, cfg.model, "model")
    check_component_kwargs(OBJECTIVES, cfg.objective, "objective")
    for section, registry in (("encoder", ENCODERS), ("augment", AUGMENTATIONS)):
        part = getattr(cfg, section)
        if part is not None and part.name:
            check_component_kwargs(registry, part, section)
        elif part is not None and part.kwargs:  # e.g. the override encoder.steps=4 on a config without an encoder
            settings = ", ".join(f"{section}.{k}" for k in part.kwargs)
            raise ConfigError(
                f"{settings} set, but this config names no {section}, so nothing would use it: name one with "
                f"{section}.name=... (known: {', '.join(registry.names())}), or drop the setting ({section}=null removes the "
                f"{section} with every setting of it)"
            )
    for i, cb in enumerate(cfg.callbacks):
        check_component_kwargs(CALLBACKS, cb, f"callbacks[{i}]")
    if cfg.objective.kwargs.get("margin") is not None and any(cb.name == "spread_margin" for cb in cfg.callbacks):
        raise ConfigError(
            f"objective.kwargs.margin={cfg.objective.kwargs['margin']} fixes the spread loss margin, so the spread_margin "
            "callback's schedule would have no effect: drop the margin (the schedule sets it) or the callback"
        )
    if cfg.train.repeats > 1 and not cfg.train.report_train:
        raise ConfigError(
            f"train.repeats={cfg.train.repeats} reports the best run by training error (the MemN2N paper's rule), "
            "which needs the training split scored: set train.report_train=true, or train.repeats=1"
        )


def _update_in_place(dst: Any, src: Any) -> None:
    """Copy the checked values of ``src`` into ``dst``'s own objects (its TrainConfig, Components, kwargs dicts
    and lists stay the objects a caller may hold: ``tc = cfg.train; tc.lr = 0.5`` still reaches ``cfg``)."""
    for f in dataclasses.fields(dst):
        old, new = getattr(dst, f.name), getattr(src, f.name)
        if dataclasses.is_dataclass(old) and type(old) is type(new):
            _update_in_place(old, new)
        elif isinstance(old, dict) and isinstance(new, dict):
            old.clear()
            old.update(new)
        elif isinstance(old, list) and isinstance(new, list) and len(old) == len(new) and all(dataclasses.is_dataclass(o) and type(o) is type(n) for o, n in zip(old, new)):
            for o, n in zip(old, new):
                _update_in_place(o, n)
        else:
            setattr(dst, f.name, new)


# The dataset facts that model builders take by name (from Splits.meta; image_shape gives the last three).
_MODEL_FACTS = ("num_classes", "vocab_size", "memory_size", "sentence_len", "input_shape", "in_channels", "image_size")


def _meta_kwargs(registry: Any, comp: Component, meta: dict[str, Any]) -> dict[str, Any]:
    """Fill builder arguments the config leaves out from dataset facts of the same name."""
    facts = dict(meta)
    if "image_shape" in facts:
        shape = tuple(facts["image_shape"])
        facts.setdefault("input_shape", shape)
        facts.setdefault("in_channels", shape[0])
        facts.setdefault("image_size", shape[-1])
    params = registry.parameters(comp.name)  # its signature, read once
    allowed = keyword_names(params)
    if takes_var_kwargs(params):  # a builder taking **kwargs: fill only the arguments it names, and say what it was not given
        left = sorted(k for k in facts if k not in allowed and k not in comp.kwargs and k in _MODEL_FACTS)
        if left:
            warnings.warn(
                f"{registry.kind} {comp.name!r} takes **kwargs, so the dataset's {', '.join(f'{k}={facts[k]!r}' for k in left)} "
                f"were not passed to it (they go only to arguments a builder names): name them as arguments of the builder, "
                f"or set {', '.join(f'model.kwargs.{k}' for k in left)}",
                ConfigWarning,
                stacklevel=2,
            )
    defaults = {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}
    unset = {k: defaults[k] for k in allowed if k in _MODEL_FACTS and k in defaults and k not in facts and k not in comp.kwargs}
    if unset:  # e.g. a 3-class dataset without num_classes in its meta would train a 10-way model
        listed = ", ".join(f"{k}={v!r}" for k, v in unset.items())
        warnings.warn(
            f"model {comp.name!r} takes {', '.join(unset)}, which the dataset's meta does not give and the config does not set, so "
            f"the builder's default ({listed}) is used. Fix: put {', '.join(unset)} in the dataset's Splits.meta, or set "
            f"{', '.join(f'model.kwargs.{k}' for k in unset)}",
            ConfigWarning,
            stacklevel=3,
        )
    return {k: facts[k] for k in allowed if k in facts and k not in comp.kwargs}


def build_data(cfg: ExperimentConfig, data_dir: str | None = None, *, pinned: dict[str, Any] | None = None) -> Splits:
    """The dataset splits the config names. ``pinned``: dataset arguments a trained model fixes (its
    vocabulary, sizes; see :func:`load_run`), passed beside ``cfg.data.kwargs`` without entering the config."""
    kwargs = {**cfg.data.kwargs, **(pinned or {})}
    allowed = DATASETS.accepted_kwargs(cfg.data.name) or []
    if "data_dir" in allowed:
        kwargs.setdefault("data_dir", data_dir or cfg.data_dir)
    splits = DATASETS.create(cfg.data.name, **kwargs)
    wanted = model_input_keys(cfg)
    if wanted:  # a model may read more of the batch than the dataset's default inputs (e.g. MemNN's supporting facts)
        provided = splits.train.tensors if hasattr(splits.train, "tensors") else first_examples(splits.train, 1)  # generated datasets: one example's keys
        missing = [k for k in wanted if k not in provided]
        if missing:
            raise ConfigError(f"model {cfg.model.name!r} reads batch keys {missing} that dataset {cfg.data.name!r} does not provide")
        splits = replace(splits, input_keys=tuple(wanted))
        dropped = splits.meta.get("supporting_dropped") or 0
        if "supporting" in wanted and dropped:
            warnings.warn(
                f"{dropped} training question(s) have a supporting fact older than the memory's last "
                f"{splits.meta.get('memory_size')} statements: it is dropped from their supporting slots, so model "
                f"{cfg.model.name!r} is not trained to retrieve it. Fix: a larger data.kwargs.memory_size",
                ConfigWarning,
                stacklevel=2,
            )
    return splits


def model_input_keys(cfg: ExperimentConfig) -> tuple[str, ...] | None:
    """The batch keys the config's model reads when it names them (its ``input_keys`` tag, e.g. MemNN's
    supporting facts); None: the dataset's default inputs."""
    wanted = MODELS.tags(cfg.model.name).get("input_keys") if cfg.model.name in MODELS else None
    return tuple(wanted) if wanted else None


def first_examples(dataset: Any, n: int) -> dict[str, torch.Tensor]:
    """The batch of ``dataset``'s first ``n`` examples (fewer when it is smaller): what a probe of its keys reads."""
    return dataset[torch.arange(min(n, len(dataset)))]


def build_model(cfg: ExperimentConfig, meta: dict[str, Any]) -> nn.Module:
    """The model the config names, with dataset facts (num_classes, vocab_size...) filled in."""
    return MODELS.create(cfg.model.name, **{**_meta_kwargs(MODELS, cfg.model, meta), **cfg.model.kwargs})


def build_objective(cfg: ExperimentConfig, splits: Splits) -> nn.Module:
    """The objective, told which batch key holds the target (``target_key``) and, for one that reads the input
    too (``image_key``: CapsNet's reconstruction), which holds the model's input."""
    kwargs = dict(cfg.objective.kwargs)
    accepted = OBJECTIVES.accepted_kwargs(cfg.objective.name) or []
    if "target_key" in accepted:
        kwargs.setdefault("target_key", splits.target_key)
    if "image_key" in accepted and len(splits.input_keys) == 1:
        kwargs.setdefault("image_key", splits.input_keys[0])
    return OBJECTIVES.create(cfg.objective.name, **kwargs)


def build_encoder(cfg: ExperimentConfig) -> Any:
    """The encoder the config names, or None."""
    return ENCODERS.create(cfg.encoder.name, **cfg.encoder.kwargs) if cfg.encoder and cfg.encoder.name else None


def build_callbacks(cfg: ExperimentConfig) -> list[Callback]:
    """The config's callbacks, in order (a setting their builders refuse is a :class:`ConfigError`)."""
    with _building("callbacks", ", ".join(c.name for c in cfg.callbacks)):
        return [CALLBACKS.create(c.name, **c.kwargs) for c in cfg.callbacks]


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _cpu_attention_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """FLOPs of PyTorch's CPU attention kernel, for which FlopCounterMode has no formula: the two batched
    products ``Q K^T`` and ``A V``, counted as for the GPU kernels (masked positions included)."""
    from torch.utils.flop_counter import sdpa_flop_count

    return sdpa_flop_count(query_shape, key_shape, value_shape)


def flop_counter() -> Any:
    """A :class:`torch.utils.flop_counter.FlopCounterMode` that also counts the CPU attention kernel
    (``aten._scaled_dot_product_flash_attention_for_cpu``, the op ``scaled_dot_product_attention`` runs on CPU).

    >>> q = torch.zeros(1, 4, 51, 16)
    >>> with flop_counter() as counter:
    ...     _ = torch.nn.functional.scaled_dot_product_attention(q, q, q)
    >>> counter.get_total_flops() == 2 * (2 * 4 * 51 * 51 * 16)
    True
    """
    from torch.utils.flop_counter import FlopCounterMode

    cpu_attention = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    return FlopCounterMode(display=False, custom_mapping={cpu_attention: _cpu_attention_flops} if cpu_attention is not None else None)


def flops_per_example(model: nn.Module, splits: Splits, encoder: Any = None) -> int | None:
    """Forward FLOPs for one validation example, counted by :func:`flop_counter` (matrix products,
    convolutions and attention), on the model's direct path (an FFT convolution counts as the convolution). A model that does some of its products as element-wise operations,
    which the counter does not see, adds them through a method ``uncounted_flops(*inputs) -> int`` (MemN2N's
    packed hops)."""
    batch = splits.val[torch.arange(1)]
    if encoder is not None:
        batch = encoder(batch, torch.Generator().manual_seed(0))
    was = model.training
    model.eval()
    # A convolution computed in the frequency domain (CapsNet's PrimaryCaps with fft=True, the CPU fast path)
    # is counted as the direct convolution it equals: the count describes the model, not the code path (the
    # counter charges the FFTs about 12x the direct conv's FLOPs).
    fft_modules = [m for m in model.modules() if getattr(m, "fft", None) is True]
    for m in fft_modules:
        m.fft = False
    try:
        counter = flop_counter()
        inputs = [batch[k].to(next(model.parameters()).device) for k in splits.input_keys]
        with counter, torch.no_grad():
            model(*inputs)
        extra = model.uncounted_flops(*inputs) if hasattr(model, "uncounted_flops") else 0
        return int(counter.get_total_flops()) + int(extra)
    except Exception:  # a model with ops the counter does not know: report unknown, never a guess
        return None
    finally:
        for m in fft_modules:
            m.fft = True
        model.train(was)


def data_fingerprint(splits: Splits) -> str:
    """Hash identifying the train/validation split: same fingerprint, same data (fair-comparison rule)."""
    h = hashlib.sha256()
    h.update(json.dumps({"n_train": len(splits.train), "n_val": len(splits.val), "n_test": len(splits.test)}).encode())
    return _hash_datasets(h, splits.val, splits.train)


def test_fingerprint(splits: Splits) -> str:
    """Hash of the test split the final report scores: rows of one comparison are scored on the same test
    examples, not only on as many (the fair-comparison rule; recorded since 2026-12-06)."""
    return _hash_datasets(hashlib.sha256(), splits.test)


test_fingerprint.__test__ = False  # a function of the library, not a test: `pytest src/overlooked/api.py` skips it


def _hash_datasets(h: Any, *datasets: Any) -> str:
    """``h`` fed every tensor of ``datasets`` by key (a generated dataset: what generates it), as 16 hex digits."""
    for ds in datasets:
        tensors = ds.source_tensors() if hasattr(ds, "source_tensors") else ds.tensors
        for key in sorted(tensors):
            h.update(key.encode())
            h.update(tensors[key].contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def claim_run_dir(out: str | Path, name: str) -> tuple[Path, list[Path]]:
    """A fresh folder ``out/name-YYYYmmdd-HHMMSS[-k]``, made now, and the folders this call made (deepest
    first, for :func:`_remove_empty`). The name is claimed by a ``mkdir`` that fails if the folder exists, so
    two runs started in the same second (a job array, two shells) get two folders, never one shared."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(out) / f"{name}-{stamp}"
    made = _make_dirs(Path(out))
    k = 0
    while True:
        path = base if k == 0 else Path(f"{base}-{k}")
        try:
            path.mkdir()
        except FileExistsError:
            k += 1
            continue
        except OSError as exc:
            _remove_empty(made)
            raise OverlookedError(f"cannot make the folder {path} ({exc.strerror}); give --out (out) a folder you can write to") from None
        return path, [path, *made]


def new_run_dir(out: str | Path, name: str) -> Path:
    """A fresh folder ``out/name-YYYYmmdd-HHMMSS[-k]``, made now (see :func:`claim_run_dir`)."""
    return claim_run_dir(out, name)[0]


def read_run_file(path: Path, holds: Callable[[Any], bool] | None = None, what: str = "", fix: str = "restore it from a copy of the run folder") -> Any:
    """A run folder's JSON or YAML file (by its suffix), or an :class:`OverlookedError` naming a damaged one
    (cut short, edited, not text) and ``fix`` instead of a parser's traceback. ``holds``, when given, checks
    what it parsed to (``what`` says what it should be), so an edited file that still parses is named too."""
    try:
        text = path.read_text()
        data = load_yaml(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
    except (UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if isinstance(exc, yaml.MarkedYAMLError) and exc.problem:  # the problem, not the context's first line
            first = exc.problem + (f" (line {exc.problem_mark.line + 1})" if exc.problem_mark else "")
        raise OverlookedError(f"{path} is damaged ({type(exc).__name__}: {first}); {fix}") from None
    if holds is not None and not holds(data):
        shown = json.dumps(data)[:80]
        raise OverlookedError(f"{path} is damaged: it should hold {what}, but holds {shown}; {fix}")
    return data


def write_config(path: Path, cfg: ExperimentConfig) -> None:
    """``path/config.yaml``: the resolved config, as :func:`run_config` reads it back."""
    write_text_atomic(path / "config.yaml", dump_yaml(cfg.to_dict()))


def _finite(value: Any) -> Any:
    """``value`` with every non-finite float (a callback's initial ``best = inf``) as None, for strict JSON.

    >>> _finite({"best": float("inf"), "steps": [1, float("nan")]})
    {'best': None, 'steps': [1, None]}
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _set_aside(path: Path, name: str) -> Path:
    """Move ``path`` beside itself as ``name`` (``name+``, ``name++``, ... when taken), so nothing is overwritten;
    return where it went."""
    aside = path.with_name(name)
    while aside.exists():
        aside = aside.with_name(aside.name + "+")
    path.replace(aside)
    return aside


def _write_json(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")  # never half written (a full disk)


def write_run_files(path: Path, cfg: ExperimentConfig, summary: dict[str, Any], **env_extra: Any) -> None:
    """The small files of a finished run folder that holds others (``--repeats``, ``--each``, or one gathered
    by a script): config.yaml, environment.json (this machine, plus ``env_extra``, e.g. ``argv``) and
    summary.json."""
    path.mkdir(parents=True, exist_ok=True)
    write_config(path, cfg)
    _write_json(path / "environment.json", {**environment(cfg.train.device, cfg.train.num_threads), **env_extra})
    _write_json(path / "summary.json", summary)


@contextlib.contextmanager
def _building(section: str, name: str | None) -> Iterator[None]:
    """Turn a builder's ValueError / TypeError / RuntimeError (a setting its own checks refuse, e.g.
    ``hops=0``) into a :class:`ConfigError` that names the config section; the original stays chained."""
    try:
        yield
    except OverlookedError:
        raise
    except (ValueError, TypeError, RuntimeError) as exc:  # the type is kept in the message: a bug reads as one
        raise ConfigError(f"{section} {name!r} could not be built from its settings: {type(exc).__name__}: {exc} (fix the {section}.* settings)") from exc


RUN_FILES = ("config.yaml", "metrics.jsonl", "summary.json", "checkpoints")


def check_fresh_run_dir(path: Path) -> None:
    """Refuse a ``run_dir`` that already holds a run: a second run there would append its records to the
    first one's metrics.jsonl and overwrite its checkpoints and summary."""
    found = [name for name in RUN_FILES if (path / name).exists()]
    if found:
        raise ConfigError(
            f"{path} already holds a run ({', '.join(found)}); training there would mix two runs' records. Continue it "
            "with `overlooked train --resume` (api.resume), or give a new folder (or none: a fresh one is made under out)"
        )


@contextlib.contextmanager
def own_rng(device: str) -> Iterator[None]:
    """Run a training run on torch's global generators and put the caller's states back afterwards (the run
    seeds them itself): the CPU generator and, for a CUDA run, its GPU's (``cuda:N``, else the current one,
    which DDP sets per rank; other GPUs are left untouched, so no rank opens a context on them). Callers pass the
    rank's device (:func:`~overlooked.train.distributed.rank_device`): under torchrun its own GPU."""
    kind, _, index = str(device).partition(":")
    devices = [] if kind != "cuda" else [int(index) if index else torch.cuda.current_device()]
    with torch.random.fork_rng(devices=devices):
        yield


def _missing_dirs(path: Path, option: str = "--out (out)") -> list[Path]:
    """The folders :func:`_make_dirs` would create for ``path``, deepest first, after checking (creating
    nothing) that the nearest one that exists is a folder. ``option``: what the user set that names the
    folder, for the message."""
    made, p = [], path
    while not p.exists():
        made.append(p)
        p = p.parent
    if not p.is_dir():
        raise OverlookedError(f"cannot make the folder {path}: {p} is a file, not a folder; give {option} a folder")
    return made


def _make_dirs(path: Path, option: str = "--out (out)") -> list[Path]:
    """Create ``path`` and its missing parents now (so a concurrent run cannot take the name); return the
    folders this call created, deepest first, for :func:`_remove_empty`. ``option``: what the user set that
    names the folder, for the message."""
    made = _missing_dirs(path, option)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OverlookedError(f"cannot make the folder {path} ({exc.strerror}); give {option} a folder you can write to") from None
    return made


def _remove_empty(made: list[Path]) -> None:
    """Remove the folders :func:`_make_dirs` created, deepest first, as long as they are empty."""
    for p in made:
        try:
            p.rmdir()
        except OSError:
            return


def _discard_if_unstarted(run_dir: Path, made: list[Path]) -> None:
    """A fresh run that failed before it logged a record or wrote a checkpoint holds only the files written
    before training (config, environment, vocabulary): remove them and its folders, so a failed start leaves
    no folder that looks like a run. A run that got further keeps everything, as the record of its failure."""
    if (run_dir / "metrics.jsonl").exists() or any((run_dir / "checkpoints").glob("*")):
        return
    for name in ("config.yaml", "environment.json", VOCAB_FILE, DATA_META_FILE):
        (run_dir / name).unlink(missing_ok=True)
    for empty in (run_dir / "checkpoints",):
        if empty.is_dir() and not any(empty.iterdir()):
            empty.rmdir()
    _remove_empty(made)


VOCAB_FILE = "vocab.json"
DATA_META_FILE = "data_meta.json"  # the dataset's facts the model was built from (shapes, classes), for export without the data


def _plain(value: Any) -> bool:
    """A value JSON holds as it is (numbers, strings, booleans, None, and lists or tuples of them)."""
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    return value is None or isinstance(value, (bool, int, float, str))


def data_meta(run: Path, cfg: ExperimentConfig, data_dir: str | None) -> dict[str, Any]:
    """The dataset facts ``run``'s model was built from: ``RUN/data_meta.json`` when the run wrote one, else
    from the data itself (runs from before the file existed)."""
    path = run / DATA_META_FILE
    if path.is_file():
        return read_run_file(path, _is_mapping, "the dataset's facts, a mapping")
    return build_data(cfg, data_dir).meta


def _is_mapping(data: Any) -> bool:
    return isinstance(data, dict)


def _environment_of(run_dir: Path) -> dict[str, Any]:
    """A run's ``environment.json`` (where and how it ran, and since 2026-12-06 the config it started with),
    checked to be a mapping; {} for a run without one."""
    path = run_dir / "environment.json"
    return read_run_file(path, _is_mapping, "the run's environment, a mapping") if path.is_file() else {}


def _read_vocab(path: Path) -> list[str]:
    """A run's ``vocab.json``: the word of each index, checked to be a list of words."""
    return read_run_file(path, lambda d: isinstance(d, list) and all(isinstance(w, str) for w in d), "the training vocabulary, a list of words")


def run_terms(run: Path, cfg: ExperimentConfig, data_dir: str | None) -> tuple[list[str] | None, dict[str, Any]]:
    """The vocabulary ``run``'s model reads (None for data without one) and the dataset facts it was built from:
    ``RUN/vocab.json`` and ``RUN/data_meta.json``, or for a run made before those files, its data rebuilt (once)."""
    vocab_file, meta_file = Path(run) / VOCAB_FILE, Path(run) / DATA_META_FILE
    built = None if vocab_file.is_file() and meta_file.is_file() else build_data(cfg, data_dir).meta
    vocab = _read_vocab(vocab_file) if vocab_file.is_file() else built.get("vocab")
    meta = data_meta(run, cfg, data_dir) if meta_file.is_file() else built
    if vocab_file.is_file() and meta_file.is_file():
        _check_vocab_size(Path(run), vocab, meta)
    return vocab, meta


def _check_vocab_size(run: Path, vocab: list[str], meta: dict[str, Any]) -> None:
    """Refuse a run whose ``vocab.json`` and ``data_meta.json`` disagree on the vocabulary's size (one word
    removed by hand would shift every word after it, with no other error)."""
    size = meta.get("vocab_size")
    if isinstance(size, int) and len(vocab) != size:
        raise CheckpointError(
            f"{run / VOCAB_FILE} holds {len(vocab)} words but {run / DATA_META_FILE} says the model reads {size}: one of the "
            "run's files was edited or damaged, and every word after the difference would be read as another. Fix: restore "
            "the run folder from a copy (or train it again)"
        )


def check_vocab(run: Path, splits: Splits, fix: str = "the data files changed since the run was trained (its vocabulary is built from every file loaded): restore them (`overlooked evaluate RUN data.tasks=[...]` reads other data with the run's own vocabulary)") -> None:
    """Refuse data whose vocabulary is not the one ``run`` was trained with (``RUN/vocab.json``, written by
    runs since 2026-12-05): a model reads word indices, so other words at the same indices would be read
    as the training words without any error. Runs without the file, and data without a vocabulary, pass."""
    path = Path(run) / VOCAB_FILE
    vocab = splits.meta.get("vocab")
    if vocab is None or not path.is_file():
        return
    trained = _read_vocab(path)
    if (Path(run) / DATA_META_FILE).is_file():  # the run's own files first: a damaged vocab.json is not the data's fault
        _check_vocab_size(Path(run), trained, read_run_file(Path(run) / DATA_META_FILE, _is_mapping, "the dataset's facts, a mapping"))
    if list(trained) == list(vocab):
        return
    diff = next((i for i, (a, b) in enumerate(zip(trained, vocab)) if a != b), min(len(trained), len(vocab)))
    at = f"index {diff}: {trained[diff] if diff < len(trained) else '(none)'!r} in training, {vocab[diff] if diff < len(vocab) else '(none)'!r} here"
    raise ConfigError(
        f"the data's vocabulary ({len(vocab)} words) is not the one {run} was trained with ({len(trained)} words; first "
        f"difference at {at}), so its word indices would mean other words. Fix: {fix}"
    )


def check_transforms(cfg: ExperimentConfig, splits: Splits, augment: Any, encoder: Any) -> None:
    """Apply the augmentation and the encoder to two training examples (their own generator; the run's are not
    touched), so that one made for other data (``babi_random_time`` on MNIST: no ``memory_mask``) is named before
    the run starts rather than a KeyError at its first step."""
    probe = augmented = None
    for kind, transform in (("augment", augment), ("encoder", encoder)):
        if transform is None:
            continue
        if probe is None:
            probe = first_examples(splits.train, 2)
        try:
            out = transform(dict(probe), torch.Generator().manual_seed(0))
            if kind == "augment":
                augmented = out  # what the model's first training batch looks like (read below)
        except KeyError as exc:
            if exc.args and exc.args[0] in probe:
                raise  # a key the data has: the transform's own error
            name = getattr(cfg, kind).name
            raise ConfigError(f"{kind} {name!r} reads batch key {exc} that dataset {cfg.data.name!r} does not provide (its keys: {', '.join(probe)}); choose an {kind} made for this data, or none ({kind}=null)") from exc
    if splits.crops_train:  # training images kept larger for a random crop to cut
        want, stored = splits.meta["image_shape"], splits.meta["train_image_shape"]
        batch = augmented if augmented is not None else first_examples(splits.train, 2)  # no augmentation: as stored
        got = tuple(batch[splits.input_keys[0]].shape[1:])
        if got != tuple(want):
            raise ConfigError(
                f"dataset {cfg.data.name!r} keeps its training images at {list(stored)} for a random crop, and the model reads "
                f"{list(want)} (its validation and test images); after {'augment ' + repr(cfg.augment.name) if augment is not None else 'no augmentation'} "
                f"they are {list(got)}. Fix: augment={{name: random_crop, kwargs: {{size: {want[-1]}}}}}"
            )


def check_vocab_fits(cfg: ExperimentConfig, meta: dict[str, Any], model: nn.Module) -> None:
    """A text model built for fewer words than the data holds (``model.kwargs.vocab_size`` set by hand) is refused
    before the run: the per-step word-id check runs on CPU tensors only, and on a GPU an id beyond the embedding
    is a device-side assert that ends the process."""
    have, need = getattr(model, "vocab_size", None), meta.get("vocab_size")
    if isinstance(have, int) and isinstance(need, int) and have < need:
        raise ConfigError(f"model {cfg.model.name!r} has vocab_size={have} but the data's vocabulary holds {need} words: leave model.kwargs.vocab_size unset (it comes from the data) or set it to at least {need}")


def check_time_steps(meta: dict[str, Any], model: nn.Module, encoder: Any) -> None:
    """A spiking model reads as many time steps as its input has; its own ``steps`` only repeats a static
    input. Refuse a config where the data (event bins) or the encoder set another T than ``model.steps``,
    which would otherwise run at the data's T without a word."""
    steps = getattr(model, "steps", None)
    if not isinstance(steps, int):
        return
    sources = []
    if "frame_shape" in meta:
        if encoder is None:
            raise ConfigError("the data are event frames [B, T, ...] and a spiking model reads time first: set encoder: {name: time_first, kwargs: {key: frames}}")
        sources.append(("the data's time bins (frame_shape[0])", int(meta["frame_shape"][0])))
    if isinstance(getattr(encoder, "steps", None), int):
        sources.append(("the encoder's steps (encoder.kwargs.steps, default included)", int(encoder.steps)))
    for what, t in sources:
        if t != steps:
            raise ConfigError(f"{what} = {t} but model.kwargs.steps = {steps}: the model would run {t} steps, not {steps}; set both to the same T")


def parse_device(device: str, name: str = "train.device") -> torch.device:
    """``train.device`` (or the setting ``name``) as a torch device the trainer runs on (cpu, cuda, cuda:N or
    mps), on any machine: a config is checked for it wherever it is loaded, before it meets the machine
    (:func:`check_device`)."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"{name} {device!r} is not a torch device ({exc}); use cpu, cuda or cuda:N") from None
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"{name} {device!r}: the trainer runs on cpu, cuda, cuda:N or mps, not on {dev.type!r}")
    return dev


def check_device(device: str, name: str = "train.device") -> None:
    """Refuse a ``train.device`` (or the setting ``name``) this machine cannot run, with the fix, before
    anything is built or written."""
    dev = parse_device(device, name)
    cpu = "--device cpu (train.device=cpu)" if name == "train.device" else "--device cpu"
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{name} is {device!r} but this torch ({torch.__version__}) sees no CUDA GPU; use {cpu}")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(f"{name} is {device!r} but this machine has {torch.cuda.device_count()} CUDA GPU(s); use cuda:0 .. cuda:{torch.cuda.device_count() - 1}")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"{name} is {device!r} but MPS is not available here; use {cpu}")


# Settings a resume may change besides the trainer's (RESUME_MAY_CHANGE): where runs are written and data read
# from, and the notes.
RESUME_MAY_CHANGE_TOP = frozenset({"out", "data_dir", "notes"})


def check_resumed_run(run_dir: Path, resume: Path, cfg: ExperimentConfig) -> None:
    """Refuse to resume ``run_dir`` from ``resume`` when ``cfg`` (its config.yaml as it reads now) differs from
    the config the run started with: the whole config as its ``environment.json`` recorded it at the start, and
    the training settings the checkpoint stores (runs from before the environment held the config). Where it
    runs (device, threads, progress, this process's time limit, the evaluation batch), where it writes and reads
    data, and the notes may change; anything else would splice two runs into one folder."""
    check_resumed_config(resume, cfg.train)
    check_started_config(run_dir, cfg)


def check_started_config(run_dir: Path, cfg: ExperimentConfig, source: Path | None = None) -> None:
    """Refuse ``cfg`` for ``run_dir`` when it differs from the config the run started with, which its
    ``environment.json`` keeps (runs from before it did pass), apart from what a resume may change.
    ``source`` names the config.yaml ``cfg`` was read from (the run's own, or its --repeats / --each folder's)."""
    started = _environment_of(run_dir).get("config")
    if not isinstance(started, dict):
        return
    allowed = RESUME_MAY_CHANGE_TOP | {f"train.{k}" for k in RESUME_MAY_CHANGE}
    changed = changed_settings(cfg.to_dict(), started, "", allowed)
    if changed:
        said = ", ".join(f"{k}={a!r} (started with {b!r})" for k, a, b in changed)
        raise ConfigError(
            f"{source or run_dir / 'config.yaml'} differs from the config {run_dir} started with (its environment.json keeps it): {said}. "
            "A resume continues the same run: restore those values in config.yaml, or start a new run (from these weights: "
            f"train.init_from={run_dir} train.init_checkpoint=last)"
        )


def _single_run(cfg: ExperimentConfig, run_dir: Path | None, data_dir: str | None, resume: Path | None, extra_callbacks: list[Callback]) -> dict[str, Any]:
    """One training run (or its resume from ``resume``); :func:`train` and :func:`resume` have checked the device.
    The process holds the folder's training lock from the moment the folder is taken until its summary is written."""
    dist = init_distributed(cfg.train.device)
    write = run_dir is not None and dist.is_main
    made = _make_dirs(run_dir) if write else []  # the name is taken at once; the files come after the build
    with training_lock(run_dir if write else None):
        return _single_run_locked(cfg, run_dir, data_dir, resume, extra_callbacks, dist, made)


def _single_run_locked(cfg: ExperimentConfig, run_dir: Path | None, data_dir: str | None, resume: Path | None, extra_callbacks: list[Callback], dist: Any, made: list[Path]) -> dict[str, Any]:
    """:func:`_single_run`'s body, with the run folder taken (``made``: the folders it made) and locked."""
    device = rank_device(cfg.train.device, dist)  # under torchrun, rank 0's GPU: the one its records describe
    write = run_dir is not None and dist.is_main
    torch.manual_seed(cfg.train.seed)
    if resume is not None and run_dir is not None:  # before anything is built or any record of the run is touched
        check_resumed_run(run_dir, resume, cfg)
    try:  # every component is built before anything is written: a bad setting leaves no half-made folder
        with _building("data", cfg.data.name):
            splits = build_data(cfg, data_dir)
        if len(splits.test) == 0:
            raise ConfigError(f"the test split of {cfg.data.name!r} is empty ({cfg.data.kwargs}): the final report scores the test split; give it examples")
        for split in ("train", "val"):
            if len(getattr(splits, split)) == 0:
                raise ConfigError(
                    f"the {split} split of {cfg.data.name!r} is empty ({cfg.data.kwargs}): training needs examples, and the "
                    "trainer chooses the reported checkpoint, ends linear start and stops early on the validation split; "
                    "hold out part of the training data (e.g. data.kwargs.val_fraction=0.1)"
                )
        with _building("model", cfg.model.name):
            model = build_model(cfg, splits.meta)
        with _building("objective", cfg.objective.name):
            objective = build_objective(cfg, splits)
        with _building("augment", cfg.augment.name if cfg.augment else None):
            augment = AUGMENTATIONS.create(cfg.augment.name, **cfg.augment.kwargs) if cfg.augment and cfg.augment.name else None
        with _building("encoder", cfg.encoder.name if cfg.encoder else None):
            encoder = build_encoder(cfg)
        callbacks = build_callbacks(cfg) + list(extra_callbacks)
        check_transforms(cfg, splits, augment, encoder)
        check_time_steps(splits.meta, model, encoder)
        check_vocab_fits(cfg, splits.meta, model)
        if cfg.train.init_from and resume is None:  # a resume loads its own checkpoint instead
            init_weights(model, cfg.train, splits)
        if resume is not None and run_dir is not None:
            check_vocab(run_dir, splits, fix="the data files changed since the run started; restore them (bAbI's are checked against the official checksums unless data.kwargs.verify=false) or start a new run")
    except BaseException:
        _remove_empty(made)
        raise
    if write and resume is None:
        write_config(run_dir, cfg)
        # with the config as it started, which a resume holds config.yaml to (check_resumed_run)
        _write_json(run_dir / "environment.json", {**environment(device, cfg.train.num_threads), "config": cfg.to_dict()})
    elif write:  # a resume keeps the run's first environment (its command, date, commit) and adds its own
        env = _environment_of(run_dir)
        env.setdefault("resumes", []).append(environment(device, cfg.train.num_threads))
        _write_json(run_dir / "environment.json", env)
    # the word of each index, which evaluation on other data is checked against (a resume writes it for runs
    # from before the file existed)
    if write and "vocab" in splits.meta and (resume is None or not (run_dir / VOCAB_FILE).is_file()):
        _write_json(run_dir / VOCAB_FILE, list(splits.meta["vocab"]))
    if write and (resume is None or not (run_dir / DATA_META_FILE).is_file()):
        _write_json(run_dir / DATA_META_FILE, {k: v for k, v in splits.meta.items() if k != "vocab" and _plain(v)})
    with process_settings(cfg.train):  # the run's threads and determinism also for its final FLOP and energy passes
        t0 = _dt.datetime.now()
        try:
            result = fit(model, splits, objective, cfg.train, run_dir, augment=augment, encoder=encoder, callbacks=callbacks, resume=resume)
        except BaseException:
            if write and resume is None:
                _discard_if_unstarted(run_dir, made)
            raise
        summary = {
            "name": cfg.name,
            "model": cfg.model.name,
            "dataset": cfg.data.name,
            "dataset_kwargs": cfg.data.kwargs,
            "seed": cfg.train.seed,
            "params": count_parameters(model),
            "flops_per_example": flops_per_example(model, splits, encoder),
            "data_fingerprint": data_fingerprint(splits),
            "test_fingerprint": test_fingerprint(splits),
            "trials": cfg.train.trials,
            "device": device,
            "world_size": dist.world_size,
            **result,
        }
        # over every process of the run: a resume adds the earlier ones' time up to its checkpoint
        summary["wall_time_s"] = (_dt.datetime.now() - t0).total_seconds() + summary.pop("wall_time_before_s", 0.0)
        if cfg.train.init_from:
            summary["init_from"] = init_record(cfg.train)
        if cfg.callbacks:  # where each configured callback ended (e.g. the step linear start ended at), readable
            summary["callbacks"] = [{"name": c.name, "state": _finite(cb.state_dict())} for c, cb in zip(cfg.callbacks, callbacks)]
        from overlooked.spiking.kernels import resolved_backends

        backends = resolved_backends(model)  # read before the energy pass below, which runs in float32 without autocast
        if backends:  # which neuron kernel each spiking layer ran in the trainer's last pass (reference loop, cpp, triton)
            summary["neuron_backends"] = backends
        summary.update(spiking_energy(model, splits, encoder, examples=min(ENERGY_EXAMPLES, cfg.train.eval_limit or ENERGY_EXAMPLES)))  # within train.eval_limit, as every other number
        if "test_accuracy" in summary and len(splits.test):  # 95% Wilson interval on the test accuracy
            try:
                summary["test_accuracy_ci95"] = accuracy_interval(summary["test_accuracy"], summary.get("test_examples", len(splits.test)))
            except ValueError:  # an accuracy that is not k / n (e.g. a weighted metric): no interval
                pass
        failure = None
        if write:
            try:
                _write_json(run_dir / "summary.json", summary)
            except BaseException as exc:  # the other ranks must still hear how it went, or they would wait forever
                failure = exc
        if dist.enabled:  # every rank returns once rank 0 has written the run, and learns whether it could
            ok = torch.tensor([0.0 if failure is not None else 1.0], device=device)
            torch.distributed.all_reduce(ok, op=torch.distributed.ReduceOp.MIN)
            if failure is None and ok.item() < 1:
                raise OverlookedError("another rank failed while finishing the run (rank 0 writes its summary.json); see that rank's error")
        if failure is not None:
            raise failure
        return summary


ENERGY_EXAMPLES = 2000  # test examples the energy / firing-rate report of a spiking model is measured on


def spiking_energy(model: nn.Module, splits: Splits, encoder: Any = None, examples: int = ENERGY_EXAMPLES, batch_size: int = 500, split: str = "test") -> dict[str, Any]:
    """``{"energy": report}`` for a spiking model (its output has ``spike_counts``) on the first ``examples``
    examples of ``split``, else ``{}``. See :func:`overlooked.spiking.synops.energy_report` (a compute-only estimate)."""
    if not (hasattr(model, "blocks") and hasattr(model, "readout")):
        return {}
    from overlooked.spiking.synops import energy_report

    device = next(model.parameters()).device
    data = splits.scored(split)
    probe = first_examples(data, 1)
    probe = encoder(probe, torch.Generator().manual_seed(0)) if encoder is not None else probe
    was = model.training
    model.eval()
    with torch.no_grad():
        out = model(*(probe[k].to(device) for k in splits.input_keys))
    model.train(was)
    if not (isinstance(out, dict) and "spike_counts" in out):
        return {}
    n = min(examples, len(data))
    gen = torch.Generator().manual_seed(0)

    def batches() -> Any:
        for start in range(0, n, batch_size):
            batch = data[torch.arange(start, min(start + batch_size, n))]
            if encoder is not None:
                batch = encoder(batch, gen)
            yield batch[splits.input_keys[0]].to(device)

    return {"energy": {"split": split, "first_examples": n, **energy_report(model, batches())}}


def _sample_std(values: list[float]) -> float:
    """The sample standard deviation (n - 1), 0 for a single value."""
    return statistics.stdev(values) if len(values) > 1 else 0.0


def _spread(values: list[float]) -> dict[str, float]:
    """``{"mean", "std"}`` of ``values`` (sample std, :func:`_sample_std`)."""
    return {"mean": statistics.fmean(values), "std": _sample_std(values)}


def aggregate(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """Best-of-N under two named rules, and mean +- std over the N runs.

    - ``best_by_val``: the run with the highest validation accuracy (the rule this library recommends);
    - ``best_by_train``: the run with the lowest training error (the MemN2N paper's rule).
    Test numbers are reported for the chosen runs; nothing is ever selected on test. Ties (common: several
    seeds at 100% training accuracy) go to the first seed, a choice blind to test; each rule records the seeds
    that tied (``tied_seeds``) when there were several, so the spread a tie leaves can be read.
    """
    test = [s["test_accuracy"] for s in summaries]
    by_val = max(range(len(summaries)), key=lambda i: (summaries[i]["val_accuracy"], -i))
    by_train = max(range(len(summaries)), key=lambda i: (summaries[i]["train_accuracy"], -i))
    out: dict[str, Any] = {
        "repeats": len(summaries),
        "seeds": [s["seed"] for s in summaries],
        "test_accuracy_mean": statistics.fmean(test),
        "test_accuracy_std": _sample_std(test),
        "best_by_val": {"rule": "highest validation accuracy", "seed": summaries[by_val]["seed"], "test_accuracy": summaries[by_val]["test_accuracy"], "val_accuracy": summaries[by_val]["val_accuracy"]},
        "best_by_train": {"rule": "lowest training error (MemN2N paper)", "seed": summaries[by_train]["seed"], "test_accuracy": summaries[by_train]["test_accuracy"], "train_accuracy": summaries[by_train]["train_accuracy"]},
    }
    for rule, i, metric in (("best_by_val", by_val, "val_accuracy"), ("best_by_train", by_train, "train_accuracy")):
        tied = [s["seed"] for s in summaries if s[metric] == summaries[i][metric]]
        out[rule]["tie_break"] = "the first seed"
        if len(tied) > 1:
            out[rule]["tied_seeds"] = tied
        for key in ("test_group_accuracy", "val_accuracy", "train_accuracy", "test_error"):
            if key in summaries[i]:
                out[rule][key] = summaries[i][key]
    if all("test_group_accuracy" in s for s in summaries):
        groups = sorted(summaries[0]["test_group_accuracy"], key=int)
        errors = {g: [100.0 * (1 - s["test_group_accuracy"][g]) for s in summaries] for g in groups}
        out["group_error_mean"] = {g: statistics.fmean(e) for g, e in errors.items()}
        out["group_error_std"] = {g: _sample_std(e) for g, e in errors.items()}
        run_means = [statistics.fmean(100.0 * (1 - s["test_group_accuracy"][g]) for g in groups) for s in summaries]
        out["mean_group_error_over_runs"] = _spread(run_means)
        out["mean_group_error_by_run"] = run_means  # seed by seed, for an --each parent's spread over runs
    for key in ("name", "model", "dataset", "dataset_kwargs", "params", "flops_per_example", "data_fingerprint", "test_fingerprint", "device"):
        out[key] = summaries[0].get(key)
    for key in ("trials", "test_examples", "test_examples_available", "init_from"):  # the fair-comparison rule reads them (same for every seed); the last but one marks train.eval_limit
        if key in summaries[0]:
            out[key] = summaries[0][key]
    out["wall_time_s"] = sum(s["wall_time_s"] for s in summaries)
    out["examples_seen"] = summaries[0].get("examples_seen")
    return out


def repeat_runs(cfg: ExperimentConfig) -> list[tuple[str, ExperimentConfig]]:
    """The runs of ``cfg.train.repeats`` > 1, as (folder name ``seed<N>``, that seed's single-run config);
    none for a single run."""
    if cfg.train.repeats <= 1:
        return []
    subs = [replace(cfg, train=replace(cfg.train, seed=cfg.train.seed + k, repeats=1)) for k in range(cfg.train.repeats)]
    return [(f"seed{sub.train.seed}", sub) for sub in subs]


def seed_folders(run: str | Path) -> list[Path]:
    """The ``seed<N>`` folders of a ``--repeats`` run folder, finished or not, in seed order (seed10 after
    seed9); anything else named ``seed*`` is not one."""
    if not Path(run).is_dir():
        return []
    return sorted((p for p in Path(run).iterdir() if p.is_dir() and re.fullmatch(r"seed\d+", p.name)), key=lambda p: int(p.name[4:]))


def seed_summary_files(run: str | Path) -> list[Path]:
    """The ``seed<N>/summary.json`` files of a ``--repeats`` run folder (its finished seeds), in seed order."""
    return [p / "summary.json" for p in seed_folders(run) if (p / "summary.json").is_file()]


def reaggregate(run: str | Path) -> dict[str, Any]:
    """Recompute a repeated run's top-level ``summary.json`` from its ``seed*/summary.json`` files."""
    run = Path(run)
    seeds = seed_summary_files(run)
    if not seeds:
        raise OverlookedError(f"{run} holds no seed*/summary.json: it is not a finished run with repeats")
    agg = aggregate([read_run_file(p) for p in seeds])
    _write_json(run / "summary.json", agg)
    return agg


def train(
    cfg: ExperimentConfig,
    *,
    data_dir: str | None = None,
    out: str | Path | None = None,
    run_dir: str | Path | None = None,
    callbacks: list[Callback] | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Train the experiment ``cfg`` (``cfg.train.repeats`` seeds); return the run folder and its summary.

    The run folder is ``run_dir`` when given (it must not hold a run already: continue one with
    :func:`resume`), else a new ``out/<name>-<timestamp>`` (``out`` defaults to ``cfg.out``, ``runs``). Each run
    seeds torch's generators with ``cfg.train.seed``; the caller's generator states are put back afterwards.
    """
    check_config(cfg)
    check_device(cfg.train.device)
    if cfg.train.init_from:  # before the data are built: a mistyped path is named at once
        with _naming_init_from(cfg.train):
            check_checkpoint_exists(Path(cfg.train.init_from), cfg.train.init_checkpoint, "train.init_checkpoint=")
    if run_dir is not None:  # the folder, and each seed's folder under it
        check_fresh_run_dir(Path(run_dir))
        for folder, _ in repeat_runs(cfg):
            check_fresh_run_dir(Path(run_dir) / folder)
    cublas_for_determinism(cfg.train)  # before anything starts CUDA
    dist = init_distributed(cfg.train.device)
    claimed: list[Path] = []  # the folder made for this run (and its parents), removed again if the start fails
    if run_dir is not None:
        path = Path(run_dir)
    elif dist.is_main:
        path, claimed = claim_run_dir(out or cfg.out, cfg.name)
    else:
        path = Path()  # rank 0's folder arrives below
    if dist.enabled:  # every rank must write into the same folder: take rank 0's name
        names = [str(path)]
        torch.distributed.broadcast_object_list(names, src=0)
        path = Path(names[0])
    try:
        if cfg.train.repeats <= 1:
            with own_rng(rank_device(cfg.train.device, dist)):
                return path, _single_run(cfg, path, data_dir, None, callbacks or [])
        made: list[Path] = []
        if dist.is_main:  # written first, so an interrupted --repeats run can be resumed as a whole
            made = _make_dirs(path)
            write_config(path, cfg)
        try:
            with training_lock(path if dist.is_main else None):  # the folder, until its aggregate is written
                return path, _repeats(cfg, path, data_dir, callbacks or [], dist, resuming=False)
        except BaseException:
            if dist.is_main and not seed_folders(path):  # no seed started (e.g. a setting refused): leave no folder
                (path / "config.yaml").unlink(missing_ok=True)
                _remove_empty(made)
            raise
    except BaseException:
        _remove_empty(claimed)  # only if the failed start left it empty
        raise


def _callback_restarts(callbacks: list[Callback]) -> Callable[[], None]:
    """What puts the caller's callback objects back to their state now (``state_dict``), before each seed of
    ``--repeats`` or each value of ``--each``: every run starts from the same callbacks, as the config's own do
    (built afresh per run). The objects themselves are shared, so what a callback collects outside its
    ``state_dict`` (a list of every run's records) stays with it."""
    snapshot = [copy.deepcopy(cb.state_dict()) for cb in callbacks]

    def restart() -> None:
        for cb, state in zip(callbacks, snapshot):
            cb.load_state_dict(copy.deepcopy(state))

    return restart


def _repeats(cfg: ExperimentConfig, path: Path, data_dir: str | None, callbacks: list[Callback], dist: Any, resuming: bool, record: ExperimentConfig | None = None) -> dict[str, Any]:
    """Train (or, ``resuming``, finish) the seeds of a ``--repeats`` run in ``path/seed<N>`` and write the
    aggregate (with the config as ``record`` has it). Resuming keeps every finished seed's summary (one stopped by
    max_minutes too, so every seed keeps the same budget; ``--resume RUN/seedN`` continues one), continues a seed
    from its last checkpoint, and trains a seed that never started."""
    summaries = []
    if resuming:  # before any seed trains: the folder's config.yaml must still be the one its seeds started from
        named = {folder for folder, _ in repeat_runs(cfg)}
        stray = [p.name for p in seed_folders(path) if p.name not in named]
        if stray:
            raise ConfigError(
                f"{path / 'config.yaml'} (train.seed={cfg.train.seed}, train.repeats={cfg.train.repeats}) no longer names the seed folders "
                f"{', '.join(stray)} this run holds; restore train.seed and train.repeats to resume it"
            )
        for folder, sub in repeat_runs(cfg):
            check_started_config(path / folder, sub, path / "config.yaml")
    restart = _callback_restarts(callbacks)
    for folder, sub in repeat_runs(cfg):
        sub_dir = path / folder
        # a seed folder another process trains (`--resume RUN/seedN`) is refused before anything in it is read or moved
        with training_lock(sub_dir if dist.is_main and sub_dir.is_dir() else None):
            finished = _summary_of(sub_dir) if resuming else None
            if finished is not None:
                summaries.append(finished)
                continue
            last = sub_dir / "checkpoints" / "last.safetensors"
            if resuming and not last.is_file() and dist.is_main:  # killed before its first checkpoint: it starts again,
                for name in RUN_FILES[:3]:  # its partial records kept aside (an earlier interruption's too), not mixed into the new ones
                    if (sub_dir / name).is_file():
                        _set_aside(sub_dir / name, f"{name}.interrupted")
            restart()
            with own_rng(rank_device(cfg.train.device, dist)):
                summaries.append(_single_run(sub, sub_dir, data_dir, last if resuming and last.is_file() else None, callbacks))
    agg = aggregate(summaries)
    if dist.is_main:
        write_run_files(path, record or cfg, agg)
    return agg


def merge_each(subs: dict[str, dict[str, Any]], cfg: ExperimentConfig, key: str, values: list[Any]) -> dict[str, Any]:
    """One summary for independent runs, one per value of ``key`` (see :func:`train_each`)."""
    merged: dict[str, Any] = {"each": {"key": key, "values": values}, "repeats": cfg.train.repeats}
    for key_ in ("name", "model", "dataset", "device"):
        merged[key_] = next(iter(subs.values())).get(key_)
    data_key = key.split(".")[0] == "data"
    merged["dataset_kwargs"] = {**cfg.data.kwargs, key.split(".")[-1]: values} if data_key else dict(cfg.data.kwargs)
    merged["params"] = sum(s.get("params") or 0 for s in subs.values())
    merged["wall_time_s"] = sum(s.get("wall_time_s", 0.0) for s in subs.values())
    merged["examples_seen"] = sum(s.get("examples_seen") or 0 for s in subs.values())
    # What `bench compare` needs to hold a merged run to the fair-comparison rule: one fingerprint of every
    # value's split (same values, same splits -> same fingerprint), FLOPs per example as the mean over the
    # values (each value's test set weighs the same in the merged accuracy), and the most trials any value used.
    # A sweep of another setting (train.lr=...) trains every value on one split: when the values' fingerprints
    # agree, that split's own fingerprint (a single run on the same data compares with it), else one over all.
    fingerprints = {str(v): subs[str(v)].get("data_fingerprint") for v in values}
    same_split = not data_key and all(fingerprints.values()) and len(set(fingerprints.values())) == 1
    if all(fingerprints.values()):
        merged["data_fingerprint"] = next(iter(fingerprints.values())) if same_split else hashlib.sha256(json.dumps(fingerprints).encode()).hexdigest()[:16]
    tests = {str(v): subs[str(v)].get("test_fingerprint") for v in values}
    if all(tests.values()):
        merged["test_fingerprint"] = next(iter(tests.values())) if same_split and len(set(tests.values())) == 1 else hashlib.sha256(json.dumps(tests).encode()).hexdigest()[:16]
    flops = [s.get("flops_per_example") for s in subs.values()]
    merged["flops_per_example"] = statistics.fmean(flops) if all(f is not None for f in flops) else None
    recorded = [s.get("trials") for s in subs.values()]
    merged["trials"] = max(recorded) if all(t is not None for t in recorded) else None  # unrecorded stays unrecorded, never 1
    if merged["trials"] is not None and not data_key and key != "train.seed":  # values of a model/train/... setting are hyper-parameter trials (seeds are not)
        merged["trials"] *= len(values)
    starts = [s["init_from"] for s in subs.values() if s.get("init_from")]
    if starts:  # each value's model started from those weights: their examples count once per model
        seen = [st.get("examples_seen") for st in starts]
        merged["init_from"] = {**starts[0], "examples_seen": None if None in seen else sum(seen)}
    # the examples the merged accuracy is scored on: every value's own test set, or, for a sweep on one split,
    # that one set (scored once per value, not a larger set)
    combine = sum if data_key else max  # a sweep of a setting scores one split: the largest part any value scored (eval_limit may differ)
    if all(s.get("test_examples") is not None for s in subs.values()):
        merged["test_examples"] = combine([s["test_examples"] for s in subs.values()])
    if any(s.get("test_examples_available") is not None for s in subs.values()):  # some value scored under train.eval_limit
        merged["test_examples_available"] = combine([s.get("test_examples_available", s.get("test_examples") or 0) for s in subs.values()])
    # Per-group results merge into one table only when no group is in two values (data.tasks=1,2,...): a sweep
    # of another setting over the same tasks would overwrite one value's task with another's, so it keeps them
    # per value (``<field>_by_value``), beside the headline mean over the values.
    def groups_of(s: dict[str, Any]) -> dict[str, Any]:
        return (s.get("best_by_train") or s).get("test_group_accuracy", {})

    seen = [g for s in subs.values() for g in groups_of(s)]
    disjoint = len(seen) == len(set(seen))

    def gathered(field: str, parts: dict[str, dict[str, Any]], into: dict[str, Any]) -> None:
        if disjoint:
            into[field] = {g: x for part in parts.values() for g, x in part.items()}
        else:
            into[f"{field}_by_value"] = parts

    if cfg.train.repeats > 1:
        for rule in ("best_by_train", "best_by_val"):
            merged[rule] = {"rule": next(iter(subs.values()))[rule]["rule"] + ", chosen per value", "seed": "per value", "seed_per_value": {v: s[rule]["seed"] for v, s in subs.items()}}
            gathered("test_group_accuracy", {v: s[rule].get("test_group_accuracy", {}) for v, s in subs.items()}, merged[rule])
            if all("test_accuracy" in s[rule] for s in subs.values()):  # the chosen run of each value, averaged
                merged[rule]["test_accuracy"] = statistics.fmean(s[rule]["test_accuracy"] for s in subs.values())
        for field in ("group_error_mean", "group_error_std"):
            gathered(field, {v: s.get(field, {}) for v, s in subs.items()}, merged)
        merged["test_accuracy_mean"] = statistics.fmean(s["test_accuracy_mean"] for s in subs.values())
        # The spread over the N runs of the whole protocol, run i being seed i of every value (one model per
        # task: run i answers every task with that task's seed i), each value weighed by its number of groups.
        by_run = [s.get("mean_group_error_by_run") for s in subs.values()]
        sizes = [len(s.get("group_error_mean") or {}) for s in subs.values()]
        if disjoint and all(by_run) and len({len(r) for r in by_run}) == 1 and all(sizes):
            pooled = [sum(r[i] * n for r, n in zip(by_run, sizes)) / sum(sizes) for i in range(len(by_run[0]))]
            merged["mean_group_error_by_run"] = pooled
            merged["mean_group_error_over_runs"] = {**_spread(pooled), "runs": "seed i of every value"}
    else:
        gathered("test_group_accuracy", {v: s.get("test_group_accuracy", {}) for v, s in subs.items()}, merged)
        merged["test_accuracy"] = statistics.fmean(s["test_accuracy"] for s in subs.values())
        merged["val_accuracy"] = statistics.fmean(s["val_accuracy"] for s in subs.values())
    return merged


def train_each(
    cfg: ExperimentConfig,
    key: str,
    values: list[Any],
    *,
    data_dir: str | None = None,
    out: str | Path | None = None,
    callbacks: list[Callback] | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Train one independent run (with ``cfg.train.repeats`` seeds) per value of ``key``, in one folder.

    For bAbI's independent training, ``key="data.tasks"`` and ``values=[1, ..., 20]``: each task is its own
    model, and the merged summary holds per-task results as if one model had answered every task, for the
    best run per task under each selection rule.
    """

    # Every value is checked, its data built, before the first run starts: a bad value found after hours
    # of training on the others would leave the folder without its merged summary.
    if not values:
        raise ConfigError(f"--each {key}= names no values; e.g. {key}=1,2,3")
    if key == "train.repeats":
        raise ConfigError("--each train.repeats=...: the seeds of a run are --repeats N (train.repeats), one setting per folder; run each count on its own")
    folders = [str(v) for v in values]  # each value's folder is named by its text
    def escapes(text: str) -> bool:  # a '..' part or an absolute path would put a value's run outside the --each folder
        parts = text.replace("\\", "/").split("/")
        return "\0" in text or ".." in parts or text.startswith(("/", "\\")) or any(len(p.encode()) > 200 for p in parts)

    unsafe = [f for f in folders if escapes(f)]
    if unsafe:  # notes=../../victim wrote its run over another run
        raise ConfigError(
            f"--each {key}= values name their run folders ({key.split('.')[-1]}=VALUE, inside the --each folder), so none may "
            f"climb out of it: {', '.join(map(repr, unsafe))} hold(s) a '..' part, start at the root, hold NUL or are too long; use "
            "plain values (a word, a number, a short list, a relative path without '..')"
        )
    twice = repeated(folders)
    if twice:
        raise ConfigError(f"--each {key}= names {', '.join(twice)} more than once; each value is one run folder, so name each once")
    check_device(cfg.train.device)
    problems: dict[str, list[str]] = {}  # message -> the values that gave it (a misspelt key fails every value alike)
    for value in values:
        try:
            sub_cfg = apply_overrides(cfg, [f"{key}={json.dumps(value)}"])
            check_config(sub_cfg)
            build_data(sub_cfg, data_dir)
        except OverlookedError as exc:
            problems.setdefault(str(exc), []).append(str(value))
    if problems:
        failed = sum(map(len, problems.values()))
        listed = [f"{key}={_few(vals)}: {message}" for message, vals in list(problems.items())[:10]]
        if len(problems) > 10:
            listed.append(f"... and {len(problems) - 10} more message(s) like these")
        raise ConfigError(f"--each: {failed} of {len(values)} value(s) cannot run, so none was started:\n" + "\n".join(listed))
    path = new_run_dir(out or cfg.out, f"{cfg.name}-each")
    # The folder's config and its values are written first, so that an interrupted --each can be resumed as a
    # whole (--resume FOLDER): finished values kept, the interrupted one continued, the others trained.
    with training_lock(path):  # the folder, until its merged summary is written
        write_config(path, cfg)
        _write_json(path / EACH_FILE, {"key": key, "values": values})
        return path, _each_runs(cfg, path, key, values, data_dir, resuming=False, callbacks=callbacks)


def _few(values: list[str], shown: int = 20) -> str:
    """``values`` joined by commas, the first ``shown`` of them and a count of the rest.

    >>> _few(["1", "2"]), _few([str(i) for i in range(30)], 3)
    ('1,2', '0,1,2,... (27 more)')
    """
    return ",".join(values) if len(values) <= shown else ",".join(values[:shown]) + f",... ({len(values) - shown} more)"


EACH_FILE = "each.json"  # an --each folder's key and values, written before its first run


def _each_runs(cfg: ExperimentConfig, path: Path, key: str, values: list[Any], data_dir: str | None, resuming: bool, device: str | None = None, callbacks: list[Callback] | None = None) -> dict[str, Any]:
    """Train (or, ``resuming``, finish) one run per value of ``key`` under ``path``, then write the merged summary.
    Resuming keeps each value whose summary is written, continues one with a checkpoint (or a --repeats folder) by
    :func:`resume`, and trains again one that stopped before its first checkpoint (its partial folder set aside)."""
    subs: dict[str, dict[str, Any]] = {}
    runs = []
    for value in values:
        sub_cfg = apply_overrides(cfg, [f"{key}={json.dumps(value)}"])
        if device:  # a resume's --device, over the value's own (an --each over train.device included)
            sub_cfg = apply_overrides(sub_cfg, [f"train.device={device}"])
        sub_dir = path / f"{key.split('.')[-1]}={value}"
        runs.append((value, sub_cfg, sub_dir))
        if resuming:  # before any value trains: the folder's config.yaml must still be the one its values started from
            started = [(sub_dir / folder, seed_cfg) for folder, seed_cfg in repeat_runs(sub_cfg)] or [(sub_dir, sub_cfg)]  # its seeds, or itself
            for run_dir, run_cfg in started:
                check_started_config(run_dir, run_cfg, path / "config.yaml")
    restart = _callback_restarts(callbacks or [])
    for value, sub_cfg, sub_dir in runs:
        restart()
        if resuming and sub_dir.exists():
            # a value's folder another process trains (`--resume` of it) is refused before it is read or moved
            with training_lock(sub_dir):
                finished = _summary_of(sub_dir)
                if finished is not None:
                    subs[str(value)] = finished
                    continue
                if (sub_dir / "config.yaml").is_file() and (sub_cfg.train.repeats > 1 or (sub_dir / "checkpoints" / "last.safetensors").is_file()):
                    _, subs[str(value)] = resume(sub_dir, data_dir=data_dir, device=device, callbacks=callbacks)
                    continue
                _set_aside(sub_dir, f".{sub_dir.name}.interrupted")  # nothing to continue from: trained again (hidden: scripts globbing key=* skip it)
        _, subs[str(value)] = train(sub_cfg, data_dir=data_dir, run_dir=sub_dir, callbacks=callbacks)  # (the new folder: locked by its run)
    merged = merge_each(subs, cfg, key, values)
    write_run_files(path, cfg, merged)
    return merged


def run_config(run: str | Path, *, conversion_refusal: str | None = None) -> ExperimentConfig:
    """The checked config of a run folder written by `overlooked train`. A conversion record is refused;
    ``conversion_refusal`` says why in the caller's terms (default: it holds no trained model)."""
    run = Path(run)
    if run.is_file() and (run.parent / "config.yaml").is_file():  # RUN/config.yaml or RUN/summary.json given
        raise OverlookedError(f"{run} is a file of the run folder {run.parent}; pass the folder itself: {run.parent}")
    if not (run / "config.yaml").is_file():
        inside = sorted(p.parent.name for p in run.glob("*/config.yaml")) if run.is_dir() else []
        raise OverlookedError(
            f"{run} is not a run folder (no config.yaml); pass the folder `overlooked train` printed"
            + (f", or one of the runs inside it: {', '.join(str(run / n) for n in inside[:3])}" if inside else
               " (an `overlooked demo` folder holds no model of its own: train a packaged config, e.g. `overlooked train memn2n_babi1k`, to get a run to evaluate)")
        )
    raw = read_run_file(run / "config.yaml")
    if isinstance(raw, dict) and raw.get("kind") == "ann_to_snn_conversion":
        why = conversion_refusal or f"its results are in its summary.json and it holds no trained model; pass the run it converted, {raw.get('source_run')}"
        raise OverlookedError(f"{run} is the record of an ANN-to-SNN conversion (`overlooked convert`): {why}")
    cfg = ExperimentConfig.from_dict(raw)
    check_config(cfg)
    return cfg


def resume(run: str | Path, *, data_dir: str | None = None, callbacks: list[Callback] | None = None, device: str | None = None) -> tuple[Path, dict[str, Any]]:
    """Continue an interrupted run exactly from its ``checkpoints/last.safetensors``. ``device`` continues it
    on another device than it was configured for (e.g. a GPU run on a CPU-only machine; bit-identity with an
    uninterrupted run then holds no longer); environment.json's ``resumes`` record says where it ran. A folder
    another process is training now is refused before anything in it changes
    (:class:`overlooked.train.runlock.RunBusyError`)."""
    with training_lock(run):
        return _resume(Path(run), data_dir=data_dir, callbacks=callbacks, device=device)


def _resume(run: Path, *, data_dir: str | None, callbacks: list[Callback] | None, device: str | None) -> tuple[Path, dict[str, Any]]:
    """:func:`resume`'s body, run while this process holds the folder's training lock."""
    last = run / "checkpoints" / "last.safetensors"
    if (run / EACH_FILE).is_file():  # an --each folder: finish its values
        if (run / "summary.json").is_file():
            raise OverlookedError(f"{run} has finished (every value of its --each and the merged summary are written); --resume a value's own folder under it to continue one stopped by max_minutes")
        each = read_run_file(
            run / EACH_FILE,
            lambda d: isinstance(d, dict) and isinstance(d.get("key"), str) and isinstance(d.get("values"), list) and bool(d["values"]),
            'the --each setting and its values, {"key": "data.tasks", "values": [1, 2, ...]}',
        )
        cfg = run_config(run)
        check_device(device or cfg.train.device, "--device" if device else "the run's train.device")
        return run, _each_runs(cfg, run, each["key"], each["values"], data_dir, resuming=True, device=device, callbacks=callbacks)
    if not (run / "config.yaml").is_file() and seed_folders(run):
        first = seed_folders(run)[0]
        raise OverlookedError(
            f"{run} holds the seeds of a --repeats run written before the run's config.yaml was saved first. To finish it, "
            f"copy {first / 'config.yaml'} to {run / 'config.yaml'}, set its train.seed to the first seed and train.repeats to "
            f"the number of seeds, then --resume {run}"
        )
    original = run_config(run)
    cfg = original if device is None else apply_overrides(original, [f"train.device={device}"])
    repeats = cfg.train.repeats > 1
    if repeats and (run / "summary.json").is_file():  # a --repeats folder: its seeds are finished, then aggregated
        raise OverlookedError(
            f"{run} has finished (all {cfg.train.repeats} seeds and the summary are written). A seed stopped by "
            "max_minutes continues with --resume on its own folder (the seedN folders under it); to train one further, "
            "start a new run from it with train.init_from"
        )
    if not repeats:
        if not last.is_file():
            raise OverlookedError(f"{run} has no checkpoints/last.safetensors to resume from; start the run again instead")
        done = (_summary_of(run) or {}).get("stopped_by")
        if done in ("epochs", "max_steps"):  # a run stopped by max_minutes or a callback continues
            raise OverlookedError(
                f"{run} has finished (stopped by {done}: its summary.json is written), so there is nothing to resume; to train it "
                f"further, start a new run from its weights with train.init_from={run} (train.init_checkpoint=last for its final weights)"
            )
    check_device(cfg.train.device, "--device" if device else "the run's train.device")
    cublas_for_determinism(cfg.train)  # before anything starts CUDA
    dist = init_distributed(cfg.train.device)  # sets each rank's GPU before own_rng reads the current one
    if repeats:
        return run, _repeats(cfg, run, data_dir, callbacks or [], dist, resuming=True, record=original)
    with own_rng(rank_device(cfg.train.device, dist)):
        return run, _single_run(cfg, run, data_dir, last, callbacks or [])


def _summary_of(run: Path) -> dict[str, Any] | None:
    """A run folder's ``summary.json`` (written when its training ended), or None when it has no readable one."""
    try:
        summary = json.loads((run / "summary.json").read_text())
    except (OSError, ValueError):
        return None
    return summary if isinstance(summary, dict) else None


def init_weights(model: nn.Module, train: Any, splits: Splits) -> None:
    """Load the weights of ``train.init_from``'s ``train.init_checkpoint`` into ``model`` (as that run reports
    them: its weight average when it kept one). The model must have the same shapes, and text data the same
    vocabulary; the run's optimiser and callbacks' state are not carried over."""
    run = Path(train.init_from)
    with _naming_init_from(train):
        check_checkpoint_exists(run, train.init_checkpoint, "train.init_checkpoint=")
        check_vocab(run, splits, fix="train on data built from the same tasks as the run you start from (the vocabulary is built from every task loaded)")
        load_weights(run, train.init_checkpoint, model, run_config(run))


@contextlib.contextmanager
def _naming_init_from(train: Any) -> Iterator[None]:
    """A checkpoint or config error inside the block is about ``train.init_from``'s run: say so first."""
    try:
        yield
    except (CheckpointError, ConfigError) as exc:
        raise type(exc)(f"train.init_from={train.init_from} (train.init_checkpoint={train.init_checkpoint}): {exc}") from None


def init_record(train: Any) -> dict[str, Any]:
    """What a run started from (``train.init_from``): the folder, the checkpoint and the training examples its
    weights had seen (its own, plus those of the run it started from in turn), which the fair-comparison rule
    adds to this run's own."""
    path = Path(train.init_from) / "summary.json"
    before = read_run_file(path, _is_mapping, "the run's summary, a mapping") if path.is_file() else {}
    seen, earlier = before.get("examples_seen"), before.get("init_from")
    if seen is not None and earlier:  # that run started from another one's weights: those examples count too
        seen = None if earlier.get("examples_seen") is None else seen + earlier["examples_seen"]
    return {"run": str(train.init_from), "checkpoint": train.init_checkpoint, "examples_seen": seen}


def natural_key(name: str) -> list[Any]:
    """Sort key putting numbers in names in numeric order (seed2 before seed10).

    >>> sorted(["seed10", "seed2", "data.tasks=1"], key=natural_key)
    ['data.tasks=1', 'seed2', 'seed10']
    """
    return [int(c) if c.isdigit() else c for c in re.split(r"(\d+)", name)]


def check_checkpoint_exists(run: Path, checkpoint: str, option: str = "--checkpoint") -> None:
    """Refuse a run folder without ``checkpoints/<checkpoint>.safetensors``, naming what it has instead: the
    sub-runs of a --repeats/--each folder, another checkpoint (``option``: ``--checkpoint last``, or for a
    run started from it ``train.init_checkpoint=``), or none at all."""
    if (run / "checkpoints" / f"{checkpoint}.safetensors").is_file():
        return
    if (run / "checkpoints" / f"{checkpoint}.safetensors").exists():
        raise CheckpointError(f"{run / 'checkpoints' / f'{checkpoint}.safetensors'} is not a file (a folder in its place?); restore it from a copy of the run folder")
    if not run.is_dir():
        raise CheckpointError(f"{run} {'is a file' if run.exists() else 'does not exist'}: pass a run folder (the one `overlooked train` printed as 'run folder')")
    subs = sorted({str(p.parent.parent.relative_to(run)) for p in run.glob("*/**/checkpoints/*.safetensors")}, key=natural_key)
    if subs:  # a folder of --repeats or --each: its models live in the sub-runs
        raise CheckpointError(f"{run} holds several runs ({', '.join(subs[:4])}{', ...' if len(subs) > 4 else ''}) and no model of its own: pass one of them, e.g. {run / subs[0]}")
    have = sorted(p.stem for p in (run / "checkpoints").glob("*.safetensors") if p.is_file() and p.stem in ("best", "last"))  # not a best set aside by a stop
    other = f"; it has {', '.join(have)}: pass {option}{'' if option.endswith('=') else ' '}{have[0]}" if have else (
        "; it has no checkpoint at all (stopped before its first one, or its checkpoints were not kept: committed "
        "run summaries under results/runs hold none), so train it again"
    )
    raise CheckpointError(f"run folder {run} has no {checkpoint} checkpoint (checkpoints/{checkpoint}.safetensors){other}")


def load_run(run: str | Path, *, checkpoint: str = "best", data_dir: str | None = None, data_overrides: list[str] | None = None) -> tuple[ExperimentConfig, Splits, nn.Module]:
    """Rebuild a run's data and model and load its ``best`` (or ``last``) checkpoint. ``data_overrides``
    (``data.*`` keys only: the model must stay the one the checkpoint holds) swap the data, e.g. to test a
    model trained on MNIST on the affNIST-style set: ``["data.name=affnist_style"]``."""
    run = Path(run)
    own = cfg = run_config(run)
    if data_overrides:
        keys = {o: parse_override(o)[0] for o in data_overrides}
        bad = [o for o, key in keys.items() if len(key) < 2 or key[0] != "data"]
        if bad:
            raise ConfigError(f"evaluate and explain take data.* overrides only (the model must match its checkpoint), got {bad}; train a new run to change anything else")
        cfg = apply_overrides(cfg, data_overrides)
        check_config(cfg)
    check_checkpoint_exists(run, checkpoint)
    pinned = _pinned_data_kwargs(run, own, cfg, data_dir) if data_overrides else {}
    try:
        splits = build_data(cfg, data_dir, pinned=pinned)
    except UnreadableDataError as exc:
        if not pinned:
            raise
        kept = ", ".join(f"{k} ({len(v)} words)" if k == "vocab" else f"{k}={v}" for k, v in pinned.items() if k != "trim_memory")
        raise DataError(f"{exc}\n(The data was built with what {run}'s model was trained with: {kept}; a model reads other data only in those terms)") from None
    check_vocab(run, splits)
    model = build_model(cfg, splits.meta)
    try:
        restore_weights(run, checkpoint, model, cfg)
    except CheckpointError as exc:
        if not data_overrides:
            raise
        raise CheckpointError(
            f"{exc}\nThe model was rebuilt for the data of {data_overrides}, which changes sizes the model takes from "
            f"its data (e.g. the image side); this model cannot read that data as it is (dataset meta now: "
            f"{ {k: v for k, v in splits.meta.items() if k.endswith(('_shape', '_size')) or k == 'num_classes'} }). Fix: give the "
            "data overrides that keep the shape the model was trained on, or train a run on data of the new shape (for affNIST's "
            "40x40 digits, the capsnet_affnist / capsule_em_affnist configs train on MNIST placed on a 40x40 canvas)"
        ) from None
    check_time_steps(splits.meta, model, build_encoder(cfg))  # data overrides may change the event bins
    return cfg, splits, model


def load_model(run: str | Path, *, checkpoint: str = "best", data_dir: str | None = None) -> tuple[ExperimentConfig, nn.Module]:
    """A run's trained model without its data: ``(config, model)``, the model built from the dataset facts the
    run recorded (``RUN/data_meta.json``; a run from before that file reads its data once) and loaded from its
    ``best`` (or ``last``) checkpoint in the mode :func:`load_run` gives it (eval, callbacks' state restored).
    For the data as well, its vocabulary included, use :func:`load_run`."""
    run = Path(run)
    cfg = run_config(run)
    _, model = _model_of_run(run, cfg, checkpoint, data_dir)
    return cfg, model


def _model_of_run(run: Path, cfg: ExperimentConfig, checkpoint: str, data_dir: str | None) -> tuple[dict[str, Any], nn.Module]:
    """:func:`load_model`'s work on the run's config ``cfg``, with the dataset facts the model was built from
    (export-nir reads them too)."""
    check_checkpoint_exists(run, checkpoint)
    meta = data_meta(run, cfg, data_dir)
    model = build_model(cfg, meta)
    restore_weights(run, checkpoint, model, cfg)
    return meta, model


def restore_weights(run: Path, checkpoint: str, model: nn.Module, cfg: ExperimentConfig) -> None:
    """Load the checkpoint's weights into ``model`` (:func:`load_weights`), put it in the mode its callbacks'
    saved state implies, and switch it to eval mode: the function training reported."""
    info = load_weights(run, checkpoint, model, cfg)
    # A callback may have changed how the model computes when the checkpoint was written (linear start);
    # its saved state puts the model back in that mode, so evaluate scores what training reported.
    callbacks = build_callbacks(cfg)  # a config's error stays a config error; only the file's state is read below
    try:
        saved = info.get("state", {}).get("callbacks", [])
        for cb, cb_state in zip(callbacks, saved):
            cb.load_state_dict(cb_state)
            cb.restore_model(model)
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(
            f"the callbacks' state saved in {run}'s {checkpoint} checkpoint cannot be restored ({type(exc).__name__}: {exc}); "
            "the file is damaged or was written by another version of overlooked (the run's environment.json names its git commit)"
        ) from None
    model.eval()


def ask(
    run: str | Path,
    story: str | list[str],
    question: str,
    *,
    answer: str | None = None,
    checkpoint: str = "best",
    data_dir: str | None = None,
    out: str | Path | None = None,
) -> dict[str, Any]:
    """Ask a trained bAbI model a question of your own about a story of your own.

    The story and question are encoded with the run's vocabulary and sizes (``RUN/vocab.json``,
    ``RUN/data_meta.json``; :func:`overlooked.data.babi.encode_question`), so only words it was trained with are
    read (others are refused and named). For a memory network the result also says what each hop read, as
    :func:`explain` does, drawn to ``ask_<digest>.png`` in ``out`` (default ``RUN/explain``).

    Args:
        run: a run folder of any model trained on bAbI (memory networks, the LSTM, the Transformers).
        story: the statements, oldest first: one string or a list (sentences end with ``.``, ``!`` or a line
            break; see :func:`overlooked.data.babi.story_statements`).
        question: the question.
        answer: the expected answer, if known: the result then says whether the prediction is right.
        checkpoint: ``best`` or ``last``.
        data_dir: the data root, read only for a run made before ``vocab.json`` / ``data_meta.json`` existed.

    Returns:
        ``story`` (the memories read, oldest first), ``question``, ``predicted``, ``answer``, ``correct`` (None
        without an answer), ``attention`` (``[K][n]`` per hop; None for a model without addressable memory),
        ``linear_start``, ``figure`` and ``not_read`` (the earlier sentences that did not fit the model's
        ``memory_size`` slots, dropped as in training).
    """
    from overlooked.data.babi import encode_question, story_statements
    from overlooked.data.base import ArrayDataset
    from overlooked.memory.explain import explain_example

    run = Path(run)
    cfg = run_config(run)
    if cfg.data.name != "babi":
        raise ConfigError(f"ask puts a question about a story to a model trained on bAbI; {run} was trained on {cfg.data.name!r}")
    check_checkpoint_exists(run, checkpoint)
    vocab, meta = run_terms(run, cfg, data_dir)
    model = build_model(cfg, meta)
    restore_weights(run, checkpoint, model, cfg)
    batch = encode_question(story, question, vocab, meta["memory_size"], meta["sentence_len"], answer)
    digest = hashlib.sha1(json.dumps([str(run.resolve()), checkpoint, batch["story"].tolist(), batch["query"].tolist(), batch["answer"].tolist()]).encode()).hexdigest()[:10]
    result = explain_example(model, ArrayDataset(batch), model_input_keys(cfg) or BABI_INPUT_KEYS, vocab, 0, _explain_folder(run, out) / f"ask_{digest}.png")
    not_read = max(0, len(story_statements(story)) - meta["memory_size"])
    result.update(split=None, row=None, task=None, run=str(run), checkpoint=checkpoint, not_read=not_read)
    return result


# Dataset arguments that fix how a text model reads its input; other data is encoded with the run's values.
PINNED_DATA_FACTS = ("sentence_len", "memory_size")


def _pinned_data_kwargs(run: Path, own: ExperimentConfig, cfg: ExperimentConfig, data_dir: str | None) -> dict[str, Any]:
    """What other data (``cfg``, the run's config ``own`` with data overrides) must be built with for ``run``'s
    model to read it: the run's vocabulary and the sizes its model was built for (the padded sentence length,
    the memory slots; :func:`run_terms`), for a dataset that takes them (bAbI), unless the
    overrides set one themselves. So a model trained jointly reads one task, or your own stories, with its own
    word indices, encodings and temporal table."""
    allowed = set(DATASETS.accepted_kwargs(cfg.data.name) or [])
    if not allowed & {"vocab", *PINNED_DATA_FACTS}:
        return {}
    mine, theirs = cfg.data.kwargs, own.data.kwargs if own.data.name == cfg.data.name else {}
    named = {k for k in mine if k not in theirs or mine[k] != theirs[k]}  # what the overrides set (a key they dropped is not)
    pinned: dict[str, Any] = {}
    vocab, meta = run_terms(run, own, data_dir)
    if "vocab" in allowed and "vocab" not in named and vocab is not None:
        pinned["vocab"] = vocab
    pinned.update({k: meta[k] for k in PINNED_DATA_FACTS if k in allowed and k in meta and k not in named})
    if "memory_size" in pinned and "trim_memory" in allowed and "trim_memory" not in named:
        pinned["trim_memory"] = False  # the run's (possibly trimmed) size, as it is
    return pinned


def load_weights(run: Path, checkpoint: str, model: nn.Module, cfg: ExperimentConfig) -> dict[str, Any]:
    """Load the weights a run reports into ``model``; return the checkpoint's info. ``best`` holds them as
    reported; ``last`` of a run with ``train.ema_decay`` holds the raw weights and their average, and the
    average is what the run validates and reports, so that is what is loaded."""
    averaged = checkpoint == "last" and cfg.train.ema_decay is not None
    path = Path(run) / "checkpoints" / f"{checkpoint}.safetensors"
    _, info = load_checkpoint(path, model, weights_from="ema.module" if averaged else "model")
    broken = [name for name, t in model.state_dict().items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if broken:  # scored, they give chance-level numbers that read as a result; started from, a dead run
        raise CheckpointError(f"{path}: its weights hold NaN or inf ({', '.join(broken[:3])}): that run diverged or the file is damaged; use another run or checkpoint")
    negative = [name for name, t in model.state_dict().items() if name.endswith("running_var") and bool((t < 0).any())]
    if negative:  # a variance below zero: normalisation by its square root gives NaN (an evaluation at chance, a NaN export)
        raise CheckpointError(f"{path}: its normalisation statistics hold a negative variance ({', '.join(negative[:3])}); no training writes one, so the file is damaged; use another run or checkpoint")
    return info


def _check_split(split: str) -> None:
    if split not in ("train", "val", "test"):
        raise ConfigError(f"split must be train, val or test, got {split!r}")


def _load_for_split(run: str | Path, split: str, checkpoint: str, data_dir: str | None, data_overrides: list[str] | None) -> tuple[ExperimentConfig, Splits, nn.Module]:
    """:func:`load_run` for evaluate and explain, after checking the split's name and that ``data_overrides``
    do not re-split the run's own data (a train or validation split that would then hold other examples)."""
    _check_split(split)
    _check_no_resplit(run_config(run), split, data_overrides or [])
    return load_run(run, checkpoint=checkpoint, data_dir=data_dir, data_overrides=data_overrides)


def _explain_folder(run: str | Path, out: str | Path | None) -> Path:
    """Where the explain functions write: ``out``, or ``RUN/explain``; created."""
    folder = Path(out) if out is not None else Path(run) / "explain"
    _make_dirs(folder)  # a file in the way is said, naming --out
    return folder


def _memory_run(run: str | Path, split: str, checkpoint: str, data_dir: str | None, data_overrides: list[str] | None = None) -> tuple[ExperimentConfig, Splits, nn.Module]:
    """:func:`load_run` for the explain functions: a bAbI run of a model whose output shows its memory reads
    (on other data when ``data_overrides`` name it, read in the run's terms)."""
    from overlooked.memory.explain import reads_memory

    cfg, splits, model = _load_for_split(run, split, checkpoint, data_dir, data_overrides)
    if cfg.data.name != "babi":
        raise ConfigError(
            f"explain shows what a memory network read from a bAbI story (runs of memn2n, kvmemnn, memnn, memnn_am_ng_nl) "
            f"or what a capsule network's capsules hold (runs of capsnet, capsnet_multimnist, matcaps_em, matcaps_em_small); {run} is a {cfg.model.name!r} run on "
            f"{cfg.data.name!r}, neither. `overlooked evaluate {run}` scores it; `overlooked show {run}` prints what it reported"
        )
    data = splits.scored(split)
    if len(data) == 0:
        raise ConfigError(f"the {split} split of {run} is empty (data.kwargs.val_fraction may be 0); pick another --split")
    with torch.no_grad():
        probe = model(*(data[torch.arange(1)][k] for k in splits.input_keys))
    if not reads_memory(probe):
        raise ConfigError(f"model {cfg.model.name!r} reads no addressable memory; explain works for models whose output dict holds per-hop 'attention' (or MemNN's 'chosen'): memn2n, kvmemnn, memnn, memnn_am_ng_nl, or a model of your own that returns one")
    return cfg, splits, model


def is_capsule_run(run: str | Path) -> bool:
    """Whether ``run`` holds a capsule model (the family tag of its registered model), whose explanation is
    :func:`capsule_figures` rather than :func:`explain`."""
    return MODELS.tags(run_config(run).model.name).get("family") == "capsules"


VIEWPOINT_ANGLES = (-45.0, -30.0, -15.0, 0.0, 15.0, 30.0, 45.0)  # degrees: the rotations explain shows a matrix-capsule run


def capsule_figures(run: str | Path, index: int = 0, *, split: str = "test", checkpoint: str = "best", data_dir: str | None = None, out: str | Path | None = None, shown: int = 8) -> dict[str, Any]:
    """What a trained capsule network's capsules hold, for a run of yours, as PNGs in ``out`` (default
    ``RUN/explain``) with their record in ``capsules_<split>_<index>.json``.

    CapsNet (a decoder; also its MultiMNIST form, drawn with its top class's reconstruction), as ``overlooked
    demo capsules`` shows its own short training: the reconstructions of ``shown`` examples from ``index``
    (Sabour et al. 2017, Figure 3), the Figure-4 grid (each dimension of example ``index``'s predicted capsule
    moved by -0.25..0.25) and that example's coupling coefficients.

    Matrix capsules with EM routing (no decoder; Hinton et al. 2018): the class-capsule activations of the
    ``shown`` examples, the class layer's routing assignments of example ``index`` (mean over capsule types, per
    position of the last capsule grid), and a viewpoint sweep: example ``index`` rotated by
    :data:`VIEWPOINT_ANGLES`, with its predicted class capsule's 16 pose entries and activation at each angle
    (also in the record), the equivariance of pose and invariance of activation the paper argues for."""
    _check_split(split)
    cfg, splits, model = load_run(run, checkpoint=checkpoint, data_dir=data_dir)
    data = splits.scored(split)
    if not 0 <= index < len(data):
        raise ConfigError(f"example index {index} out of range: the {split} split of {run} has {len(data)} examples (0..{len(data) - 1})")
    rows = torch.arange(index, min(index + shown, len(data)))
    batch = data[rows]
    folder = _explain_folder(run, out)
    tag = f"{split}_{index}"
    if not hasattr(model, "decode"):
        with torch.no_grad():
            res = model(batch["image"])
        if "assignments" not in res or "poses" not in res:
            raise ConfigError(f"model {cfg.model.name!r} reports neither a reconstruction nor EM poses and assignments; capsule figures work for runs of capsnet, capsnet_multimnist and the matrix-capsule (EM) models")
        return _em_figures(run, checkpoint, split, model, batch, res, rows, folder, tag)
    from overlooked.capsules.demo import PERTURBATIONS, perturbation_grid
    from overlooked.plots.capsules import couplings_figure, perturbation_figure, reconstructions_figure

    with torch.no_grad():
        res = model(batch["image"])
    side, channels = model.image_size, model.in_channels
    recon = res["reconstruction"]
    if recon.dim() == 3:  # one reconstruction per chosen capsule: the top class's comes first
        recon = recon[:, 0]
    predicted = res["logits"].argmax(-1)
    label = batch.get("labels", batch["label"])
    first_label = int(label[0, 0]) if label.dim() > 1 else int(label[0])
    if label.dim() > 1:  # MultiMNIST: both digits against the two longest capsules (one label against the top class read a right second digit as an error)
        pairs = res["logits"].topk(label.shape[1], -1).indices.sort(-1).values
        shown_labels = ["+".join(map(str, sorted(r))) for r in label.tolist()]
        shown_predicted = ["+".join(map(str, r)) for r in pairs.tolist()]
    else:
        shown_labels, shown_predicted = label.tolist(), predicted.tolist()
    grid = math.isqrt(res["couplings"].shape[1] // model.primary.channels)  # primary capsule positions per side (6 for MNIST)
    figures = {
        "reconstructions": reconstructions_figure(batch["image"][:, 0].numpy(), recon.view(len(rows), channels, side, side)[:, 0].numpy(), shown_labels, shown_predicted, folder / f"capsules_reconstructions_{tag}.png"),
        "perturbations": perturbation_figure(perturbation_grid(model, res["poses"][0], int(predicted[0])).numpy(), PERTURBATIONS, folder / f"capsules_perturbations_{tag}.png",
                                             title=f"{split} example {int(rows[0])}, capsule of class {int(predicted[0])} (predicted): rows pose dimension 0-15, columns offset added"),
        "couplings": couplings_figure(res["couplings"][0].numpy(), grid, first_label, folder / f"capsules_couplings_{tag}.png", predicted=int(predicted[0])),
    }
    record = {"run": str(run), "checkpoint": checkpoint, "split": split, "rows": rows.tolist(), "predicted": predicted.tolist(), "figures": {k: str(v) for k, v in figures.items()}}
    if label.dim() > 1:
        record["predicted_digits"], record["labels"] = shown_predicted, shown_labels
    _write_json(folder / f"capsules_{tag}.json", record)
    return record


def _em_figures(run: str | Path, checkpoint: str, split: str, model: nn.Module, batch: dict[str, torch.Tensor], res: dict[str, torch.Tensor], rows: torch.Tensor, folder: Path, tag: str) -> dict[str, Any]:
    """:func:`capsule_figures` for a matrix-capsule (EM routing) model: activations, assignments, viewpoint sweep."""
    from overlooked.data.affnist import affine_matrices, apply_affine
    from overlooked.plots.capsules import activations_figure, couplings_figure, viewpoint_figure

    label = batch.get("labels", batch["label"])
    label = label[:, 0] if label.dim() > 1 else label
    predicted = res["logits"].argmax(-1)
    cls = int(predicted[0])
    image = batch["image"][:1]  # [1, C, S, S]
    angles = torch.tensor(VIEWPOINT_ANGLES, dtype=torch.float64)
    zero = torch.zeros_like(angles)
    views = apply_affine(image.expand(len(angles), *image.shape[1:]).contiguous(), affine_matrices({"rotation_deg": angles, "shear": zero, "scale_x": zero + 1, "scale_y": zero + 1, "translate_x_px": zero, "translate_y_px": zero}))
    with torch.no_grad():
        seen = model(views)
    poses, activations = seen["poses"][:, cls].double(), seen["logits"][:, cls].double()  # [A, 16], [A]
    assignments = res["assignments"][0]  # [H*W*C, K] in (row, column, type) order
    side = math.isqrt(assignments.shape[0] // model.classes.W.shape[0])
    by_type = assignments.view(side, side, -1, assignments.shape[-1]).permute(2, 0, 1, 3).reshape(assignments.shape)  # (type, row, column)
    figures = {
        "activations": activations_figure(res["logits"].double().numpy(), label.tolist(), predicted.tolist(), folder / f"capsules_activations_{tag}.png"),
        "assignments": couplings_figure(by_type.double().numpy(), side, int(label[0]), folder / f"capsules_assignments_{tag}.png", predicted=int(predicted[0]), what="assignment"),
        "viewpoint": viewpoint_figure(views[:, 0].double().numpy(), VIEWPOINT_ANGLES, poses.numpy(), activations.numpy(), cls, folder / f"capsules_viewpoint_{tag}.png"),
    }
    record = {
        "run": str(run), "checkpoint": checkpoint, "split": split, "rows": rows.tolist(), "predicted": predicted.tolist(),
        "viewpoint": {"class": cls, "angles_deg": list(VIEWPOINT_ANGLES), "predicted": seen["logits"].argmax(-1).tolist(), "activation": activations.tolist(), "pose": poses.tolist()},
        "figures": {k: str(v) for k, v in figures.items()},
    }
    _write_json(folder / f"capsules_{tag}.json", record)
    return record


def _explain_tag(cfg: ExperimentConfig, checkpoint: str, data_dir: str | None, data_overrides: list[str] | None) -> str:
    """The file-name part of an explanation that is not of the run's own data and best checkpoint: ``last_`` for
    the last checkpoint, ``data-<digest>_`` for other data (a digest of the data as resolved, the data folder
    included, so the same data however spelled gets one name and other data never replaces it)."""
    from overlooked.data.store import resolve_data_dir

    tag = "" if checkpoint == "best" else f"{checkpoint}_"
    if data_overrides:
        data = {"name": cfg.data.name, "kwargs": cfg.data.kwargs, "root": str(resolve_data_dir(data_dir or cfg.data_dir))}
        tag += "data-" + hashlib.sha1(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:8] + "_"
    return tag


def explain_stats(run: str | Path, *, task: int | None = None, split: str = "test", checkpoint: str = "best", data_dir: str | None = None, out: str | Path | None = None, data_overrides: list[str] | None = None) -> dict[str, Any]:
    """How a memory run's hops relate to bAbI's supporting facts, per task (only ``task`` if given)
    (:func:`overlooked.memory.explain.supporting_stats`); also written to ``supporting_<split>.json``
    (``supporting_<split>_task<T>.json``; on other data, ``data_overrides`` as :func:`load_run` takes them,
    ``supporting_data-<digest>_<split>...``; for the last checkpoint ``supporting_last_...``) in ``out``
    (default ``RUN/explain``)."""
    from overlooked.memory.explain import supporting_stats

    cfg, splits, model = _memory_run(run, split, checkpoint, data_dir, data_overrides)
    data = splits.scored(split)
    if task is not None:
        data = data.subset(_task_rows(data, task, split))
    stats = supporting_stats(model, data, splits.input_keys, batch_size=cfg.train.eval_batch_size)
    stats.update(run=str(run), split=split, checkpoint=checkpoint, data_overrides=list(data_overrides or []))
    folder = _explain_folder(run, out)
    tag = _explain_tag(cfg, checkpoint, data_dir, data_overrides)
    _write_json(folder / (f"supporting_{tag}{split}.json" if task is None else f"supporting_{tag}{split}_task{task}.json"), stats)
    return stats


def _task_rows(data: Any, task: int, split: str) -> torch.Tensor:
    """Rows of ``data`` (a bAbI split) that belong to ``task``; a clear error when there are none."""
    rows = torch.arange(len(data))[data.tensors["task"] == task]
    if len(rows) == 0:
        known = sorted(set(data.tensors["task"].tolist()))
        raise ConfigError(f"task {task} is not in the {split} split read (tasks {known}); pick one of those")
    return rows


def explain(
    run: str | Path,
    indices: list[int] | None = None,
    *,
    task: int | None = None,
    split: str = "test",
    checkpoint: str = "best",
    data_dir: str | None = None,
    out: str | Path | None = None,
    data_overrides: list[str] | None = None,
) -> list[dict[str, Any]]:
    """What a trained memory network read for some questions: story, per-hop addressing, supporting facts,
    answer and prediction (:mod:`overlooked.memory.explain`), one PNG per question plus ``explain.json``, which
    gathers every example explained into that folder (a later call adds to it; the same figure again replaces its entry).

    Args:
        run: a run folder of ``memn2n``, ``kvmemnn``, ``memnn`` or ``memnn_am_ng_nl`` on bAbI.
        indices: questions to show (default: the first); with ``task``, counted within that task.
        task: only questions of this bAbI task.
        split: ``train``, ``val`` or ``test``.
        checkpoint: ``best`` or ``last``.
        out: folder for the figures and ``explain.json`` (default ``RUN/explain``).
        data_overrides: ``data.*`` overrides (e.g. ``["data.tasks=[6]"]``) to explain questions of other data, read
            with the run's vocabulary and sizes as :func:`load_run` does; their figures' names carry
            ``data-<digest>_`` (and the last checkpoint's ``last_``), so they never replace the run's own.
    """
    from overlooked.memory.explain import explain_example

    cfg, splits, model = _memory_run(run, split, checkpoint, data_dir, data_overrides)
    data = splits.scored(split)
    rows = torch.arange(len(data)) if task is None else _task_rows(data, task, split)
    indices = [0] if not indices else list(indices)
    bad = [i for i in indices if not 0 <= i < len(rows)]
    if bad:
        where = f"task {task} of the {split} split" if task is not None else f"the {split} split"
        raise ConfigError(f"question index {bad} out of range: {where} has {len(rows)} questions (0..{len(rows) - 1})")
    folder = _explain_folder(run, out)
    tag = _explain_tag(cfg, checkpoint, data_dir, data_overrides) + (f"{split}_task{task}_" if task is not None else f"{split}_")
    shown = []
    for i in indices:
        row = int(rows[i])
        example = explain_example(model, data, splits.input_keys, splits.meta["vocab"], row, folder / f"attention_{tag}{i}.png", split_name=split)
        shown.append({**example, "checkpoint": checkpoint, "task_index": i if task is not None else example.get("task_index"), "data_overrides": list(data_overrides or [])})
    # explain.json gathers every example explained into this folder (one entry per figure, the newest kept), as
    # the figures themselves stay: a later call adds to it instead of dropping what an earlier one showed
    record = folder / "explain.json"
    earlier: list[dict[str, Any]] = []
    if record.is_file():
        try:
            earlier = list(json.loads(record.read_text()).get("examples", []))
        except (ValueError, AttributeError, TypeError):
            _set_aside(record, "explain.json.unreadable")
    shown = [{**e, "run": str(run)} for e in shown]
    figures = {Path(e["figure"]).name for e in shown if e.get("figure")}
    kept = [e for e in earlier if isinstance(e, dict) and Path(str(e.get("figure"))).name not in figures]
    _write_json(record, {"run": str(run), "examples": kept + shown})
    return shown


def evaluate(run: str | Path, *, split: str = "test", checkpoint: str = "best", data_dir: str | None = None, data_overrides: list[str] | None = None, limit: int | None = -1, device: str | None = None) -> dict[str, Any]:
    """Evaluate a run's checkpoint (``best`` or ``last``) on one split, of the run's data or of the data
    ``data_overrides`` name (see :func:`load_run`). ``limit``: the first N examples of the split; the default
    (-1) takes the run's own ``train.eval_limit`` on its own data, so the numbers are those its summary
    reports, and every example on other data; None: all. ``device``: where to run (default: the run's)."""
    from overlooked.train.evaluate import evaluate as _evaluate

    cfg, splits, model = _load_for_split(run, split, checkpoint, data_dir, data_overrides)
    objective = build_objective(cfg, splits)
    encoder = build_encoder(cfg)
    metric = splits.meta.get("metric", "top1")  # MultiMNIST: both digits correct
    data = splits.scored(split)
    if limit == -1:
        limit = None if data_overrides else cfg.train.eval_limit
    if limit is not None:
        if limit < 1:
            raise ConfigError(f"limit must be a positive number of examples or None (all), got {limit}")
        data = data.subset(torch.arange(min(limit, len(data))))
    given = device is not None
    device = device or cfg.train.device
    try:
        check_device(device, "--device" if given else "the run's train.device")
    except ConfigError as exc:
        raise ConfigError(f"{exc}" + ("" if given else " (device='cpu' in Python)")) from None
    model = model.to(device)  # load_run builds it on the CPU; the batches go to `device`
    run_on = functools.partial(_evaluate, model, input_keys=splits.input_keys, target_key=splits.target_key, objective=objective, batch_size=cfg.train.eval_batch_size, device=device, encoder=encoder, group_key=splits.meta.get("group_key"), bf16=cfg.train.bf16, seed=cfg.train.seed, metric=metric)
    if data_overrides and len(data):
        _probe_other_data(run, cfg, data_overrides, lambda: run_on(data.subset(torch.arange(min(2, len(data))))))
    res = run_on(data)
    weights = "as trained" if cfg.train.ema_decay is None else f"exponential moving average of the weights, decay {cfg.train.ema_decay}"
    return {"run": str(run), "split": split, "checkpoint": checkpoint, "weights": weights, "examples": len(data), "data": {"name": cfg.data.name, "kwargs": cfg.data.kwargs}, "data_overrides": list(data_overrides or []), **res, "error": error_percent(res["accuracy"]), **spiking_energy(model, splits, encoder, examples=min(ENERGY_EXAMPLES, len(data)), split=split)}


def _probe_other_data(run: str | Path, cfg: ExperimentConfig, data_overrides: list[str], probe: Any) -> None:
    """Score two examples of the other data first: a model that cannot read them (another layout, another
    encoding) fails here, and that failure, not a genuine error of the full pass, is named as a data mismatch.
    Running out of memory is not a mismatch and is raised as it is."""
    try:
        probe()
    except (RuntimeError, ValueError, IndexError) as exc:
        text = str(exc).strip()
        if isinstance(exc, (OverlookedError, torch.cuda.OutOfMemoryError)) or "out of memory" in text.lower() or "can't allocate memory" in text:
            raise
        first = text.splitlines()[0] if text else type(exc).__name__
        own = run_config(run).data
        raise InputError(
            f"the model of {run} ({cfg.model.name}, trained on {own.name} {own.kwargs}) cannot read the data of {list(data_overrides)}: "
            f"{type(exc).__name__}: {first}. Evaluate it on data laid out as its training data was (the same kind of input, "
            "shapes and encoding), or train a model for this data"
        ) from exc


RESPLIT_KEYS = ("seed", "val_fraction", "val_split")  # data.kwargs that decide which training examples are held out


def _check_no_resplit(cfg: ExperimentConfig, split: str, data_overrides: list[str]) -> None:
    """Refuse scoring the train or validation split of the run's own dataset split another way: a changed
    ``seed``/``val_fraction``/``val_split`` moves training examples into "val" (a review counted 5,380 of 6,000)."""
    if split == "test":
        return
    new = apply_overrides(cfg, data_overrides)  # as resolved: a whole data.kwargs={...} replaces the kwargs (load_run refuses data={...})
    if new.data.name != cfg.data.name:
        return  # another dataset: its splits are not the run's
    params = inspect.signature(DATASETS.get(cfg.data.name)).parameters
    defaults = {key: params[key].default for key in RESPLIT_KEYS if key in params}  # the builder's default when unset
    had = {key: cfg.data.kwargs.get(key, default) for key, default in defaults.items()}
    now = {key: new.data.kwargs.get(key, default) for key, default in defaults.items()}
    deciding = set(had)
    if DATASETS.tags(cfg.data.name).get("seed_regenerates") or now.get("val_split") == "last":
        deciding.discard("seed")  # the seed draws the whole dataset, or does not choose the held-out part at all
    changed = [f"data.kwargs.{key}" for key in RESPLIT_KEYS if key in deciding and had[key] != now[key]]
    if changed:
        raise ConfigError(
            f"--split {split} with {', '.join(changed)} changed splits the run's training files another way, so that split "
            "would hold examples the model trained on; use --split test, or leave the split settings as the run had them"
        )


def load(name_or_path: str, overrides: list[str] | None = None) -> ExperimentConfig:
    """Load a config (packaged name or YAML path) with overrides, fully checked."""
    cfg = load_config(name_or_path, overrides)
    check_config(cfg)
    return cfg


def model_warnings(cfg: ExperimentConfig) -> list[warnings.WarningMessage]:
    """The :class:`ConfigWarning` s building ``cfg``'s model gives (a setting with no effect, e.g. MemN2N's
    ``pe_length`` under ``encoding='bow'``), without the data: the model is built on the meta device (nothing
    allocated) from the config's own arguments, the dataset's facts left at the builder's defaults. A model
    that cannot be built that way gives none here (training builds it with the data and says what is wrong);
    warnings of other kinds are dropped, as they may come from the defaults standing in for the data.

    >>> cfg = load("memn2n_babi1k", ["model.kwargs.encoding=bow", "model.kwargs.pe_length=padded"])
    >>> [str(w.message).split(" (")[0] for w in model_warnings(cfg)]
    ["MemN2N pe_length='padded'"]
    """
    catalog.load_all()
    with warnings.catch_warnings(record=True) as caught, torch.device("meta"):
        warnings.simplefilter("always")
        try:
            MODELS.create(cfg.model.name, **cfg.model.kwargs)
        except Exception:  # noqa: BLE001 - a builder that needs the data's facts: training checks it with them
            return []
    return [w for w in caught if issubclass(w.category, ConfigWarning)]


def steps_budget(cfg: ExperimentConfig, n_train: int) -> int:
    """Optimiser steps the config will take on ``n_train`` examples."""
    per_epoch = math.ceil(n_train / cfg.train.batch_size)
    total = cfg.train.epochs * per_epoch
    return total if cfg.train.max_steps is None else min(total, cfg.train.max_steps)


def figure_line(fig: dict[str, Any]) -> str:
    """One printed line for a benchmark figure; a rate timed over repeats also names its fastest repeat, since
    on a shared machine single repeats scatter.

    >>> figure_line({"name": "train", "value": 12000.0, "unit": "stories/s", "median_s": 0.6, "min_s": 0.5, "repeats": 5})
    'train: 12000 stories/s (median of 5 timed repeats; fastest 14,400)'
    >>> figure_line({"name": "spikes equal", "value": 1.0, "unit": "%"})
    'spikes equal: 1 %'
    """
    line = f"{fig['name']}: {fig['value']:.0f} {fig['unit']}" if fig["value"] >= 100 else f"{fig['name']}: {fig['value']:.3g} {fig['unit']}"
    if fig["unit"].endswith("/s") and fig.get("min_s") and fig.get("median_s") and fig.get("repeats", 1) > 1:
        line += f" (median of {fig['repeats']} timed repeats; fastest {fig['value'] * fig['median_s'] / fig['min_s']:,.0f})"
    return line


def bench(family: str = "baselines", *, out: str | Path | None = None, quick: bool = False, device: str = "cpu", data_dir: str | None = None) -> tuple[Path, list[dict[str, Any]]]:
    """Run the benchmark ``family``; print one line per figure and write them as JSON into a run folder."""
    catalog.load_all()
    from overlooked.registry import BENCHMARKS

    kwargs: dict[str, Any] = {"quick": quick}
    accepted = BENCHMARKS.accepted_kwargs(family) or []
    if "device" in accepted:
        check_device(device, "--device")  # before a benchmark builds anything there (a raw CUDA assertion before)
        kwargs["device"] = device
    elif device != "cpu":  # it would time the CPU while environment.json named the device
        raise OverlookedError(f"bench {family} runs on the CPU only; device={device!r} is for the benchmarks that take one ({', '.join(n for n in BENCHMARKS.names() if 'device' in (BENCHMARKS.accepted_kwargs(n) or []))})")
    if "data_dir" in accepted:
        kwargs["data_dir"] = data_dir
    figures = BENCHMARKS.create(family, **kwargs)
    path = new_run_dir(out or "runs", f"bench-{family}")
    for fig in figures:
        print(figure_line(fig))
    _write_json(path / "bench.json", {"family": family, "quick": quick, "figures": figures})
    _write_json(path / "environment.json", environment(device))
    print(f"run folder: {path}")
    return path, figures


def run_progress(run: str | Path) -> dict[str, Any]:
    """How far an unfinished run has come, from its folder alone (config.yaml, metrics.jsonl and the readable
    ``checkpoints/last.json``; no data, no model): ``step`` / ``total_steps``, ``epoch`` / ``epochs``,
    ``examples_seen`` / ``total_examples``, the ``last`` validation record, the ``best_step`` and
    ``best_metric`` so far (``select_metric``), ``checkpoint_step`` (where ``--resume`` would continue),
    ``stopped_by_clock`` (its last checkpoint was written by a ``train.max_minutes`` stop), ``minutes_left`` at
    the last record's speed, ``updated`` (when metrics.jsonl was last written, UTC), ``finished`` and
    ``training_now`` (a process holds the folder's training lock; None where that cannot be known).
    A --repeats or --each folder gives ``runs``: each seed's or value's folder with its own progress."""
    import datetime

    from overlooked.train.runlock import is_training

    run = Path(run)
    cfg = run_config(run)
    out: dict[str, Any] = {"name": cfg.name, "model": cfg.model.name, "dataset": cfg.data.name}
    out["training_now"] = is_training(run)  # a process holds its training lock (None: unknown on this system)
    # a summary with a process training the folder is a stopped run's, being resumed: not finished
    out["finished"] = (run / "summary.json").is_file() and not out["training_now"]
    subs = sorted((p for p in run.iterdir() if p.is_dir() and not p.name.startswith(".") and (p / "config.yaml").is_file()), key=lambda p: natural_key(p.name))
    if subs and not (run / "metrics.jsonl").exists():  # a --repeats / --each folder: its runs are inside
        out["runs"] = {p.name: run_progress(p) for p in subs}
        return out
    records = []
    metrics = run / "metrics.jsonl"
    if metrics.is_file():
        for line in metrics.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by a kill: the next resume drops it
                continue
            if isinstance(record, dict) and isinstance(record.get("step"), int):
                records.append(record)
        out["updated"] = datetime.datetime.fromtimestamp(metrics.stat().st_mtime, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    last_doc = run / "checkpoints" / "last.json"
    state: dict[str, Any] = {}
    if last_doc.is_file():
        try:
            doc = read_run_file(last_doc, lambda d: isinstance(d, dict), "a checkpoint's readable record")
            state = doc.get("state", {}) if isinstance(doc.get("state"), dict) else {}
        except OverlookedError as exc:  # progress from the records alone; the checkpoint itself is checked by a resume
            out["checkpoint_problem"] = str(exc)
    number = lambda x: x if isinstance(x, int) and not isinstance(x, bool) else 0  # noqa: E731  (a damaged field counts as none)
    state = {k: v for k, v in state.items() if k not in ("step", "examples_seen", "best_step") or number(v) == v}
    last = records[-1] if records else {}
    step = max(number(last.get("step")), number(state.get("step")))
    seen = max(number(last.get("examples_seen")), number(state.get("examples_seen")))
    # a record's epoch is epochs done plus the share of the current one trained, so step / epoch is the epoch's length
    timed = [r for r in records if isinstance(r.get("epoch"), (int, float)) and r["epoch"] > 0]
    steps_per_epoch = round(timed[-1]["step"] / timed[-1]["epoch"]) if timed else None
    total = None
    if steps_per_epoch:
        total = round(cfg.train.epochs * steps_per_epoch)
        if cfg.train.max_steps is not None:
            total = min(total, cfg.train.max_steps)
    per_step = seen / step if step else None
    whole = [r for r in records if isinstance(r.get("epoch"), int) and r["epoch"] > 0 and isinstance(r.get("examples_seen"), int)]
    per_epoch = whole[-1]["examples_seen"] / whole[-1]["epoch"] if whole else None  # exact: an epoch's last batch may be short
    if per_epoch and cfg.train.max_steps is None:
        total_examples = round(cfg.train.epochs * per_epoch)
    else:
        total_examples = round(total * per_step) if total and per_step else None
    epoch = last.get("epoch", state.get("epoch"))
    if number(state.get("step")) > number(last.get("step")) and steps_per_epoch and isinstance(state.get("epoch"), int):
        epoch = state["epoch"] + number(state.get("batch_in_epoch")) / steps_per_epoch  # the checkpoint is newer than the last record
    out.update(
        step=step, total_steps=total, epochs=cfg.train.epochs, examples_seen=seen,
        epoch=epoch, last=last, select_metric=cfg.train.select_metric,
        total_examples=total_examples,
        best_step=state.get("best_step"), best_metric=state.get("best_metric"),
        checkpoint_step=state.get("step"), stopped_by_clock=bool(state.get("stop_pass")),
    )
    speed = last.get("examples_per_s")
    if total and per_step and isinstance(speed, (int, float)) and speed > 0:
        out["minutes_left"] = (total - step) * per_step / speed / 60.0
    return out


def read_summary(run: str | Path) -> dict[str, Any]:
    """The ``summary.json`` of a finished run folder (what ``overlooked train`` reported), as a dict.

    Raises:
        OverlookedError: the folder does not exist, has no summary (an unfinished run, or not a run folder),
            or its summary is not a JSON object (a damaged folder).
    """
    run = Path(run)
    if not run.is_dir():
        raise OverlookedError(f"{run} does not exist; pass finished run folders (the folders `overlooked train` printed)")
    if not (run / "summary.json").is_file():
        raise OverlookedError(f"{run} has no summary.json: it is unfinished or not a run folder; pass finished run folders")
    try:
        summary = json.loads((run / "summary.json").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise OverlookedError(f"{run / 'summary.json'} is not valid JSON ({exc}); the run folder is damaged") from None
    if not isinstance(summary, dict):
        raise OverlookedError(f"{run / 'summary.json'} holds a {type(summary).__name__}, not the object a run writes; the run folder is damaged")
    from overlooked.bench.report import summary_problems

    problems = summary_problems(summary)
    if problems:
        raise OverlookedError(f"{run / 'summary.json'} is damaged or edited: {'; '.join(problems)}; restore it from git or re-run")
    return summary


def _recipe_differences(rows: list[dict[str, Any]]) -> list[str]:
    """Lines naming where compared rows differ in augmentation or weight averaging (``augment``,
    ``train.ema_decay`` in each run's config.yaml): parts of a row's recipe the fair-comparison rule leaves to the
    table's prose, printed so that the prose cannot miss them. A row whose config.yaml is missing, damaged or a
    conversion record reads "unknown" (a note under the table never stops it)."""
    recipes: dict[str, tuple[str, str]] = {}
    for row in rows:
        try:
            cfg = run_config(row["run"])
        except (OverlookedError, ConfigError):
            recipes[row["run"]] = ("unknown", "unknown")
            continue
        aug = "none" if cfg.augment is None else f"{cfg.augment.name} {json.dumps(cfg.augment.kwargs, sort_keys=True)}"
        recipes[row["run"]] = (aug, "none" if cfg.train.ema_decay is None else str(cfg.train.ema_decay))
    lines = []
    for i, what in enumerate(("augmentation (augment)", "weight averaging (train.ema_decay)")):
        if len({r[i] for r in recipes.values()}) > 1:
            lines.append(f"recipes differ in {what}, which the rule leaves to the table's prose: " + "; ".join(f"{run}: {r[i]}" for run, r in recipes.items()))
    return lines


def _trial_groups(runs: list[str | Path]) -> list[list[str]]:
    """``--runs`` items as rows: ``"A,B,C"`` is one row's trials; an item that is an existing folder is one run
    even when its name holds a comma."""
    groups = []
    for item in map(str, runs):
        if Path(item).is_dir() or "," not in item:
            groups.append([str(Path(item))])
            continue
        members = item.split(",")
        if "" in members:
            raise OverlookedError(f"compare: {item!r} has an empty name between commas; write a row's trials as A,B,C")
        groups.append([str(Path(m)) for m in members])
    return groups


def _chosen_trial(group: list[str], max_examples: int) -> tuple[dict[str, Any], str, list[str]]:
    """The summary of the trial with the highest validation accuracy among ``group`` (run folders of one
    model's hyper-parameter trials; ties go to the first listed), with ``trials`` = the group's size and
    ``candidates`` = every trial's validation accuracy; its run folder; and the ways the group breaks the
    fair-comparison rule (a trial over the budget, counted as :func:`check_fair` counts it; trials on other
    splits or scored on other numbers of validation examples), which ``compare`` refuses or, under
    ``--unfair``, names. Test accuracy never enters the choice.

    Raises:
        OverlookedError: a trial records no single finite validation accuracy (a ``--repeats`` run: list one
            run per setting), the trials are of different models, or one records more trials than listed.
    """
    from overlooked.bench.fair import examples_counted

    summaries = {run: read_summary(run) for run in group}
    for run, s in summaries.items():
        val = s.get("val_accuracy")
        if isinstance(val, bool) or not isinstance(val, (int, float)) or not math.isfinite(val):
            raise OverlookedError(f"compare: trial {run} records no single finite val_accuracy (got {val!r}: a --repeats run, no validation split, "
                                  "or a damaged summary); the trials of a row (A,B,...) are chosen on validation: list one single run per setting")
    models = {run: s.get("model") for run, s in summaries.items()}
    if len(set(models.values())) > 1:
        raise OverlookedError(f"compare: the trials {', '.join(group)} are of different models ({', '.join(f'{r}: {m}' for r, m in models.items())}); "
                              "a row's trials are settings of one model: give each model its own row")
    over = {run: s["trials"] for run, s in summaries.items() if isinstance(s.get("trials"), int) and s["trials"] > len(group)}
    if over:
        raise OverlookedError(f"compare: {', '.join(f'{r} records trials={t}' for r, t in over.items())}, more than the {len(group)} listed; "
                              "list every trial of the row (the choice must be made among all of them)")
    problems = [f"trial {run} saw {examples_counted(s):,} training examples, over the budget of {max_examples:,}" for run, s in summaries.items() if examples_counted(s) > max_examples]
    for field, what in (("data_fingerprint", "data splits"), ("val_examples", "numbers of validation examples (train.eval_limit differs)")):
        recorded = {s.get(field) for s in summaries.values() if field == "data_fingerprint" or s.get(field) is not None}  # older summaries lack val_examples
        if len(recorded) > 1:
            problems.append(f"the trials of one row differ in {what} ({', '.join(f'{r}: {s.get(field)}' for r, s in summaries.items())})")
    best = max(range(len(group)), key=lambda i: (summaries[group[i]]["val_accuracy"], -i))
    run = group[best]
    return {**summaries[run], "trials": len(group), "candidates": {r: float(s["val_accuracy"]) for r, s in summaries.items()}}, run, problems


def compare(runs: list[str | Path], max_examples: int, *, trials: dict[str, int] | None = None, unfair: bool = False) -> list[dict[str, Any]]:
    """A same-budget comparison table of finished runs, refused unless it obeys the fair-comparison rule.

    Each row reports accuracy, parameters, FLOPs per example, examples seen and wall time from the run's
    ``summary.json``; :func:`overlooked.bench.fair.check_fair` raises when the rows differ in data split or
    number of trials, a row saw more than ``max_examples`` training examples, or lacks a required field.
    ``trials`` (run folder -> count) states the hyper-parameter trials of runs whose summary does not record
    them, or records fewer than were tried on the split (settings run in other folders first); the table says
    where it restates a recorded count. ``unfair``: print the table with the broken conditions named beneath it instead of refusing it.
    A ``runs`` item ``"A,B,C"`` is one row's hyper-parameter trials: the row is the trial with the highest
    validation accuracy, counted as that many trials (``--trials`` may name the item as written).
    """
    from overlooked.bench.fair import UnfairComparisonError, check_fair

    if not is_count(max_examples):
        raise OverlookedError(f"max_examples (--max-examples) is the shared budget of training examples, a number >= 1; got {max_examples!r}")
    groups = _trial_groups(runs)
    members = [m for g in groups for m in g]
    twice = repeated(members)
    if twice:
        raise OverlookedError(f"compare: {', '.join(twice)} named more than once; name each run once")
    digests: dict[str, str] = {}  # a run copied under another name would be a second, identical row
    for m in members:
        summary = Path(m) / "summary.json"
        if summary.is_file():
            digest = hashlib.sha256(summary.read_bytes()).hexdigest()
            if digest in digests:
                raise OverlookedError(f"compare: {digests[digest]} and {m} hold the same summary.json byte for byte (one is a copy of the other); name the run once")
            digests[digest] = m
    rows, chosen_lines, group_breaches = [], [], []
    for group in groups:
        s, run, problems = _chosen_trial(group, max_examples) if len(group) > 1 else (read_summary(group[0]), group[0], [])
        group_breaches += problems
        accuracy = s.get("test_accuracy", s.get("test_accuracy_mean"))
        if accuracy is None:
            raise OverlookedError(f"{Path(run) / 'summary.json'} reports no test_accuracy (nor test_accuracy_mean); compare needs finished training runs")
        row = {**s, "run": run, "test_accuracy": accuracy, "group": ",".join(group)}
        if len(group) > 1:
            chosen_lines.append(f"chosen on validation among {len(group)} trials: " + "; ".join(f"{r} val {v:.4f}{' <- chosen' if r == run else ''}" for r, v in s["candidates"].items()))
        rows.append(row)
    stated = {",".join(_trial_groups([k])[0]): v for k, v in (trials or {}).items()}  # read as --runs reads its items
    grouped = {m: ",".join(g) for g in groups if len(g) > 1 for m in g}
    inside = sorted(k for k in stated if k in grouped)
    if inside:
        raise OverlookedError(f"compare: --trials names {', '.join(inside)}, a trial of the row {grouped[inside[0]]}; name the row as written: --trials {grouped[inside[0]]}=N")
    unknown = sorted(set(stated) - {row["run"] for row in rows} - {row["group"] for row in rows})
    if unknown:
        raise OverlookedError(f"compare: --trials names {', '.join(unknown)}, which --runs does not list; name each as in --runs")
    restated = []
    for row in rows:
        key = row["group"] if row["group"] in stated else row["run"]
        if key in stated:
            if not is_count(stated[key]):
                raise OverlookedError(f"compare: --trials {key}={stated[key]!r} must be a whole number >= 1")
            if isinstance(row.get("trials"), int) and stated[key] < row["trials"]:  # --trials adds settings tried elsewhere, never removes
                raise OverlookedError(
                    f"compare: --trials {key}={stated[key]} is fewer than the {row['trials']} trials "
                    f"{'the row chose among' if key in grouped.values() else 'its summary records'}; --trials can only add settings tried "
                    f"elsewhere on this split (state {row['trials']} or more)"
                )
            if row.get("trials") is not None and row["trials"] != stated[key]:  # e.g. settings tried in earlier folders
                restated.append(f"{key}: {'its trials count' if key in grouped.values() else 'its summary records'} trials={row['trials']}, --trials states {stated[key]}")
            row["trials"] = stated[key]
    found = list(group_breaches)
    try:
        check_fair(rows, max_examples)
    except UnfairComparisonError as exc:
        found.append(str(exc))
    if found and not unfair:
        raise UnfairComparisonError("; ".join(found))
    breaches = "; ".join(found) or None
    print(f"{'model':<20} {'test acc':>8} {'params':>11} {'FLOPs/ex':>12} {'examples':>10} {'seeds':>5} {'wall s':>8}  run  (examples: per seed; wall s: all seeds)")
    def count(value: Any) -> str:  # under --unfair a row may lack a field check_fair named
        return "unknown" if value is None else f"{round(value):,}"

    for r in rows:
        print(f"{r.get('model', '?'):<20} {r['test_accuracy']:>8.4f} {count(r.get('params')):>11} {count(r.get('flops_per_example')):>12} {count(r.get('examples_seen')):>10} {r.get('repeats', 1):>5} {count(r.get('wall_time_s')):>8}  {r['run']}")
    for line in chosen_lines:
        print(line)
    for line in _recipe_differences(rows):
        print(line)
    for note in restated:
        print(f"trials restated: {note}")
    if breaches:
        print(f"NOT a fair comparison (docs/fair_comparison.md): {breaches}")
    return rows


def ensure_data(needs: dict[str, list[str] | None], data_dir: str | None) -> str:
    """Make sure the files a job needs are present; download them only when no data folder was named.

    ``needs`` maps a dataset name to the files (relative to the data root) the job reads, or None for all.

    With ``--data-dir`` or ``$OVERLOOKED_DATA`` set, missing data is an error that says how to get it; with
    neither, the data is fetched into ``~/.cache/overlooked`` from the official sources.
    """
    import os

    from overlooked.data import store

    download = data_dir is None and not os.environ.get("OVERLOOKED_DATA")
    root = store.resolve_data_dir(data_dir)
    for name, files in needs.items():
        store.ensure(name, root, download=download, files=files)
    return str(root)


def demo(family: str = "all", *, out: str | Path | None = None, data_dir: str | None = None) -> tuple[Path, dict[str, Any]]:
    """Run the registered demos (all, or one family's) into one run folder and print a summary table."""
    catalog.load_all()
    from overlooked.registry import DEMOS

    names = DEMOS.names() if family == "all" else [family]
    for name in names:
        DEMOS.get(name)  # unknown names fail before any work
    needed: dict[str, list[str] | None] = {}
    for name in names:
        for dataset, files in DEMOS.tags(name).get("datasets", {}).items():
            needed[dataset] = None if files is None or needed.get(dataset, []) is None else sorted({*needed.get(dataset, []), *files})
    root = ensure_data(needed, data_dir)
    path, made = claim_run_dir(out or "runs", "demo")
    results = {}
    try:
        for name in names:
            print(f"== demo {name}: {DEMOS.get(name).__doc__.strip().splitlines()[0]}")
            results[name] = DEMOS.create(name, run_dir=path, data_dir=root)
    except BaseException:
        _remove_empty(made)  # a demo that failed before writing anything (a corrupt data file) leaves no empty folder
        raise
    _write_json(path / "summary.json", results)
    print("\nsummary")
    print(f"{'demo':<14} {'what':<48} {'test acc':>8} {'time s':>7}")
    for name, res in results.items():
        print(f"{name:<14} {res.get('what', ''):<48} {res.get('test_accuracy', float('nan')):>8.4f} {res.get('wall_time_s', float('nan')):>7.1f}")
    print(f"run folder: {path}")
    return path, results


def crossover_figure(bench_roots: list[Path], figures: Path) -> list[Path]:
    """``figures/spiking_event_crossover.png`` from the newest committed ``bench.json`` (by folder name, which
    starts with the date) that holds the event-driven crossover rows; none when no bench measured it."""
    from overlooked.plots.spiking_speed import event_crossover_figure

    for bench in sorted((p for root in bench_roots for p in root.glob("*/bench.json")), key=lambda p: p.parent.name, reverse=True):
        record = read_run_file(bench)  # each file read once, newest first; a damaged one is named
        if not isinstance(record, dict):
            raise OverlookedError(f"{bench} is not a bench record (a JSON object with figures); restore it from git or delete it")
        rows = record.get("figures", [])
        if any("crossover" in str(r.get("name", "")) for r in rows):
            return [event_crossover_figure(rows, figures / "spiking_event_crossover.png")]
    return []


def report(runs: list[str] | None = None, output: str | Path = "docs/results.md", force: bool = False) -> list[Path]:
    """Regenerate ``docs/results.md`` (``output``, a ``.md`` file) and ``results.html`` beside it from committed
    run summaries (default ``results/runs``). A page there that this command did not write, or a PNG in
    ``figures/`` beside it that no overlooked command wrote and a figure of the report would replace, is kept
    (and the report refused) unless ``force``."""
    from overlooked.bench.arena import render_arenas, render_figure_index
    from overlooked.bench.html import render_html
    from overlooked.bench.report import collect_runs, convert_figures, load_references, render_results
    from overlooked.plots.common import written_by_overlooked

    output = Path(output)
    if output.suffix != ".md" or output.is_dir():
        raise OverlookedError(f"--output {output}: name a Markdown file (.md), e.g. docs/results.md; the HTML page (.html) and figures/ are written beside it")
    _missing_dirs(output.parent, "--output")  # a file in the way, said before figures/ is written beside it
    for target in (output, output.with_suffix(".html")):
        if target.is_file() and not force and not _written_by_report(target):
            raise OverlookedError(f"{target} exists and was not written by `overlooked report`; refusing to overwrite it: name another --output, or pass --force")
    roots = [Path(r) for r in (runs or ["results/runs"])]
    resolved = [r.resolve() for r in roots]
    same = set(repeated(resolved))
    twice = sorted({str(r) for r, q in zip(roots, resolved) if q in same})
    if twice:
        raise OverlookedError(f"--runs names {', '.join(twice)} more than once (as the same folder); name each folder once")
    for root in roots:
        if not root.is_dir():
            raise OverlookedError(f"--runs {root}: no such folder; it takes folders that hold run folders (default results/runs)")
        if (root / "summary.json").is_file():
            raise OverlookedError(f"--runs {root} is a run folder itself; pass the folder that holds run folders (e.g. {root.parent})")
    # Published numbers, benchmark records and arena suites are read beside the first runs folder, as in
    # results/ (references.yaml, bench/, suites/); a folder elsewhere without them gives a report without them.
    beside = roots[0].parent
    absent = [name for name in ("references.yaml", "bench", "suites") if not (beside / name).exists()]
    if absent:
        print(f"report: {beside} has no {', '.join(absent)}: the report leaves out published numbers, benchmarks or arenas accordingly")
    refs = load_references(beside / "references.yaml")
    benches = [b for b in [beside / "bench"] if b.is_dir()]
    figures = output.parent / "figures"
    # PNGs in figures/ that no overlooked command wrote (a user's own, or copied from elsewhere): kept as
    # they are; if a figure of this report has the same name, the file is put back and the report refused.
    foreign = {} if force or not figures.is_dir() else {p.resolve(): p.read_bytes() for p in figures.glob("*.png") if not written_by_overlooked(p)}
    collected = collect_runs(roots)  # read every summary once
    if not collected:
        raise OverlookedError(f"--runs {', '.join(map(str, roots))}: no run folders (folders with a summary.json) inside; nothing to report")
    written = babi_figures(collected, refs, figures) + energy_figure(collected, figures)
    written += convert_figures(collected, figures)  # ANN-to-SNN accuracy against T
    written += paper_scale_figures(collected, figures)  # every full MNIST run: accuracy against FLOPs
    written += crossover_figure(benches, figures)  # the event-driven crossover of the latest spiking bench that measured it
    default = [Path("results/runs")]
    source = None if [r.resolve() for r in roots] == [d.resolve() for d in default] else ", ".join(f"`{r}`" for r in roots)
    text = render_results(collected, refs, benches, source)
    arena_figures: list[Path] = []
    extra = render_arenas(roots[0].parent / "suites", figures, arena_figures)
    written += arena_figures
    clashes = sorted({p for p in written if p.resolve() in foreign})
    if clashes:
        for path in clashes:
            path.write_bytes(foreign[path.resolve()])
        names = ", ".join(str(p) for p in clashes[:3]) + (f" and {len(clashes) - 3} more PNGs there" if len(clashes) > 3 else "")
        raise OverlookedError(f"report: {names} existed and {'was' if len(clashes) == 1 else 'were'} not written by overlooked (no 'Software: overlooked' "
                              f"text in the PNG); kept as {'it was' if len(clashes) == 1 else 'they were'}, and {output} not written: move "
                              f"{'it' if len(clashes) == 1 else 'them'} away, name another --output, or pass --force to overwrite")
    extra += render_figure_index(figures, output.parent, written)
    if extra:
        text = text.rstrip("\n") + "\n\n" + "\n".join(extra).rstrip("\n") + "\n"
    _make_dirs(output.parent, "--output")
    try:
        html_text = render_html(text, output.parent)  # before either page is written: a broken image leaves both as they were
    except FileNotFoundError as exc:
        raise OverlookedError(f"report: {exc}; neither {output} nor its .html was written") from None
    output.write_text(text)
    written = [output, *written]
    page = output.with_suffix(".html")  # the single self-contained page: docs/results.html
    page.write_text(html_text)
    return [*written, page]


def _written_by_report(path: Path) -> bool:
    """Whether ``path`` is a page ``overlooked report`` wrote (its header names the command)."""
    with open(path, "rb") as fh:
        head = fh.read(16384).decode("utf-8", errors="replace")
    return "Generated by `overlooked report`" in head or "Generated by <code>overlooked report</code>" in head


def figure_labels(runs: list[Any], tag: Callable[[Any], str] = lambda run: "") -> dict[Path, str]:
    """A label per run folder for the figures: the run's config name and ``tag(run)`` (e.g. a converted run's
    norm), or, where two runs share that, the folder's name without its date stamp (e.g.
    ``snn_mlp_mnist_400steps``), the whole folder name where even that repeats, and its path where two roots
    hold folders of one name.

    >>> from types import SimpleNamespace as R
    >>> runs = [R(folder=Path("a-20261128-034743"), config={"name": "a"}, summary={}), R(folder=Path("a_short-20261206-135409"), config={"name": "a"}, summary={})]
    >>> sorted(figure_labels(runs).values())
    ['a', 'a_short']
    """
    from collections import Counter

    labels = {run.folder: " ".join(filter(None, [run.config.get("name") or run.summary.get("name") or run.folder.name, tag(run)])) for run in runs}
    for fallback in (lambda f: re.sub(r"-\d{8}-\d{6}$", "", f.name), lambda f: f.name, str):  # each only where the last still repeats
        counts = Counter(labels.values())
        labels = {f: (fallback(f) if counts[v] > 1 else v) for f, v in labels.items()}
    return labels


def paper_scale_figures(runs: list[Any], folder: Path, datasets: tuple[str, ...] = ("mnist",)) -> list[Path]:
    """Accuracy against forward FLOPs per example of every committed (full-budget) run on ``datasets``: the
    arena at the runs' own budgets, one figure per dataset (``docs/figures/runs_<dataset>_accuracy_flops.png``).
    Overlooked families are circles, baselines squares; a GPU run is labelled with its GPU."""
    from overlooked.plots.arena import accuracy_cost_figure

    catalog.load_all()  # every family registered, so each model's family tag is known
    written = []
    for dataset in datasets:
        rows = []
        chosen = [r for r in runs if r.summary.get("dataset") == dataset and r.summary.get("test_accuracy") is not None and r.summary.get("flops_per_example")]
        names = figure_labels(chosen)
        for run in chosen:
            s = run.summary
            family = MODELS.tags(s["model"]).get("family") if s.get("model") in MODELS else None
            gpu = run.environment.get("gpu")
            label = names[run.folder] + (f" ({gpu.split()[-1]})" if gpu else "")
            rows.append({"case": label, "role": "family" if family in ("memory", "spiking", "capsules") else "baseline", "test_accuracy": s["test_accuracy"], "flops_per_example": s["flops_per_example"]})
        if len(rows) >= 2:
            title = f"{dataset}: committed runs at their own budgets"
            written.append(accuracy_cost_figure(rows, folder / f"runs_{dataset}_accuracy_flops.png", title, cost="flops_per_example"))
    return written


def energy_figure(runs: list[Any], folder: Path) -> list[Path]:
    """One bar chart: estimated energy per example of every spiking run (converted ones at T = 32 and 64)
    beside the same layers as an ANN (compute-only, 45 nm)."""
    from overlooked.plots.arena import energy_bars_figure

    items = []
    chosen = sorted((r for r in runs if r.summary.get("energy")), key=lambda r: r.folder.name)
    names = figure_labels(chosen, lambda run: str(run.summary.get("norm") or ""))
    for run in chosen:
        energy = run.summary["energy"]
        per_t = {f"T={t}": energy[str(t)] for t in (32, 64) if str(t) in energy} or {"": energy}
        for tag, rep in per_t.items():
            totals = rep.get("totals", {})
            if totals.get("snn_energy_pj") is None:
                continue
            label = names[run.folder] + (f" {tag}" if tag else "")
            items.append((label.strip(), totals["snn_energy_pj"] / 1e6, totals["ann_energy_pj"] / 1e6))
    if not items:
        return []
    return [energy_bars_figure(items, folder / "spiking_energy_bars.png")]


def babi_figures(runs: list[Any], refs: dict[str, Any], folder: Path) -> list[Path]:
    """Per-task test error of every bAbI run (spread over its seeds) beside the paper's, as PNGs."""
    from overlooked.bench.report import _mapping, read_json
    from overlooked.plots.memory import task_error_figure

    written = []
    for run in runs:
        if run.summary.get("dataset") != "babi":
            continue
        seeds = sorted(run.folder.glob("seed*/summary.json")) + sorted(run.folder.glob("*/seed*/summary.json"))
        per_run = [_mapping(p.parent, p.name, read_json(p)).get("test_group_accuracy", {}) for p in seeds]
        if not per_run:
            per_run = [run.summary.get("test_group_accuracy") or run.summary.get("best_by_train", {}).get("test_group_accuracy", {})]
        errors: dict[int, list[float]] = {}
        for groups in per_run:
            for task, acc in groups.items():
                errors.setdefault(int(task), []).append(100.0 * (1.0 - acc))
        if not errors:
            continue
        ref = refs.get(run.config.get("name", ""), {})
        paper = ref.get("per_task_error") or ([100 - a for a in ref["per_task_accuracy"]] if "per_task_accuracy" in ref else None)
        best = (run.summary.get("best_by_train") or {}).get("test_group_accuracy") if len(per_run) > 1 else None  # the repeats' reported run
        chosen = {int(t): 100.0 * (1.0 - a) for t, a in best.items()} if best else None
        written.append(task_error_figure(errors, {t: paper[t - 1] for t in errors} if paper else None, folder / f"{run.folder.name}_tasks.png", run.folder.name, chosen))
    return written


def export_nir(run: str | Path, output: str | Path, *, checkpoint: str = "best", data_dir: str | None = None, force: bool = False, dt: float | None = None, flat_input: bool = False, discretisation: str = "euler") -> Path:
    """Export a trained spiking model to a NIR graph file (models that implement ``to_nir()``); an existing
    ``output`` is kept unless ``force``, missing parent folders are made. ``dt``: write the graph for a reader
    stepping at ``dt`` instead of the training dt, the same network (:func:`overlooked.spiking.nir.retime`;
    e.g. an N-MNIST model's 30 ms event bins, ``dt=0.03``, for a chip fed events in real time). ``flat_input``:
    an MLP's graph without its Flatten node, fed flat examples (see :func:`overlooked.spiking.nir.export_nir_graph`).
    ``discretisation``: ``"euler"`` (the network as trained: forward Euler at the graph's dt) or ``"exact"``, the
    same network for a reader that integrates the leak exactly (:func:`overlooked.spiking.nir.to_exact_decay`:
    LIF time constants rewritten; a CubaLIF is refused)."""
    import nir

    from overlooked.spiking.nir import NIRDtWarning, export_nir_graph, retime, to_exact_decay

    if discretisation not in ("euler", "exact"):
        raise OverlookedError(f"discretisation must be 'euler' (the network as trained) or 'exact' (for a reader that integrates the leak exactly), got {discretisation!r}")

    run, output = Path(run), Path(output)
    if output.is_dir():
        raise OverlookedError(f"{output} is a folder; name a file for the graph, e.g. {output / 'model.nir'}")
    if output.exists() and output.suffix != ".nir" and output.resolve().is_relative_to(run.resolve()):
        raise OverlookedError(f"{output} is a file of the run {run}, not a graph; --force never overwrites a run's own files: name a .nir file, e.g. {run / 'model.nir'}")
    if output.exists() and not force:
        raise OverlookedError(f"{output} exists; pass --force (force=True) to overwrite it, or name another file")
    cfg = run_config(
        run,
        conversion_refusal="its IF neurons reset by subtraction, which NIR (nir 1.0.8) cannot express (its IF, LIF and "
        "CubaLIF reset to v_reset), so converted networks are not exported; export a spiking run trained with reset to "
        "zero (the snn_* configs)",
    )
    meta, model = _model_of_run(run, cfg, checkpoint, data_dir)  # the run's own record: no data needed to export
    is_spiking_net = hasattr(model, "blocks") and hasattr(model, "readout")
    if not is_spiking_net and not hasattr(model, "to_nir"):
        spiking = [n for n in MODELS.names() if MODELS.tags(n).get("family") == "spiking"]
        raise OverlookedError(
            f"model {cfg.model.name!r} is not a spiking model (it has no to_nir()); export-nir takes a run of a "
            f"spiking model: {', '.join(spiking) or 'none is registered in this version'}"
        )
    encoder = {"encoder": cfg.encoder.name, "encoder_kwargs": dict(cfg.encoder.kwargs)} if cfg.encoder is not None and cfg.encoder.name else {}
    if flat_input and not is_spiking_net:
        raise OverlookedError(f"flat_input applies to the SpikingNet models (snn_*), not to {cfg.model.name!r}")
    graph = export_nir_graph(model, input_shape=per_step_input_shape(meta), flat_input=flat_input, **encoder) if is_spiking_net else model.to_nir()
    # What one input step is in the world, which the model alone does not know (for whoever feeds a chip)
    graph.metadata["data"] = f"{cfg.data.name}" + (f" ({', '.join(f'{k}={v!r}' for k, v in sorted(cfg.data.kwargs.items()))})" if cfg.data.kwargs else "")
    if "input_range" in meta:
        graph.metadata["input_range"] = meta["input_range"]
    if "step_duration_s" in meta:  # an event bin: the neurons' dt is the simulation step, not the bin's duration
        graph.metadata["step_duration_s"] = float(meta["step_duration_s"])
    if dt is not None:
        graph = retime(graph, dt)
    elif "step_duration_s" in meta and not math.isclose(float(meta["step_duration_s"]), float(graph.metadata.get("dt", 0.0))):
        warnings.warn(
            f"{output.name}: the graph steps at the training dt ({graph.metadata.get('dt')} s) while one input step is a "
            f"{meta['step_duration_s']} s event bin; a reader fed events in real time needs the same network at "
            f"--dt {meta['step_duration_s']} (dt={meta['step_duration_s']}), or it forgets between bins",
            NIRDtWarning,
            stacklevel=2,
        )
    if discretisation == "exact":
        graph = to_exact_decay(graph)
    _check_finite_graph(graph, run)
    _make_dirs(output.parent, "the output path")
    write_atomic(output, lambda tmp: nir.write(str(tmp), graph))  # written whole, then renamed: an interrupted write leaves no half graph
    return output


def _check_finite_graph(graph: Any, run: Path) -> None:
    """Refuse to write a NIR graph holding NaN or inf (folded from damaged weights, or a time constant that
    became infinite): a chip or simulator would read it without a word."""
    from overlooked.spiking.nir import first_nonfinite

    damaged = first_nonfinite(graph)
    if damaged is not None:
        name, node, attr = damaged
        raise OverlookedError(
            f"the graph of {run} holds NaN or inf in node {name!r} ({type(node).__name__}.{attr}); its checkpoint is "
            "damaged or its model diverged (a time constant grew without bound), so nothing was written: export another run or checkpoint"
        )


def per_step_input_shape(meta: dict[str, Any]) -> tuple[int, ...]:
    """The shape of one example at one time step, from a dataset's meta: an image's ``image_shape``, an event
    recording's ``frame_shape`` without its time bins, or a feature vector's ``input_shape``.

    >>> per_step_input_shape({"frame_shape": (10, 2, 34, 34)})
    (2, 34, 34)
    """
    if "image_shape" in meta:
        return tuple(meta["image_shape"])
    if "frame_shape" in meta:
        return tuple(meta["frame_shape"])[1:]
    if "input_shape" in meta:
        return tuple(meta["input_shape"])
    raise OverlookedError(f"the dataset's meta names no input shape (image_shape, frame_shape or input_shape); it has {sorted(meta)}")


REPORTED_STEPS = (32, 64)  # fixed before any result was seen (issue 4): the conversion's headline T values


def convert(
    run: str | Path,
    *,
    norm: str = "p99.9",
    steps: int = 256,
    calibration: int = 1000,
    out: str | Path | None = None,
    checkpoint: str = "best",
    data_dir: str | None = None,
    limit: int | None = None,
    batch_size: int = 500,
) -> tuple[Path, dict[str, Any]]:
    """Convert a trained ReLU/AvgPool CNN run into an IF spiking network and measure it on the test split.

    Calibration images come from the run's *training* split (a seeded random ``calibration`` of them).
    One simulation pass of ``steps`` steps records the test accuracy after every step; the summary reports
    the ANN's test accuracy, the SNN's at T = 32, 64 and ``steps``, the whole curve, and the energy report
    (:func:`overlooked.spiking.synops.summarise`) at those T. Writes a run folder ``convert-<name>-<norm>-...``.
    """
    import time

    from overlooked.spiking import convert as C
    from overlooked.spiking.synops import converted_layers, summarise

    t0 = time.perf_counter()
    bad = [f"{name} must be a whole number >= 1 ({what}), got {value!r}" for name, value, what in (("steps", steps, "simulation steps"), ("calibration", calibration, "training images for the activation statistics"), ("limit", 1 if limit is None else limit, "test images; None for all")) if not is_count(value)]
    if bad:
        raise ConfigError("convert: " + "; ".join(bad))
    cfg = run_config(run)
    family = MODELS.tags(cfg.model.name).get("family") if cfg.model.name in MODELS.names() else None
    if family in ("memory", "spiking", "capsules") or MODELS.tags(cfg.model.name).get("text"):  # a model of your own: C.convert judges its layers
        anns = [n for n in MODELS.names() if MODELS.tags(n).get("family") == "baseline" and not MODELS.tags(n).get("text")]
        raise C.ConversionError(f"convert takes a run of a ReLU/average-pooling ANN ({', '.join(anns)}); {run} trained {cfg.model.name!r}" + (f", a {family} model" if family else ""))
    cfg, splits, model = load_run(run, checkpoint=checkpoint, data_dir=data_dir)
    if len(splits.input_keys) != 1:
        raise C.ConversionError(f"convert takes a model of one input tensor; {run}'s model reads {list(splits.input_keys)}")
    key, target = splits.input_keys[0], splits.target_key
    images, labels = splits.test.tensors[key], splits.test.tensors[target]
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    calib = C.calibration_images(splits.scored("train").tensors[key], calibration, seed=cfg.train.seed)
    if len(calib) < calibration:  # the record says how many were used, not how many were asked for
        warnings.warn(f"--calibration {calibration} asks for more training images than the split holds; all {len(calib)} are used", ConfigWarning, stacklevel=2)
        calibration = len(calib)
    snn = C.convert(model, calib, norm=norm, steps=steps, backend="inplace")  # type: ignore[arg-type]  # bit-identical fast path; refuses what is not a ReLU/AvgPool network
    with torch.no_grad():
        ann_correct = sum(int((model(images[i : i + batch_size]).argmax(-1) == labels[i : i + batch_size]).sum()) for i in range(0, len(images), batch_size))
    path = new_run_dir(out or "runs", f"convert-{cfg.name}-{norm}")
    settings = {"norm": norm, "steps": steps, "calibration": calibration, "calibration_split": "train", "calibration_seed": cfg.train.seed, "v_init": snn.v_init, "reported_steps": list(REPORTED_STEPS), "test_examples": len(images), "checkpoint": checkpoint, "backend": snn.backend}
    conf = {"name": f"convert_{cfg.name}", "kind": "ann_to_snn_conversion", "source_run": str(run), "conversion": settings, "source_config": cfg.to_dict(), "notes": ""}
    write_text_atomic(path / "config.yaml", dump_yaml(conf))
    _write_json(path / "environment.json", environment("cpu"))

    def progress(done: int, correct: torch.Tensor) -> None:
        marks = {t: correct[t - 1].item() / done for t in (*REPORTED_STEPS, steps) if t <= steps}
        print(f"  {done}/{len(images)} test images: " + ", ".join(f"T={t} {a:.4f}" for t, a in marks.items()), flush=True)
        # a partial record, so that an interrupted run still says how far it got (summary.json is written at the end)
        _write_json(path / "partial.json", {"test_examples_done": done, "accuracy_curve": (correct.double() / done).tolist()})

    marks = tuple(sorted({t for t in (*REPORTED_STEPS, steps) if t <= steps}))
    res = C.evaluate_curve(snn, images, labels, steps, batch_size, snapshots=marks, progress=progress)
    curve = res["accuracy"]
    energy = {}
    for t in marks:
        spikes = [float(s[:t].sum()) for s in res["spikes_per_step"]]
        layers = converted_layers(snn, tuple(images.shape[1:]), res["position_counts"][t], spikes)
        for layer in layers:
            layer.macs *= len(images)
        energy[str(t)] = summarise(layers, len(images), t)
    with (path / "metrics.jsonl").open("w") as f:
        for t, acc in enumerate(curve, start=1):
            f.write(json.dumps({"step": t, "snn_test_accuracy": acc}) + "\n")
    summary = {
        "kind": "ann_to_snn_conversion",
        "name": conf["name"],
        "source_run": str(run),
        "model": f"{cfg.model.name} converted to IF neurons (reset by subtraction)",
        "dataset": cfg.data.name,
        "norm": norm,
        "steps": steps,
        "calibration": calibration,
        "scales": [s.scale for s in snn.stages],
        "readout": "membrane potential of a non-spiking integrator (accumulated W s_t + b); prediction = argmax after t steps",
        "input": "direct: the image is the first layer's input current at every step",
        "test_examples": len(images),
        "ann_test_accuracy": ann_correct / len(images),
        "snn_test_accuracy": {str(t): curve[t - 1] for t in marks},
        "accuracy_curve": curve,
        "energy": energy,
        "wall_time_s": time.perf_counter() - t0,
    }
    _write_json(path / "summary.json", summary)
    (path / "partial.json").unlink(missing_ok=True)
    return path, summary
