"""`overlooked show RUN` on an unfinished run: how far it came, from the folder alone (api.run_progress)."""

from __future__ import annotations

import json
import shutil

import pytest

from overlooked import api
from overlooked.cli import main

# synthetic data: 100 images, 10 held out for validation -> 90 training examples, batch 30 -> 3 steps an epoch
TINY = [
    "train.progress=false", "train.num_threads=1", "data.name=synthetic", "data.kwargs={n_train: 100, n_test: 40, image_shape: [1, 8, 8]}",
    "model.input_shape=[1,8,8]", "model.hidden=[8]", "train.batch_size=30", "train.epochs=4",
]


def test_an_unfinished_run_shows_its_progress_best_and_how_to_resume(tmp_path, capsys):
    """A run of 4 epochs x 3 steps, as if killed after its last checkpoint (summary.json removed): step 12 of 12,
    360 of 360 examples, the last record's scores, the best step the checkpoint names, and the resume command."""
    run, summary = api.train(api.load("mlp_mnist", TINY), out=tmp_path)
    assert summary["steps"] == 12 and summary["examples_seen"] == 360
    (run / "summary.json").unlink()
    progress = api.run_progress(run)
    assert progress["finished"] is False and progress["step"] == progress["total_steps"] == 12
    assert progress["examples_seen"] == progress["total_examples"] == 360 and progress["epoch"] == 4
    assert progress["best_step"] == summary["best_step"] and progress["checkpoint_step"] == 12 and not progress["stopped_by_clock"]
    assert progress["minutes_left"] == 0.0
    last = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()][-1]
    assert progress["last"] == last
    assert main(["show", str(run)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{summary['name']}: model mlp on synthetic, unfinished"
    assert out[1] == "progress: step 12 of 12 (epoch 4.00 of 4), 360 of 360 examples (100.0%)"
    assert out[2].startswith(f"last validation pass: step 12: val_accuracy {last['val_accuracy']:.4f}, val_loss {last['val_loss']:.4f}")
    assert out[3] == f"best so far (val_accuracy): {progress['best_metric']:.4f} at step {summary['best_step']}"
    assert out[-2] == f"resumable from step 12 (the last checkpoint; no process is training it now): overlooked train --resume {run}"


def test_a_run_stopped_by_the_clock_says_so_before_and_after_its_summary(tmp_path, capsys):
    """max_minutes ends the run after its first step, between validation passes: its summary says how to train
    it on; without the summary (killed during the final report) the progress names the stop, step 1 of 12."""
    run, summary = api.train(api.load("mlp_mnist", [*TINY, "train.max_minutes=1e-9"]), out=tmp_path)
    assert summary["stopped_by"] == "max_minutes" and summary["steps"] == 1
    assert main(["show", str(run)]) == 0
    assert f"stopped by train.max_minutes after 0.33 epochs; to train it on: overlooked train --resume {run}" in capsys.readouterr().out
    (run / "summary.json").unlink()
    progress = api.run_progress(run)
    assert progress["step"] == 1 and progress["stopped_by_clock"] and progress["checkpoint_step"] == 1
    assert progress["total_steps"] == 12 and progress["total_examples"] == 360  # the record's epoch, 1/3, gives the epoch's length
    assert main(["show", str(run)]) == 0
    out = capsys.readouterr().out
    assert "progress: step 1 of 12 (epoch 0.33 of 4), 30 of 360 examples (8.3%)" in out
    assert "resumable from step 1 (stopped by train.max_minutes (a resume drops the extra validation pass of that stop); no process" in out


def test_a_repeats_folder_shows_each_seed(tmp_path, capsys):
    """--repeats 2 with seed 1 unfinished: seed 0 is named finished, seed 1 gets its progress."""
    cfg = api.load("mlp_mnist", [*TINY, "train.repeats=2"])
    run, _ = api.train(cfg, out=tmp_path)
    (run / "summary.json").unlink()
    (run / "seed1" / "summary.json").unlink()
    progress = api.run_progress(run)
    assert sorted(progress["runs"]) == ["seed0", "seed1"] and progress["runs"]["seed0"]["finished"] and not progress["runs"]["seed1"]["finished"]
    assert main(["show", str(run)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1:3] == ["seed0:", f"  {run / 'seed0'}: finished (overlooked show {run / 'seed0'})"]
    assert out[3] == "seed1:" and out[4] == "  progress: step 12 of 12 (epoch 4.00 of 4), 360 of 360 examples (100.0%)"
    shutil.rmtree(run / "seed1" / "checkpoints")
    assert api.run_progress(run)["runs"]["seed1"]["checkpoint_step"] is None  # no checkpoint: nothing to resume from


def test_a_folder_another_process_trains_is_refused_and_shown_as_training(tmp_path, capsys):
    """Another holder of the folder's lock (here a second open file description, as another process would
    have): resume is refused by name before environment.json or metrics.jsonl change, and show says the run
    is being trained; once the holder lets go, the resume runs."""
    import fcntl
    import os

    from overlooked.train.runlock import RunBusyError

    run, _ = api.train(api.load("mlp_mnist", [*TINY, "train.max_minutes=1e-9"]), out=tmp_path)
    before = {name: (run / name).read_bytes() for name in ("environment.json", "metrics.jsonl", "summary.json")}
    fd = os.open(run, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        try:
            api.resume(run)
        except RunBusyError as exc:
            assert "is being trained by another process now" in str(exc) and f"overlooked show {run}" in str(exc)
        else:
            raise AssertionError("a resume of a folder another process trains was not refused")
        assert {name: (run / name).read_bytes() for name in before} == before
        (run / "summary.json").unlink()
        assert api.run_progress(run)["training_now"] is True
        assert main(["show", str(run)]) == 0
        out = capsys.readouterr().out
        assert "being trained now by a process that holds the folder's lock" in out and "overlooked train --resume" not in out
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    assert api.run_progress(run)["training_now"] is False
    config = run / "config.yaml"
    config.write_text(config.read_text().replace("max_minutes: 1.0e-09", "max_minutes: null"))
    _, summary = api.resume(run)
    assert summary["steps"] == 12 and summary["stopped_by"] == "epochs"


class _Holder:
    """Another process's hold on a folder's training lock, as a second open file description gives it."""

    def __init__(self, folder, shared: bool = False):
        import fcntl
        import os

        self.fd = os.open(folder, os.O_RDONLY)
        fcntl.flock(self.fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)

    def release(self):
        import fcntl
        import os

        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


def _files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_resuming_a_repeats_or_each_folder_refuses_a_seed_or_value_another_process_trains(tmp_path, monkeypatch):
    """A --repeats folder with seed 1 unstarted (killed before its first checkpoint) and held by another process
    (`--resume RUN/seed1` there): resuming the parent is refused at seed 1 before its files are set aside. An
    --each folder whose value folder is held: refused before the folder is read or renamed."""
    from overlooked.train import runlock
    from overlooked.train.runlock import RunBusyError

    monkeypatch.setattr(runlock, "WAIT_S", 0.05)
    run, _ = api.train(api.load("mlp_mnist", [*TINY, "train.repeats=2"]), out=tmp_path / "r")
    (run / "summary.json").unlink()
    (run / "seed1" / "summary.json").unlink()
    shutil.rmtree(run / "seed1" / "checkpoints")
    before = _files(run / "seed1")
    holder = _Holder(run / "seed1")
    try:
        try:
            api.resume(run)
        except RunBusyError as exc:
            assert str(run / "seed1") in str(exc)
        else:
            raise AssertionError("the held seed folder was not refused")
        assert _files(run / "seed1") == before and not (run / "summary.json").exists()
    finally:
        holder.release()

    cfg = api.load("mlp_mnist", TINY)
    each, _ = api.train_each(cfg, "train.lr", [0.01, 0.02], out=tmp_path / "e")
    (each / "summary.json").unlink()
    (each / "lr=0.02" / "summary.json").unlink()
    shutil.rmtree(each / "lr=0.02" / "checkpoints")  # nothing to continue from: a resume would set it aside
    holder = _Holder(each / "lr=0.02")
    try:
        try:
            api.resume(each)
        except RunBusyError:
            pass
        else:
            raise AssertionError("the held value folder was not refused")
        assert sorted(p.name for p in each.iterdir() if p.is_dir()) == ["lr=0.01", "lr=0.02"]  # nothing set aside
    finally:
        holder.release()
    _, merged = api.resume(each)
    assert sorted(p.name for p in each.iterdir() if p.is_dir()) == [".lr=0.02.interrupted", "lr=0.01", "lr=0.02"] and merged["each"]["values"] == [0.01, 0.02]


def test_a_run_is_held_until_its_summary_is_written(tmp_path, monkeypatch):
    """The lock covers the final report (FLOPs, summary), not only training: a probe from inside the FLOP count
    sees the run as training."""
    from overlooked.train.runlock import is_training

    seen = []
    real = api.flops_per_example

    def probing(*args, **kwargs):
        seen.append(is_training(tmp_path / "run"))
        return real(*args, **kwargs)

    monkeypatch.setattr(api, "flops_per_example", probing)
    api.train(api.load("mlp_mnist", TINY), run_dir=tmp_path / "run")
    assert seen == [True] and (tmp_path / "run" / "summary.json").is_file() and is_training(tmp_path / "run") is False


def test_a_filesystem_that_refuses_the_lock_trains_unlocked_with_one_warning(tmp_path, monkeypatch):
    """flock on a folder fails with EBADF on NFS: the run trains, warned once; show calls the state unknown.
    A probe takes a shared lock, which another probe's shared lock does not block."""
    import errno

    import pytest

    from overlooked.train import runlock

    held = _Holder(tmp_path, shared=True)  # another `overlooked show` probing at the same moment
    try:
        assert runlock.is_training(tmp_path) is False
    finally:
        held.release()

    def refuse(fd, op):
        raise OSError(errno.EBADF, "Bad file descriptor")

    monkeypatch.setattr(runlock.fcntl, "flock", refuse)
    monkeypatch.setattr(runlock, "_WARNED", set())
    with pytest.warns(RuntimeWarning, match="cannot be locked here"):
        run, summary = api.train(api.load("mlp_mnist", TINY), run_dir=tmp_path / "run")
    assert summary["steps"] == 12 and runlock.is_training(run) is None


def test_show_of_an_each_of_repeats_and_a_damaged_checkpoint_record(tmp_path, capsys):
    """--each over two values with 2 seeds each, one value unfinished: its seeds are listed under it; a last.json
    that cannot be read is named, and the progress comes from the records."""
    cfg = api.load("mlp_mnist", [*TINY, "train.repeats=2"])
    each, _ = api.train_each(cfg, "train.lr", [0.01, 0.02], out=tmp_path)
    (each / "summary.json").unlink()
    (each / "lr=0.02" / "summary.json").unlink()
    (each / "lr=0.02" / "seed1" / "summary.json").unlink()
    (each / "lr=0.02" / "seed1" / "checkpoints" / "last.json").write_text("{cut")
    assert main(["show", str(each)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1] == "lr=0.01:" and out[2].startswith("  ") and out[2].endswith("finished (overlooked show " + str(each / "lr=0.01") + ")")
    assert out[3:5] == ["lr=0.02:", "  seed0:"] and out[6] == "  seed1:"
    assert out[7] == "    progress: step 12 of 12 (epoch 4.00 of 4), 360 of 360 examples (100.0%)"
    assert any(line.startswith("    its checkpoint's record cannot be read: ") for line in out)


def test_a_stopped_run_being_resumed_shows_its_progress_not_the_stops_summary(tmp_path, capsys):
    """A run stopped by max_minutes has a summary; while a process resumes it (holds its lock), show gives the
    progress and says it is being trained, not the stopped run's summary."""
    run, _ = api.train(api.load("mlp_mnist", [*TINY, "train.max_minutes=1e-9"]), out=tmp_path)
    holder = _Holder(run)
    try:
        assert api.run_progress(run)["finished"] is False
        assert main(["show", str(run)]) == 0
        out = capsys.readouterr().out
        assert ", unfinished\nprogress: step 1 of 12" in out and "being trained now" in out and "test_accuracy" not in out
    finally:
        holder.release()
    assert main(["show", str(run)]) == 0
    assert "test_accuracy: " in capsys.readouterr().out


def test_progress_takes_the_epoch_from_a_checkpoint_newer_than_the_last_record(tmp_path):
    """Validation every 7 steps (3 steps an epoch), a checkpoint every step: with its last record (step 12)
    dropped, as a kill between the checkpoint and the record leaves it, the progress is the checkpoint's step 12
    at epoch 4.00, and the total comes from the record at step 7 (epoch 7/3: 3 steps, 90 examples an epoch)."""
    run, _ = api.train(api.load("mlp_mnist", [*TINY, "train.eval_every=7", "train.checkpoint_every=1"]), out=tmp_path)
    (run / "summary.json").unlink()
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [7, 12]
    (run / "metrics.jsonl").write_text(lines[0] + "\n")
    progress = api.run_progress(run)
    assert progress["step"] == 12 and progress["epoch"] == 4.0 and progress["total_steps"] == 12
    assert progress["total_examples"] == 360 and progress["last"]["step"] == 7


LOCK_HOLDER = """
import sys
from overlooked.train.runlock import training_lock
with training_lock(sys.argv[1]):
    print("held", flush=True)
    sys.stdin.read()  # until the test closes our stdin
"""


def test_a_process_inside_training_lock_refuses_a_second(tmp_path):
    """The lock a training process holds is exclusive: another process probing it sees a run being trained, and
    its own training_lock on the folder is refused (after waiting WAIT_S); once the holder ends, it is free."""
    import subprocess
    import sys

    from overlooked.train import runlock

    run = tmp_path / "run"
    run.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(run)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert runlock.is_training(run) is True
        with pytest.raises(runlock.RunBusyError, match="being trained by another process"):
            with runlock.training_lock(run):
                pass
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert runlock.is_training(run) is False
    with runlock.training_lock(run):
        assert runlock.is_training(run) is True  # this process holds it now


def test_progress_total_is_the_epochs_when_max_steps_is_larger(tmp_path):
    """4 epochs x 3 steps = 12 steps, train.max_steps=100 never reached: the total is min(12, 100) = 12 steps and
    12 x 30 = 360 examples, not max_steps' 100 steps (3,000 examples)."""
    run, summary = api.train(api.load("mlp_mnist", [*TINY, "train.max_steps=100"]), out=tmp_path)
    assert summary["steps"] == 12 and summary["stopped_by"] == "epochs"
    (run / "summary.json").unlink()
    progress = api.run_progress(run)
    assert progress["total_steps"] == 12 and progress["total_examples"] == 360 and progress["step"] == 12
