"""Typed configs: YAML, overrides, type and key checking."""

from __future__ import annotations

import re
import warnings

import pytest
import yaml

from overlooked import api
from overlooked.config import ExperimentConfig, apply_overrides, check_type, load_config, packaged_configs
from overlooked.errors import ConfigError


def test_every_packaged_config_loads_and_checks():
    names = packaged_configs()
    assert {"cnn_mnist", "mlp_mnist"} <= set(names)
    for name in names:
        api.check_config(load_config(name))


def test_overrides_apply_with_types():
    cfg = load_config("cnn_mnist", ["train.lr=1e-3", "train.epochs=3", "model.hidden=64", "train.grad_clip=40", "train.betas=[0.8, 0.9]"])
    assert cfg.train.lr == 0.001 and cfg.train.epochs == 3 and cfg.model.kwargs["hidden"] == 64
    assert cfg.train.grad_clip == 40.0 and isinstance(cfg.train.grad_clip, float)
    assert cfg.train.betas == (0.8, 0.9)
    assert cfg.data.kwargs["val_fraction"] == 0.1  # untouched


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.lrate=1", "unknown config key.*train.lrate.*allowed.*lr"),
        ("train.epochs=ten", "train.epochs: expected int"),
        ("train.optimizer=lbfgs", "expected one of 'sgd', 'adam', 'adamw'"),
        ("bogus=1", "unknown config key.*bogus"),
        ("train", "not of the form key=value"),
    ],
)
def test_bad_overrides_fail_listing_what_is_allowed(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config("cnn_mnist", [override])


def test_unknown_builder_kwarg_is_caught_before_work():
    cfg = load_config("cnn_mnist", ["model.widths=[3]"])
    with pytest.raises(ConfigError, match="model.kwargs.widths.*allowed: in_channels, channels"):
        api.check_config(cfg)
    cfg = load_config("cnn_mnist", ["model.hidden=wide"])
    with pytest.raises(ConfigError, match="model.kwargs.hidden: expected int"):
        api.check_config(cfg)


def test_round_trip_through_dict():
    cfg = load_config("mlp_mnist")
    assert ExperimentConfig.from_dict(cfg.to_dict()) == cfg
    assert apply_overrides(cfg, []) == cfg


def test_check_type_unions_and_tuples():
    assert check_type(None, int | None, "x") is None
    assert check_type([1, 2], tuple[int, int], "x") == (1, 2)
    with pytest.raises(ConfigError, match="expected 2 items"):
        check_type([1], tuple[int, int], "x")
    with pytest.raises(ConfigError, match="expected int"):
        check_type(True, int, "x")  # a bool is not an int here


def test_missing_config_names_packaged_ones():
    with pytest.raises(ConfigError, match="packaged configs: .*cnn_mnist"):
        load_config("no_such_config")


def test_override_into_a_list_of_callbacks():
    cfg = load_config("memn2n_babi1k", ["callbacks.0.kwargs.max_epochs=5"])
    assert cfg.callbacks[0].kwargs["max_epochs"] == 5
    with pytest.raises(ConfigError, match="unknown key '3'"):
        load_config("memn2n_babi1k", ["callbacks.3.kwargs.lr=1"])


def test_non_finite_numbers_are_refused_and_settings_without_effect_warn():
    import warnings

    from overlooked.config import ConfigWarning, TrainConfig

    for key, value in (("max_minutes", float("nan")), ("grad_clip", float("nan")), ("lr", float("inf"))):
        with pytest.raises(ConfigError, match=rf"train.{key} must be a finite number"):
            TrainConfig(**{key: value})
    for text in ("nan", "inf", "-inf", "NaN", ".nan"):  # typed on the command line: "expected float, got str 'nan'" before
        with pytest.raises(ConfigError, match=r"train.lr must be a finite number"):
            load_config("cnn_mnist", [f"train.lr={text}"])
    assert load_config("cnn_mnist", ["name=inference"]).name == "inference"  # words are not numbers
    assert load_config("cnn_mnist", ["name=nan"]).name == "nan"  # nor is nan, where a setting takes a word
    cases = {
        "train.momentum=0.9 (only sgd uses it": {"optimizer": "adam", "momentum": 0.9},
        "train.betas=[0.1, 0.2] (sgd uses train.momentum)": {"optimizer": "sgd", "betas": (0.1, 0.2)},
        "train.ema_warmup (it needs train.ema_decay)": {"ema_warmup": True},
        "(they need train.grad_clip_per_tensor=true)": {"grad_clip_norm": "spectral"},
        "train.init_checkpoint (it needs train.init_from)": {"init_checkpoint": "last"},
    }
    for message, kwargs in cases.items():
        with pytest.warns(ConfigWarning, match=re.escape(message)):
            TrainConfig(**kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        TrainConfig(optimizer="sgd", momentum=0.9, ema_decay=0.99, ema_warmup=True)  # used: no warning


def test_a_yaml_float_in_scientific_notation_is_a_float():
    cfg = ExperimentConfig.from_dict(yaml.safe_load("train:\n  lr: 1e-3\n  weight_decay: 5E-4\n"))
    assert cfg.train.lr == 0.001 and cfg.train.weight_decay == 0.0005
    with pytest.raises(ConfigError, match="train.lr: expected float"):
        ExperimentConfig.from_dict({"train": {"lr": "fast"}})


def test_list_models_names_an_unknown_family():
    import overlooked
    from overlooked.errors import RegistryError

    assert "memn2n" in overlooked.list_models(family="memory")
    with pytest.raises(RegistryError, match="no model family 'baselines'; the families are baseline, capsules, memory, spiking"):
        overlooked.list_models(family="baselines")


def test_an_unknown_override_key_lists_what_is_there():
    with pytest.raises(ConfigError, match=r"unknown key 'trian' in trian.lr \(the keys there are name, data, model"):
        api.load("mlp_mnist", ["trian.lr=0.1"])
    with pytest.raises(ConfigError, match=r"callbacks holds 0 entries; set the whole list instead, e.g. callbacks=\[\{name: "):
        api.load("mlp_mnist", ["callbacks.0.name=stop_at_val_accuracy"])
    with pytest.raises(ConfigError, match=r"model.kwargs.hidden holds \d+ entries; set the whole list instead, e.g. model.kwargs.hidden=\[\.\.\.\]"):
        api.load("mlp_mnist", ["model.kwargs.hidden.5.foo=1"])


def test_a_config_changed_in_python_is_checked_again_before_training(tmp_path):
    """``cfg.train.optimizer = "adamm"`` after api.load used to train with AdamW (the trainer's fallback) and
    leave a run that evaluate then refused; batch_size=0 was a ZeroDivisionError. Both are refused before a
    folder is made; a string number is converted as from YAML, and the loaded config's warnings are not repeated."""
    from overlooked import api
    from overlooked.config import ConfigWarning

    for key, value, message in (("optimizer", "adamm", "train.optimizer: expected one of 'sgd', 'adam', 'adamw', got 'adamm'"), ("batch_size", 0, "train.batch_size must be >= 1, got 0")):
        cfg = api.load("mlp_mnist")
        setattr(cfg.train, key, value)
        with pytest.raises(ConfigError, match=re.escape(message)):
            api.train(cfg, out=str(tmp_path / "runs"))
        assert not (tmp_path / "runs").exists()
    cfg = api.load("mlp_mnist")
    cfg.train.lr = "1e-2"
    train, kwargs = cfg.train, cfg.model.kwargs
    api.check_config(cfg)
    assert cfg.train.lr == 0.01
    train.lr, kwargs["hidden"] = 0.5, [7]  # the objects a caller holds are still the config's (a sweep edits them)
    assert cfg.train.lr == 0.5 and cfg.model.kwargs["hidden"] == [7]
    with pytest.warns(ConfigWarning):
        cfg = api.load("mlp_mnist", ["train.momentum=0.9"])  # adam: momentum has no effect
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        api.check_config(cfg)


@pytest.mark.parametrize("override", ["model.kwargs.dropout=.nan", "objective.kwargs.label_smoothing=.inf", "data.kwargs.val_fraction=-.inf", "model.kwargs.hidden=[.nan]"])
def test_nan_and_infinite_component_settings_are_refused_like_train_ones(override):
    """``model.kwargs.dropout=.nan`` ended in a raw torch traceback and ``objective.kwargs.label_smoothing=.nan``
    trained without a word; README says NaN and infinite numbers are refused, and now they are everywhere."""
    key = override.split("=")[0]
    with pytest.raises(ConfigError, match=re.escape(key) + r"=.*NaN and infinite numbers are refused"):
        api.load("mlp_mnist" if "hidden" in key else "cnn_mnist", [override])


@pytest.mark.parametrize("seed", [-1, 2**32, 99999999999999])
def test_a_seed_outside_the_range_the_trainer_derives_streams_from_is_refused(seed):
    """train.seed=99999999999999 overflowed in the trainer (seed * 1_000_003) after the folder was made."""
    with pytest.raises(ConfigError, match=rf"train.seed must be between 0 and 2\*\*32 - 1, got {seed}"):
        api.load("mlp_mnist", [f"train.seed={seed}"])


def test_a_key_written_twice_in_a_config_file_is_refused_naming_both_lines(tmp_path):
    """PyYAML keeps the last of two equal keys: a second ``train:`` section would replace the first whole
    (epochs, optimizer, clipping back to their defaults) without a word."""
    from overlooked.config import load_yaml

    packaged = packaged_configs()["memn2n_babi1k"].read_text()
    twice = tmp_path / "twice.yaml"
    twice.write_text(packaged + "train:\n  lr: 0.5\n")
    with pytest.raises(ConfigError, match=r"key 'train' a second time \(first on line \d+\)"):
        load_config(str(twice))
    inner = tmp_path / "inner.yaml"
    inner.write_text("name: x\ntrain:\n  lr: 0.1\n  epochs: 2\n  lr: 0.2\n")
    with pytest.raises(ConfigError, match=r"key 'lr' a second time \(first on line 3\)"):
        load_config(str(inner))
    with pytest.raises(yaml.YAMLError, match="key 'a' a second time"):
        load_yaml("{a: 1, a: 2}")
    # what safe_load allows still loads the same: merge keys (overridden beside them), nested maps, no Python tags
    text = "base: &b {x: 1, y: 2}\nd:\n  <<: *b\n  x: 3\ne: [1, {f: 2}]\n"
    assert load_yaml(text) == yaml.safe_load(text) == {"base": {"x": 1, "y": 2}, "d": {"x": 3, "y": 2}, "e": [1, {"f": 2}]}
    with pytest.raises(yaml.YAMLError):
        load_yaml("!!python/object/apply:os.system ['true']")


def test_a_run_folders_config_with_a_repeated_key_is_named_damaged(tmp_path):
    (tmp_path / "config.yaml").write_text("name: x\nname: y\n")
    with pytest.raises(api.OverlookedError, match="config.yaml is damaged.*'name' a second time"):
        api.read_run_file(tmp_path / "config.yaml")


def test_overrides_that_set_one_setting_twice_are_refused():
    """Applied in order, the later silently replaced the earlier (also through the kwargs shorthand, or a whole
    section and a key inside it)."""
    for twice, said in [
        (["train.lr=0.1", "train.lr=0.2"], "'train.lr=0.1' and 'train.lr=0.2' both set train.lr"),
        (["model.hidden=64", "model.kwargs.hidden=32"], "both set model.kwargs.hidden"),
        (["model.hidden=64", "model.kwargs={hidden: 8}"], "both set model.kwargs.hidden: the second would silently replace the first"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(said)):
            load_config("cnn_mnist", twice)
    assert load_config("cnn_mnist", ["model.kwargs={hidden: 8}", "model.hidden=64"]).model.kwargs == {"hidden": 64}  # a section, then a key in it: composes
    cfg = load_config("cnn_mnist", ["model.hidden=64", "model.name=small_cnn", "train.lr=0.1"])  # distinct: fine
    assert cfg.model.kwargs["hidden"] == 64 and cfg.train.lr == 0.1


def test_settings_that_run_but_do_not_train_as_they_read_are_warned(tmp_path):
    """An adversarial review's: lr=0, gamma > 1 (a growing learning rate), step_epochs / gamma under a schedule
    that ignores them, more threads than cores, a warm-up longer than the run: all ran without a word."""
    import os

    import pytest

    from overlooked import api
    from overlooked.config import ConfigWarning

    for overrides, says in ((["train.lr=0"], r"train\.lr=0: no step changes a weight"),
                            (["train.schedule=exponential", "train.gamma=10"], r"train\.gamma=10\.0 > 1 makes the learning rate grow every epoch"),
                            (["train.schedule=step", "train.gamma=1.5"], r"grow every step_epochs epochs"),
                            (["train.step_epochs=5"], r"train\.step_epochs=5\.0 \(only schedule=step uses it\) has no effect"),
                            (["train.schedule=cosine", "train.gamma=0.1"], r"train\.gamma=0\.1 \(only schedule=step and exponential use it\)")):
        with pytest.warns(ConfigWarning, match=says):
            api.load("mlp_mnist", overrides)
    cfg = api.load("mlp_mnist", ["data.name=synthetic", "data.kwargs={n_train: 64, n_test: 16, image_shape: [1, 8, 8]}", "model.hidden=[8]", "train.max_steps=2", "train.warmup_steps=1000", "train.progress=false"])
    with pytest.warns(ConfigWarning, match=r"train\.warmup_steps=1000 is longer than the run's 2 steps: the learning rate never reaches train\.lr"):
        api.train(cfg, out=tmp_path)
    # more threads than cores: said when the run trains, not whenever a saved config is read (evaluate, show)
    many = (os.cpu_count() or 1) + 1
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", ConfigWarning)
        api.load("mlp_mnist", [f"train.num_threads={many}"])
    with pytest.warns(ConfigWarning, match=rf"train\.num_threads={many} is more than this machine's \d+ cores"):
        api.train(api.load("mlp_mnist", ["data.name=synthetic", "data.kwargs={n_train: 64, n_test: 16, image_shape: [1, 8, 8]}", "model.hidden=[8]", "train.max_steps=1", "train.progress=false", f"train.num_threads={many}"]), out=tmp_path / "t")


def test_yaml_reads_floats_without_a_dot_as_numbers_and_hints_at_booleans():
    """PyYAML (YAML 1.1) read 1e-3 as the string '1e-3', which reached a builder argument without a type
    annotation as text; YAML 1.2 and other tools read a number. A boolean where text is expected (notes: yes)
    says YAML read it so and to quote it."""
    from overlooked.config import check_type, load_yaml

    assert load_yaml("a: 1e-3\nb: 5E-4\nc: -2e+2\nd: '1e-3'\ne: 1e\nf: 10") == {"a": 0.001, "b": 0.0005, "c": -200.0, "d": "1e-3", "e": "1e", "f": 10}
    with pytest.raises(ConfigError, match=r"notes: expected str, got bool True \(YAML reads yes/no/on/off/true/false as booleans: quote the text"):
        check_type(True, str, "notes")
    with pytest.raises(ConfigError, match=r"name: expected str, got float 100000.0 \(YAML reads unquoted 1e5, 0x1F or 10 as a number: quote"):
        check_type(load_yaml("name: 1e5")["name"], str, "name")


def test_text_that_reads_as_a_number_round_trips_through_a_run_folder(tmp_path):
    """dump_yaml quotes text that load_yaml reads as a number ('1e3'), so a run named 1e3 is read back as
    written (its config.yaml would otherwise have held name: 1e3, read back as 1000.0 and refused)."""
    from overlooked import api
    from overlooked.config import dump_yaml, load_yaml

    data = {"name": "1e3", "notes": "5E-4", "lr": 1e-05, "x": 0.001}
    assert load_yaml(dump_yaml(data)) == data
    cfg = api.load("mlp_mnist", ["name='1e3'"])
    assert cfg.name == "1e3"
    api.write_config(tmp_path, cfg)
    assert api.run_config(tmp_path).name == "1e3"
