"""Typed experiment configuration: dataclasses, YAML loading and ``key=value`` overrides.

A config names its dataset, model, objective and optional encoder/augmentation by registry name, with the
keyword arguments for each builder. Everything is checked before any work starts: an unknown key anywhere
(a trainer field or a builder argument) or a value of the wrong type raises :class:`ConfigError` listing
what is allowed.

>>> cfg = ExperimentConfig.from_dict({"name": "demo", "model": {"name": "mlp"}, "data": {"name": "mnist"}})
>>> cfg = apply_overrides(cfg, ["train.lr=0.01", "model.kwargs.hidden=[128]"])
>>> cfg.train.lr, cfg.model.kwargs
(0.01, {'hidden': [128]})
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from overlooked.errors import ConfigError


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key written twice in one mapping (PyYAML keeps the last silently,
    so a second ``train:`` section would replace the first one whole)."""


# YAML 1.1 (PyYAML) reads a float without a dot, 1e-3 or 5E-4, as a string; YAML 1.2 and every other tool read
# a number. So does this loader, for every value: an argument without a type annotation got the string '1e-3'.
# The dumper knows the same rule, so a text that reads as such a number ('1e3') is written quoted and reads back
# as text (what this package writes, it reads back unchanged).
_FLOAT_NO_DOT = re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")
_UniqueKeyLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_NO_DOT, list("-+0123456789"))


class _Dumper(yaml.SafeDumper):
    """``yaml.SafeDumper`` that quotes text :func:`load_yaml` would read as a number."""


_Dumper.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_NO_DOT, list("-+0123456789"))


def dump_yaml(data: Any) -> str:
    """YAML for ``data`` (keys in their order) that :func:`load_yaml` reads back equal: configs and run folders."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False)


def _construct_unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base`: keys written beside it override the merged ones
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            repeated = key in seen
        except TypeError:  # an unhashable key: construct_mapping names it
            continue
        if repeated:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                f"found the key {key!r} a second time (first on line {seen[key]}); write each key once, "
                "merging the two entries",
                key_node.start_mark,
            )
        seen[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


def load_yaml(text: str) -> Any:
    """Parse YAML as ``yaml.safe_load`` does (no Python tags), except that a key repeated in one mapping is a
    ``yaml.YAMLError`` naming both lines instead of a silent last-one-wins, and that a float without a dot
    (``1e-3``) is a number, as in YAML 1.2 (PyYAML reads it as text); :func:`dump_yaml` writes for it."""
    return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass: no Python tags


@dataclass
class Component:
    """A registry name plus the keyword arguments for its builder."""

    name: str = ""
    kwargs: dict[str, Any] = field(default_factory=dict)


class ConfigWarning(UserWarning):
    """A setting that has no effect in the configuration it is part of."""


def warn_no_effect(unused: Iterable[tuple[bool, str]], stacklevel: int = 3) -> None:
    """Warn (:class:`ConfigWarning`) for each ``(is_unused, what)`` that holds: a setting that changes nothing
    unless another one is set is said so, never ignored silently. ``what`` names the setting and why."""
    for is_unused, what in unused:
        if is_unused:
            warnings.warn(f"{what} has no effect in this configuration", ConfigWarning, stacklevel=stacklevel)


@dataclass
class TrainConfig:
    """How the one trainer runs. Step counts are optimiser steps; epochs are passes over the train split."""

    epochs: int = 10
    max_steps: int | None = None  # stop after this many steps even mid-epoch
    max_minutes: float | None = None  # stop, after a validation pass, once this much wall time has passed since fit() began (this process)
    batch_size: int = 64  # global batch; under DDP each rank takes batch_size // world_size
    sampling: Literal["shuffle", "replacement"] = "shuffle"  # epochs as permutations, or n // batch_size batches drawn with replacement (MemN2N's train.m)
    optimizer: Literal["sgd", "adam", "adamw"] = "adam"
    lr: float = 1e-3
    momentum: float = 0.0
    weight_decay: float = 0.0
    weight_decay_1d: bool = True  # with weight_decay: decay one-dimensional tensors too (biases, norm gains), as torch.optim does; false leaves them out, as timm does
    betas: tuple[float, float] = (0.9, 0.999)
    schedule: Literal["constant", "step", "cosine", "exponential"] = "constant"
    step_epochs: float = 25.0  # 'step': multiply the lr by gamma every step_epochs epochs
    gamma: float = 0.5  # 'step' and 'exponential' (per epoch) decay factor
    warmup_steps: int = 0
    grad_clip: float | None = None  # max gradient norm; None = no clipping
    grad_clip_per_tensor: bool = False  # clip each parameter's gradient norm separately instead of the global norm
    grad_clip_groups: bool = False  # with grad_clip_per_tensor: clip the model's own gradient_groups() (e.g. MemN2N's per-matrix blocks)
    grad_clip_norm: Literal["frobenius", "spectral"] = "frobenius"  # per-tensor clipping measures this norm (spectral: Matlab's norm(M), 2-D only)
    eval_every: int = 0  # steps between validation passes; 0 = once per epoch
    checkpoint_every: int = 0  # steps between 'last' checkpoints; 0 = at each validation pass
    eval_batch_size: int = 1000
    eval_limit: int | None = None  # evaluate on the first N examples of each split only (quick suites); None = all
    report_train: bool = True  # the final report also scores the whole training split (train_accuracy; MemN2N's best-by-training-error rule needs it); false skips it where inference is costly
    select_metric: Literal["val_accuracy", "val_loss", "last"] = "val_accuracy"  # "last": report the final weights (the MemN2N authors' code tests its final model)
    bf16: bool = False  # autocast the forward pass to bfloat16
    ema_decay: float | None = None  # keep an exponential moving average of the weights (torch.optim.swa_utils.AveragedModel); validation, selection and the final report then use the averaged weights
    ema_warmup: bool = False  # with ema_decay: use min(ema_decay, (1 + n) / (10 + n)) at the n-th update (as timm's ModelEma warm-up), so short runs are not averaged with their initial weights
    device: str = "cpu"
    seed: int = 0
    repeats: int = 1
    trials: int = 1  # hyper-parameter settings this configuration was chosen from (recorded for the fair-comparison rule)
    deterministic: bool = True  # torch.use_deterministic_algorithms(warn_only=True)
    progress: bool = True
    num_threads: int | None = None
    init_from: str | None = None  # a finished run folder: start from its weights (more epochs, fine-tuning) with a fresh optimiser, schedule and callbacks; the summary records it and the examples it saw
    init_checkpoint: Literal["best", "last"] = "best"  # which of init_from's checkpoints

    def __post_init__(self) -> None:
        """Refuse values no run can use, before any folder is made (types are checked by :func:`check_type`)."""
        rules = (  # (keys, which values are refused, what the message says a value must be)
            (("epochs", "batch_size", "eval_batch_size", "repeats", "trials"), lambda v: v < 1, ">= 1"),
            (("max_steps", "eval_limit", "num_threads"), lambda v: v < 1, ">= 1 or null"),
            (("lr", "momentum", "weight_decay", "warmup_steps", "eval_every", "checkpoint_every"), lambda v: v < 0, ">= 0"),
            (("step_epochs", "gamma"), lambda v: v <= 0, "> 0"),
            (("grad_clip", "max_minutes"), lambda v: v <= 0, "> 0 or null"),
        )
        bad = [
            f"train.{k} must be {must}, got {getattr(self, k)!r}"
            for keys, refused, must in rules
            for k in keys
            if isinstance(getattr(self, k), (int, float)) and refused(getattr(self, k))
        ]
        if isinstance(self.momentum, (int, float)) and self.momentum >= 1:  # heavy-ball momentum >= 1 never forgets a gradient
            bad.append(f"train.momentum must be in [0, 1), got {self.momentum!r}")
        if isinstance(self.betas, tuple) and not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in self.betas):
            bad.append(f"train.betas must be two numbers in [0, 1) (Adam's moment decays), got {list(self.betas)!r}")
        if isinstance(self.seed, int) and not 0 <= self.seed < 2**32:  # the trainer derives its streams' seeds from it (seed * 1_000_003 + rank)
            bad.append(f"train.seed must be between 0 and 2**32 - 1, got {self.seed}")
        bad += [  # NaN and inf pass every comparison above
            f"train.{f.name} must be a finite number, got {getattr(self, f.name)!r}"
            for f in dataclasses.fields(self)
            if isinstance(getattr(self, f.name), float) and not math.isfinite(getattr(self, f.name))
        ]
        if bad:
            raise ConfigError("; ".join(bad) + " (fix these train.* settings)")
        warn_no_effect([
            (self.momentum != 0 and self.optimizer != "sgd", f"train.momentum={self.momentum} (only sgd uses it; adam/adamw take train.betas)"),
            (self.betas != (0.9, 0.999) and self.optimizer == "sgd", f"train.betas={list(self.betas)} (sgd uses train.momentum)"),
            (self.ema_warmup and self.ema_decay is None, "train.ema_warmup (it needs train.ema_decay)"),
            ((self.grad_clip_groups or self.grad_clip_norm != "frobenius") and not self.grad_clip_per_tensor, "train.grad_clip_groups / train.grad_clip_norm (they need train.grad_clip_per_tensor=true)"),
            (self.init_checkpoint != "best" and self.init_from is None, "train.init_checkpoint (it needs train.init_from)"),
            (not self.weight_decay_1d and self.weight_decay == 0, "train.weight_decay_1d=false (it needs train.weight_decay > 0)"),
            (self.schedule not in ("step",) and self.step_epochs != 25.0, f"train.step_epochs={self.step_epochs} (only schedule=step uses it)"),
            (self.schedule not in ("step", "exponential") and self.gamma != 0.5, f"train.gamma={self.gamma} (only schedule=step and exponential use it)"),
        ])
        # settings that run but do not train as they read (each was accepted silently before)
        odd = [
            (self.lr == 0, "train.lr=0: no step changes a weight"),
            (self.schedule in ("step", "exponential") and self.gamma > 1, f"train.gamma={self.gamma} > 1 makes the learning rate grow every {'step_epochs epochs' if self.schedule == 'step' else 'epoch'}"),
        ]
        for is_odd, what in odd:
            if is_odd:
                warnings.warn(what, ConfigWarning, stacklevel=3)


@dataclass
class ExperimentConfig:
    """One runnable experiment: data, model, objective, optional encoder/augmentation, trainer."""

    name: str = "experiment"
    data: Component = field(default_factory=Component)
    model: Component = field(default_factory=Component)
    objective: Component = field(default_factory=lambda: Component("cross_entropy"))
    encoder: Component | None = None
    augment: Component | None = None
    callbacks: list[Component] = field(default_factory=list)
    train: TrainConfig = field(default_factory=TrainConfig)
    out: str = "runs"
    data_dir: str | None = None
    notes: str = ""

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ExperimentConfig:
        """Build and type-check a config from plain data (as loaded from YAML)."""
        return _build(cls, raw, "")

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form, as written to a run folder's ``config.yaml``."""
        return _plain(dataclasses.asdict(self))


def _plain(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def check_type(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against annotation ``tp``; return it, converted where lossless (int -> float, list -> tuple).

    >>> check_type(3, float, "lr")
    3.0
    >>> check_type("x", int, "epochs")
    Traceback (most recent call last):
    ...
    overlooked.errors.ConfigError: epochs: expected int, got str 'x'
    """
    if tp is Any or tp is typing.Any:
        return value
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (Union, types.UnionType):
        for arm in args:
            try:
                return check_type(value, arm, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: expected {' or '.join(_type_name(a) for a in args)}, got {type(value).__name__} {value!r}{_quote_hint(value, str in args)}")
    if origin is Literal:
        if value in args:
            return value
        raise ConfigError(f"{where}: expected one of {', '.join(map(repr, args))}, got {value!r}")
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(f"{where}: expected None, got {value!r}")
    if origin in (list, tuple) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{where}: expected {len(args)} items, got {len(value)}")
            return tuple(check_type(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        inner = args[0] if args else Any
        out = [check_type(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if (origin is tuple or tp is tuple) else out
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__} {value!r}")
        return value
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and _FLOAT_TEXT.fullmatch(value.strip()):  # YAML 1.1 reads 1e-3 as a string
            return float(value)
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(tp, type):
        if isinstance(value, tp):
            return value
    else:
        return value
    raise ConfigError(f"{where}: expected {_type_name(tp)}, got {type(value).__name__} {value!r}{_quote_hint(value, tp is str)}")


def _quote_hint(value: Any, text_expected: bool) -> str:
    """Where text was expected and YAML read a boolean or a number, say so and to quote it."""
    if not text_expected:
        return ""
    if isinstance(value, bool):
        return " (YAML reads yes/no/on/off/true/false as booleans: quote the text, e.g. 'yes')"
    if isinstance(value, (int, float)):
        return " (YAML reads unquoted 1e5, 0x1F or 10 as a number: quote the text, e.g. '1e5')"
    return ""


def _build(cls: type, raw: Any, prefix: str) -> Any:
    if not isinstance(raw, dict):
        where = prefix.rstrip(".") or "config"
        fields = ", ".join(f.name for f in dataclasses.fields(cls))
        example = " (or a name alone: model: memn2n)" if {f.name for f in dataclasses.fields(cls)} == {"name", "kwargs"} else ""
        raise ConfigError(f"{where}: expected a mapping with the keys {fields}{example}, got {type(raw).__name__} {raw!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(map(str, set(raw) - set(names)))
    if unknown:
        shorthand = ""
        if set(names) == {"name", "kwargs"}:  # a component: its builder's arguments go under kwargs
            shorthand = f" (a builder argument goes under kwargs: {prefix}kwargs: {{{unknown[0]}: ...}}"
            if prefix.rstrip(".") in SHORTHAND_SECTIONS:
                shorthand += f"; the shorthand {prefix}{unknown[0]}=... is for command-line overrides"
            shorthand += ")"
        raise ConfigError(
            f"unknown config key(s) {', '.join(prefix + k for k in unknown)}; "
            f"allowed in {prefix.rstrip('.') or 'the top level'}: {', '.join(names)}{shorthand}"
        )
    kwargs = {}
    for name in names:
        if name not in raw:
            continue
        kwargs[name] = _convert(raw[name], hints[name], prefix + name)
    return cls(**kwargs)


def _convert(value: Any, tp: Any, where: str) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, str) and tp is Component:  # shorthand: `model: mlp`
            value = {"name": value}
        return _build(tp, value, where + ".")
    if origin in (Union, types.UnionType) and any(dataclasses.is_dataclass(a) for a in args):
        if value is None and type(None) in args:
            return None
        dc = next(a for a in args if dataclasses.is_dataclass(a))
        return _convert(value, dc, where)
    if origin is list and args and dataclasses.is_dataclass(args[0]):
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_convert(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)]
    return check_type(value, tp, where)


# plain decimal or scientific notation, and nan / inf as YAML 1.1 leaves them (a string; it reads .nan, .inf), so
# that a NaN or infinite setting meets the finite-number check that names it rather than a type error
_FLOAT_TEXT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?|[-+]?(?i:nan|inf|infinity)")
SHORTHAND_SECTIONS = ("model", "data", "objective", "encoder", "augment")  # overrides may skip their "kwargs"
_RANGE = re.compile(r"(\d+)\.\.(\d+)")
MAX_RANGE = 10_000  # values an a..b range may list


def integer_range(text: str) -> list[int] | None:
    """``"a..b"`` as the inclusive list ``[a, ..., b]``; None for any other text.

    >>> integer_range("2..5"), integer_range("2,5")
    ([2, 3, 4, 5], None)
    """
    match = _RANGE.fullmatch(text.strip())
    if match is None:
        return None
    lo, hi = int(match.group(1)), int(match.group(2))
    if hi < lo:
        raise ConfigError(f"the range {text!r} is empty ({hi} < {lo}); write it low..high, e.g. 1..20")
    if hi - lo + 1 > MAX_RANGE:  # a typo's extra digits would fill the memory before any check could name it
        raise ConfigError(f"the range {text!r} has {hi - lo + 1:,} values; a..b lists a few values (task numbers, seeds), at most {MAX_RANGE:,}")
    return list(range(lo, hi + 1))


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``a.b.c=value`` into a key path and a YAML-parsed value; ``a..b`` is the inclusive range of
    integers as a list (``data.tasks=1..20``).

    >>> parse_override("train.lr=1e-3")
    (['train', 'lr'], 0.001)
    >>> parse_override("data.tasks=1..3")
    (['data', 'tasks'], [1, 2, 3])
    """
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not of the form key=value (e.g. train.lr=0.01)")
    key, _, val = text.partition("=")
    if not key:
        raise ConfigError(f"override {text!r} has an empty key")
    ranged = integer_range(val)
    if ranged is not None:
        return key.split("."), ranged
    try:
        parsed = load_yaml(val) if val != "" else ""
    except yaml.YAMLError as exc:
        problem = str(exc).splitlines()[0]
        raise ConfigError(f"override {text!r}: the value {val!r} is not valid YAML ({problem}); e.g. data.tasks=[1,2] or data.tasks=1") from None
    if isinstance(parsed, str) and not val.strip().startswith(("'", '"')):  # quoted text stays text (name='1e3')
        # YAML 1.1 leaves '1e-3' as a string; accept plain scientific notation as a number ('nan' and 'inf' stay
        # words here: a float setting takes them in check_type, a word setting keeps them)
        try:
            parsed = float(parsed) if any(c in parsed for c in "eE.") else parsed
        except ValueError:
            pass
    return key.split("."), parsed


def override_path(path: list[str]) -> list[str]:
    """The key path an override sets, with the ``kwargs`` a shorthand skips put back:
    ``['model', 'hidden']`` -> ``['model', 'kwargs', 'hidden']``."""
    if path[0] in SHORTHAND_SECTIONS and len(path) >= 2 and path[1] not in ("name", "kwargs"):
        return [path[0], "kwargs", *path[1:]]
    return list(path)


def check_distinct_overrides(overrides: list[str], names: list[str] | None = None) -> None:
    """Refuse two overrides that set the same setting, or a setting and then the section holding it
    (``model.hidden=3`` and then ``model.kwargs={...}``): applied in order, the later would silently replace
    the earlier. A section and then a setting inside it compose (the setting is written into the new section).
    ``names`` are what to call each in the message (default: the overrides themselves)."""
    _refuse_repeated([override_path(parse_override(text)[0]) for text in overrides], names or [repr(text) for text in overrides])


def _refuse_repeated(paths: list[list[str]], names: list[str]) -> None:
    """:func:`check_distinct_overrides` on the overrides' key paths (``kwargs`` put back)."""
    for j, later in enumerate(paths):
        for i in range(j):
            if paths[i][: len(later)] == later:  # the same setting, or the earlier one inside the later's section
                raise ConfigError(
                    f"{names[i]} and {names[j]} both set {'.'.join(paths[i])}: the second would silently replace the first; "
                    "give each setting once"
                )


def apply_overrides(cfg: ExperimentConfig, overrides: list[str]) -> ExperimentConfig:
    """Apply dotted ``key=value`` overrides and re-check the whole config.

    A path into ``model``/``data``/``objective``/``encoder``/``augment`` may skip ``kwargs``:
    ``model.hidden=[128]`` means ``model.kwargs.hidden=[128]``.
    """
    if isinstance(overrides, str):
        raise ConfigError(f"overrides must be a list of 'key=value' strings, got the string {overrides!r}; wrap it in a list: [{overrides!r}]")
    raw = cfg.to_dict()
    parsed = []  # each override parsed once: for the repeated-setting check, then to apply
    for text in overrides:
        path, value = parse_override(text)
        parsed.append((text, override_path(path), value))
    _refuse_repeated([path for _, path, _ in parsed], [repr(text) for text in overrides])
    for text, path, value in parsed:
        if path[0] in SHORTHAND_SECTIONS and len(path) >= 2:
            if raw.get(path[0]) is None:
                raw[path[0]] = {"name": "", "kwargs": {}}
        node: Any = raw
        for depth, part in enumerate(path[:-1]):
            if isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            elif isinstance(node, dict) and part in node:
                node = node[part]
            else:
                if isinstance(node, list):
                    where = ".".join(path[:depth])
                    example = "[{name: ..., kwargs: {...}}]" if where == "callbacks" else "[...]"
                    have = f"{where} holds {len(node)} entries; set the whole list instead, e.g. {where}={example}"
                else:
                    have = f"the keys there are {', '.join(map(str, node))}" if isinstance(node, dict) else "it is not a mapping"
                raise ConfigError(f"override {text!r}: unknown key {part!r} in {'.'.join(path)} ({have})")
        last = path[-1]
        if isinstance(node, list) and last.isdigit() and int(last) < len(node):
            node[int(last)] = value
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise ConfigError(f"override {text!r}: {'.'.join(path[:-1])} is not a mapping")
    return ExperimentConfig.from_dict(raw)


def packaged_configs() -> dict[str, Path]:
    """Configs shipped inside the package: name -> path."""
    root = resources.files("overlooked") / "configs"
    return {Path(str(p)).stem: Path(str(p)) for p in root.iterdir() if str(p).endswith((".yaml", ".yml"))}


def load_config(name_or_path: str, overrides: list[str] | None = None) -> ExperimentConfig:
    """Load a packaged config by name (``cnn_mnist``) or a YAML file by path, then apply overrides."""
    path = Path(name_or_path)
    if not path.is_file():
        known = packaged_configs()
        if name_or_path not in known:
            raise ConfigError(
                f"no config file {name_or_path!r} and no packaged config of that name; "
                f"packaged configs: {', '.join(sorted(known))}"
            )
        path = known[name_or_path]
    try:
        raw = load_yaml(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a text (UTF-8) file ({exc}); a config is a YAML file") from None
    cfg = ExperimentConfig.from_dict(raw or {})
    return apply_overrides(cfg, overrides or [])


def check_component_kwargs(registry: Any, comp: Component, where: str) -> None:
    """Check a component's name and kwargs against its registered builder's signature and annotations."""
    import inspect

    fn = registry.get(comp.name)
    allowed = registry.accepted_kwargs(comp.name)
    if allowed is not None:
        unknown = sorted(set(comp.kwargs) - set(allowed))
        if unknown:
            raise ConfigError(
                f"unknown key(s) {', '.join(f'{where}.kwargs.{k}' for k in unknown)} for {registry.kind} "
                f"{comp.name!r}; allowed: {', '.join(allowed) or '(none)'} (after changing {where}.name, {where}.kwargs={{}} drops "
                "the arguments the config gave the old one)"
            )
    nonfinite = [f"{where}.kwargs.{k}={v!r}" for k, v in comp.kwargs.items() if _nonfinite(v)]
    if nonfinite:
        raise ConfigError(f"{', '.join(nonfinite)}: NaN and infinite numbers are refused (a setting must be a finite number)")
    try:
        hints = typing.get_type_hints(fn.__init__ if isinstance(fn, type) else fn)  # a class: its constructor's, not its attributes'
    except Exception:  # unresolvable annotations: names were checked, types cannot be
        hints = {}
    sig = inspect.signature(fn)
    for key, value in comp.kwargs.items():
        if key in hints and key in sig.parameters:
            comp.kwargs[key] = check_type(value, hints[key], f"{where}.kwargs.{key}")


def _nonfinite(value: Any) -> bool:
    """Whether a setting is, or holds, a NaN or infinite float (YAML's ``.nan``, ``.inf``)."""
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, (list, tuple)):
        return any(_nonfinite(v) for v in value)
    if isinstance(value, dict):
        return any(_nonfinite(v) for v in value.values())
    return False
