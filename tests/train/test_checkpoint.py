"""Checkpoints: round trip, atomic writes, foreign files refused without unpickling."""

from __future__ import annotations

import json
import os
import pickle
import stat

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch.optim.swa_utils import AveragedModel

from overlooked.errors import CheckpointError
from overlooked.train import checkpoint as ckpt
from overlooked.train.checkpoint import load_checkpoint, move_checkpoint, read_checkpoint, read_checkpoint_doc, save_checkpoint


def _model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))


def test_round_trip_model_optimizer_rng(tmp_path):
    model = _model()
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    model(torch.rand(5, 3)).sum().backward()
    opt.step()
    gen = torch.Generator().manual_seed(3)
    path = save_checkpoint(tmp_path / "c.safetensors", model, opt, {"augment": gen.get_state()}, {"step": 7})
    model2 = _model()
    with torch.no_grad():
        for p in model2.parameters():
            p.add_(1.0)
    opt2 = torch.optim.Adam(model2.parameters(), lr=0.5)
    rng, info = load_checkpoint(path, model2, opt2)
    assert info == {"step": 7}
    for a, b in zip(model.state_dict().values(), model2.state_dict().values()):
        assert torch.equal(a, b)
    assert opt2.param_groups[0]["lr"] == 0.1
    s1, s2 = opt.state_dict()["state"], opt2.state_dict()["state"]
    for k in s1:
        for key in s1[k]:
            assert torch.equal(torch.as_tensor(s1[k][key]), torch.as_tensor(s2[k][key]))
    gen2 = torch.Generator()
    gen2.set_state(rng["augment"])
    assert torch.equal(torch.rand(3, generator=gen), torch.rand(3, generator=gen2))
    assert not list(tmp_path.glob("*.tmp"))  # no temporary file left behind


def test_pickle_file_is_refused_not_loaded(tmp_path):
    path = tmp_path / "model.safetensors"

    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('unpickled!')",))

    path.write_bytes(pickle.dumps(Boom()))
    with pytest.raises(CheckpointError, match="not a readable safetensors file.*never loaded"):
        load_checkpoint(path, _model())


def test_foreign_safetensors_is_refused(tmp_path):
    path = tmp_path / "foreign.safetensors"
    save_file({"weight": torch.zeros(2)}, str(path))
    with pytest.raises(CheckpointError, match="not an overlooked checkpoint"):
        load_checkpoint(path, _model())


def test_checkpoint_for_another_model_is_refused(tmp_path):
    path = save_checkpoint(tmp_path / "c.safetensors", _model())
    with pytest.raises(CheckpointError, match="does not fit this model"):
        load_checkpoint(path, torch.nn.Linear(3, 2))
    with pytest.raises(CheckpointError, match="holds no optimiser state"):
        m = _model()
        load_checkpoint(path, m, torch.optim.SGD(m.parameters(), lr=0.1))


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.safetensors", _model())


def test_the_document_alone_is_read_without_the_tensors(tmp_path, monkeypatch):
    """resume needs only the step: the header is read, the tensors are not (load_file is never called)."""
    path = save_checkpoint(tmp_path / "c.safetensors", _model(), info={"state": {"step": 11}})
    full = read_checkpoint(path)[1]

    def no_tensors(*args, **kwargs):
        raise AssertionError("read_checkpoint_doc read the tensors")

    monkeypatch.setattr(ckpt, "load_file", no_tensors)
    assert read_checkpoint_doc(path) == full
    assert full["info"]["state"]["step"] == 11


@pytest.mark.parametrize(("kind", "says"), [("pickle", "not a readable safetensors"), ("foreign", "not an overlooked checkpoint"), ("missing", "does not exist")])
def test_the_document_reader_refuses_what_the_full_reader_refuses(tmp_path, kind, says):
    path = tmp_path / "x.safetensors"
    if kind == "pickle":
        path.write_bytes(pickle.dumps({"a": 1}))
    elif kind == "foreign":
        save_file({"weight": torch.zeros(2)}, str(path))
    with pytest.raises(CheckpointError, match=says):
        read_checkpoint_doc(path)


@pytest.mark.skipif(not hasattr(os, "O_DIRECTORY"), reason="directories are synced on POSIX only")
def test_a_checkpoint_write_syncs_the_file_and_then_its_folder(tmp_path, monkeypatch):
    """After the rename the folder is fsynced, so a power loss cannot leave it naming the old file or none."""
    synced: list[bool] = []
    real = os.fsync

    def record(fd):
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        real(fd)

    monkeypatch.setattr(ckpt.os, "fsync", record)
    save_checkpoint(tmp_path / "c.safetensors", _model())
    assert synced == [False, True] * 2  # per file (the .safetensors, then its .json): its data, then the folder after the rename


def _edited(tmp_path, name, edit_tensors=None, edit_doc=None):
    """A checkpoint of an Adam-trained ``_model()`` with its tensors or document edited, as a damaged file or
    one from another version would hold them."""
    import json

    from safetensors import safe_open

    model = _model()
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    model(torch.rand(5, 3)).sum().backward()
    opt.step()
    good = save_checkpoint(tmp_path / "good.safetensors", model, opt, {"torch": torch.get_rng_state()}, {"state": {"step": 1}})
    tensors = dict(read_checkpoint(good)[0])
    with safe_open(str(good), framework="pt") as fh:
        doc = json.loads(fh.metadata()["overlooked"])
    if edit_tensors:
        edit_tensors(tensors)
    if edit_doc:
        doc = edit_doc(doc)
    path = tmp_path / name
    save_file(tensors, str(path), metadata={"overlooked": json.dumps(doc)})
    return path


def test_checkpoint_contents_that_do_not_fit_are_named_before_anything_loads(tmp_path):
    """A bad-input review edited copies of checkpoints: integer weights loaded silently, a wrongly shaped Adam
    moment failed at the next step inside torch, a missing optimiser tensor was a KeyError, a JSON list as the
    document an AttributeError, a newer format version gave no fix."""

    def load(path):
        m = _model()
        return load_checkpoint(path, m, torch.optim.Adam(m.parameters(), lr=0.1))

    def int_weights(t):
        t["model.0.weight"] = (t["model.0.weight"] * 100).to(torch.int32)

    def short_moment(t):
        t["optim.0.exp_avg"] = torch.zeros(5)

    cases = [
        (int_weights, None, r"dtype mismatch \[.0.weight \(torch.int32, the model's torch.float32\).\]"),
        (short_moment, None, r"optim.0.exp_avg \[5\] for a parameter of shape \[4, 3\]"),
        (lambda t: t.pop("optim.0.exp_avg"), None, r"the optimiser state is damaged \(KeyError"),
        (None, lambda d: [d], r"metadata is not an 'overlooked-checkpoint' document"),
        (None, lambda d: {**d, "version": 2}, r"v2 is not v1, .*written by a newer version; load it with the version that wrote it"),
        (None, lambda d: {**d, "info": [1]}, r"the checkpoint's info is not a mapping"),
    ]
    for i, (tensors, doc, says) in enumerate(cases):
        with pytest.raises(CheckpointError, match=says):
            load(_edited(tmp_path, f"c{i}.safetensors", tensors, doc))
    m = _model().double()  # float32 -> float64 is a cast, not another file's tensors
    load_checkpoint(_edited(tmp_path, "ok.safetensors"), m)
    assert m[0].weight.dtype == torch.float64


def test_run_files_are_written_whole_or_not_at_all(tmp_path, monkeypatch):
    """A full disk while a run's small file is rewritten (a resume's environment.json, a summary) left it cut at
    4096 bytes and the run could no longer be resumed: now the old file stays whole and no temporary file is
    left. Also for config.yaml and for metrics.jsonl when a resume drops records."""
    import errno
    from pathlib import Path

    from overlooked import api
    from overlooked.train.checkpoint import write_text_atomic

    target = tmp_path / "environment.json"
    target.write_text('{"old": true}\n')
    real = Path.write_text

    def full_disk(self, text, *args, **kwargs):
        real(self, text[: len(text) // 2], *args, **kwargs)  # part of it lands, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", full_disk)
    with pytest.raises(OSError, match="No space left"):
        api._write_json(target, {"new": "x" * 10000})
    with pytest.raises(OSError, match="No space left"):
        write_text_atomic(tmp_path / "config.yaml", "a: 1\n")
    monkeypatch.setattr(Path, "write_text", real)
    assert target.read_text() == '{"old": true}\n' and sorted(p.name for p in tmp_path.iterdir()) == ["environment.json"]


def test_an_atomic_write_keeps_the_files_mode_and_writes_through_a_symlink(tmp_path):
    """The file replaced keeps its permissions (a 0600 summary came back 0644), and a symlinked run file is
    written at its target, the link kept (the link was replaced by a plain file, the target left stale)."""
    from overlooked.train.checkpoint import write_text_atomic

    private = tmp_path / "summary.json"
    private.write_text("{}")
    private.chmod(0o600)
    write_text_atomic(private, '{"a": 1}')
    assert stat.S_IMODE(private.stat().st_mode) == 0o600 and private.read_text() == '{"a": 1}'
    target = tmp_path / "elsewhere" / "config.yaml"
    target.parent.mkdir()
    target.write_text("old")
    link = tmp_path / "config.yaml"
    link.symlink_to(target)
    write_text_atomic(link, "new")
    assert link.is_symlink() and target.read_text() == "new"


def test_an_older_unversioned_or_foreign_format_document_is_refused(tmp_path):
    """Only this version's own document loads: an older (v0) or unversioned one, and a document whose format
    names another program, are refused with the fix, not read as if they were this format."""
    for name, edit in (("v0", lambda d: {**d, "version": 0}), ("none", lambda d: {k: v for k, v in d.items() if k != "version"})):
        with pytest.raises(CheckpointError, match=r"is not v1, .*written by another version"):
            load_checkpoint(_edited(tmp_path, f"{name}.safetensors", edit_doc=edit), _model())
    other = _edited(tmp_path, "other.safetensors", edit_doc=lambda d: {**d, "format": "someone-elses-checkpoint"})
    with pytest.raises(CheckpointError, match="metadata is not an 'overlooked-checkpoint' document"):
        load_checkpoint(other, _model())


def test_an_optimiser_state_that_does_not_fit_is_a_checkpoint_error(tmp_path):
    """A transposed Adam moment ([3, 4] for a [4, 3] weight: the same count) and another grouping of the
    parameters are named as a CheckpointError before anything loads, not left to fail inside torch."""
    def transpose(t):
        t["optim.0.exp_avg"] = t["optim.0.exp_avg"].T.contiguous()

    model = _model()
    with pytest.raises(CheckpointError, match=r"optim.0.exp_avg \[3, 4\] for a parameter of shape \[4, 3\]"):
        load_checkpoint(_edited(tmp_path, "t.safetensors", edit_tensors=transpose), model, torch.optim.Adam(model.parameters(), lr=0.1))
    grouped = torch.optim.Adam([{"params": list(model[0].parameters())}, {"params": list(model[2].parameters())}], lr=0.1)
    with pytest.raises(CheckpointError, match="its parameter groups differ from this optimiser's"):
        load_checkpoint(tmp_path / "good.safetensors", model, grouped)  # one group of four tensors, written by _edited


def test_a_full_disk_is_a_storage_error_naming_the_file(tmp_path):
    import errno

    from overlooked.errors import StorageError

    def full(tmp):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(StorageError, match=r"could not write .*summary\.json: No space left on device"):
        ckpt.write_atomic(tmp_path / "summary.json", full)


def test_average_weights_asked_of_a_checkpoint_without_them_say_so(tmp_path):
    path = save_checkpoint(tmp_path / "c.safetensors", _model())
    with pytest.raises(CheckpointError, match=r"holds no ema\.module\.\* weights; it was written without train\.ema_decay"):
        load_checkpoint(path, _model(), weights_from="ema.module")


# ---- pins from the mutation audit (results/audits/mutants_memory_ckpt_store.yaml): what a checkpoint refuses, and
# what it saves and restores (weights, the weight average, RNG states, the sidecar)


def _average_of(model: torch.nn.Module, offset: float) -> AveragedModel:
    ema = AveragedModel(model, use_buffers=True)
    with torch.no_grad():
        for p in ema.module.parameters():
            p.add_(offset)  # the average differs from the raw weights, so a mix-up shows
    return ema


def test_a_model_weight_of_the_same_count_but_transposed_is_refused(tmp_path):
    """A [4, 3] weight stored as [3, 4] (same number of values) is another model's tensor, named as a shape
    mismatch: not loaded, not a raw torch error."""
    path = save_checkpoint(tmp_path / "c.safetensors", _model())
    tensors = load_file(str(path))
    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata()
    tensors["model.0.weight"] = tensors["model.0.weight"].T.contiguous()
    save_file(tensors, str(path), metadata=meta)
    target = _model(1)
    before = target[0].weight.detach().clone()
    with pytest.raises(CheckpointError, match=r"shape mismatch \['0\.weight'\]"):
        load_checkpoint(path, target)
    assert torch.equal(target[0].weight, before)


def test_weights_from_the_average_load_the_averaged_weights_not_the_raw_ones(tmp_path):
    model = _model()
    ema = _average_of(model, 0.5)
    path = save_checkpoint(tmp_path / "c.safetensors", model, ema=ema)
    fresh = _model(7)
    load_checkpoint(path, fresh, weights_from="ema.module")
    for name, value in fresh.state_dict().items():
        assert torch.equal(value, ema.module.state_dict()[name]), name
        assert not torch.equal(value, model.state_dict()[name]), name
    raw = _model(7)
    load_checkpoint(path, raw)  # the default still reads the raw weights
    for name, value in raw.state_dict().items():
        assert torch.equal(value, model.state_dict()[name]), name


def test_resuming_with_an_average_restores_the_stored_average(tmp_path):
    model = _model()
    ema = _average_of(model, 0.25)
    ema.n_averaged.fill_(5)
    path = save_checkpoint(tmp_path / "c.safetensors", model, ema=ema)
    model2 = _model(3)
    ema2 = AveragedModel(model2, use_buffers=True)
    load_checkpoint(path, model2, ema=ema2)
    assert int(ema2.n_averaged) == 5
    for name, value in ema2.module.state_dict().items():
        assert torch.equal(value, ema.module.state_dict()[name]), name


def test_rng_states_come_back_under_the_names_they_were_saved_with(tmp_path):
    state = torch.Generator().manual_seed(11).get_state()
    path = save_checkpoint(tmp_path / "c.safetensors", _model(), rng={"torch": torch.get_rng_state(), "augment": state})
    rng, _ = load_checkpoint(path, _model())
    assert sorted(rng) == ["augment", "torch"]
    assert torch.equal(rng["augment"], state)
    assert sorted(k for k in read_checkpoint(path)[0] if k.startswith("rng.")) == ["rng.augment", "rng.torch"]


def test_moving_a_checkpoint_without_a_sidecar_removes_the_destinations_old_sidecar(tmp_path):
    """``best.json`` must describe ``best.safetensors``: a move of a checkpoint that has no readable sidecar may
    not leave the destination's old one (another step's info) beside the new tensors."""
    src = save_checkpoint(tmp_path / "last.safetensors", _model(), info={"step": 9})
    src.with_suffix(".json").unlink()
    dst = tmp_path / "best.safetensors"
    save_checkpoint(dst, _model(), info={"step": 3})
    assert json.loads(dst.with_suffix(".json").read_text()) == {"step": 3}
    move_checkpoint(src, dst)
    assert not src.exists() and not dst.with_suffix(".json").exists()
    assert read_checkpoint(dst)[1]["info"] == {"step": 9}


def test_moving_a_checkpoint_with_its_sidecar_moves_both(tmp_path):
    src = save_checkpoint(tmp_path / "last.safetensors", _model(), info={"step": 9})
    dst = tmp_path / "best.safetensors"
    move_checkpoint(src, dst)
    assert json.loads(dst.with_suffix(".json").read_text()) == {"step": 9}
    assert not src.exists() and not src.with_suffix(".json").exists()
