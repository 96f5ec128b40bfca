"""docs/results.md cannot drift from the committed run summaries; the fair-comparison rule is enforced."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from overlooked import api
from overlooked.bench.fair import UnfairComparisonError, check_fair
from overlooked.errors import OverlookedError

REPO = Path(__file__).resolve().parents[2]


def test_results_md_regenerates_identically(tmp_path):
    out = tmp_path / "results.md"
    shutil.copytree(REPO / "docs" / "figures", tmp_path / "figures")  # figures made by other commands are listed too
    api.report(runs=[str(REPO / "results" / "runs")], output=out)
    committed = (REPO / "docs" / "results.md").read_text()
    assert out.read_text() == committed, "docs/results.md is stale: run `overlooked report` and commit it"


def test_committed_runs_hold_no_checkpoints():
    runs = REPO / "results" / "runs"
    assert not list(runs.rglob("*.safetensors")), "checkpoints must not be committed"
    for folder in (p for p in runs.iterdir() if p.is_dir()):
        for name in ("config.yaml", "environment.json", "summary.json"):
            assert (folder / name).is_file(), f"{folder.name} lacks {name}"
        subs = [p for p in folder.iterdir() if p.is_dir()]  # repeats (seedN) or --each runs (key=value)
        curves = [folder] if not subs else [s for s in subs if not any(q.is_dir() for q in s.iterdir())]
        for run in curves:
            assert (run / "metrics.jsonl").is_file(), f"{run} lacks metrics.jsonl"


def test_fair_rule_rejects_mixed_splits_and_trials():
    row = {"model": "a", "params": 1, "flops_per_example": 1, "wall_time_s": 1.0, "examples_seen": 5, "data_fingerprint": "x", "trials": 2}
    check_fair([row, {**row, "model": "b"}], max_examples=5)
    with pytest.raises(UnfairComparisonError, match="different data splits"):
        check_fair([row, {**row, "model": "b", "data_fingerprint": "y"}], max_examples=5)
    with pytest.raises(UnfairComparisonError, match="different numbers of hyper-parameter trials"):
        check_fair([row, {**row, "model": "b", "trials": 3}], max_examples=5)
    with pytest.raises(UnfairComparisonError, match="more than 6"):
        check_fair([{**row, "trials": 7}], max_examples=5)
    a, b = {**row, "run": "runs/a", "test_examples": 10000}, {**row, "model": "b", "run": "runs/b", "test_examples": 1000}
    with pytest.raises(UnfairComparisonError, match=r"different numbers of test examples \(runs/a: 10000, runs/b: 1000"):
        check_fair([a, b], max_examples=5)
    with pytest.raises(UnfairComparisonError, match=r"data_fingerprint: runs/a: x, runs/b: y\)"):
        check_fair([a, {**b, "test_examples": 10000, "data_fingerprint": "y"}], max_examples=5)
    with pytest.raises(UnfairComparisonError, match=r"b \(runs/b\) saw 6 training examples"):
        check_fair([a, {**b, "test_examples": 10000, "examples_seen": 6}], max_examples=5)
    # a summary whose counts are null (not absent) is named as not reporting them, never a TypeError
    with pytest.raises(UnfairComparisonError, match=r"b \(runs/b\) does not report examples_seen"):
        check_fair([a, {**b, "test_examples": 10000, "examples_seen": None, "trials": None}], max_examples=5)
    started = {**b, "test_examples": 10000, "examples_seen": None, "init_from": {"run": "runs/c", "examples_seen": 100}}
    with pytest.raises(UnfairComparisonError, match=r"does not report examples_seen.*saw 100 training examples \(none recorded here, 100 in the run"):
        check_fair([a, started], max_examples=50)
    with pytest.raises(UnfairComparisonError, match=r"scored on different test examples \(test_fingerprint: runs/a: t1, runs/b: t2\)"):
        check_fair([{**a, "test_fingerprint": "t1"}, {**b, "test_examples": 10000, "test_fingerprint": "t2"}], max_examples=5)
    check_fair([{**a, "test_fingerprint": "t1"}, {**b, "test_examples": 10000, "test_fingerprint": "t1"}], max_examples=5)
    # a row scored on 500 of 10,000 test examples beside one that does not record its count (a review: accepted)
    limited = {**a, "test_examples": 500, "test_examples_available": 10000}
    with pytest.raises(UnfairComparisonError, match=r"runs/a was scored on part of the test split \(train.eval_limit\) and runs/b does not record"):
        check_fair([limited, {**b, "test_examples": None}], max_examples=5)
    check_fair([{**a, "test_examples_available": 10000}, {**b, "test_examples": None}], max_examples=5)  # a whole split beside an old row
    # unrecorded trials (absent or null) are named, never taken as 1: a recipe tuned over a dozen runs on the
    # split passed as one trial beside baselines that had one (the baselines audit)
    for c in ({**row, "model": "c", "trials": None}, {k: v for k, v in row.items() if k != "trials"} | {"model": "c"}):
        with pytest.raises(UnfairComparisonError, match=r"c does not record its hyper-parameter trials .* --trials RUN=N"):
            check_fair([{**row, "trials": 1}, c], max_examples=5)


def test_compare_refuses_missing_damaged_and_unfinished_folders(tmp_path):
    from overlooked import api
    from overlooked.errors import OverlookedError

    with pytest.raises(OverlookedError, match="does not exist"):
        api.compare([tmp_path / "nope"], 10)
    (tmp_path / "half").mkdir()
    with pytest.raises(OverlookedError, match="has no summary.json: it is unfinished"):
        api.compare([tmp_path / "half"], 10)
    (tmp_path / "half" / "summary.json").write_text("{not json")
    with pytest.raises(OverlookedError, match="is not valid JSON"):
        api.compare([tmp_path / "half"], 10)
    (tmp_path / "half" / "summary.json").write_text('{"model": "m"}')
    with pytest.raises(OverlookedError, match="reports no test_accuracy"):
        api.compare([tmp_path / "half"], 10)
    # a run copied under another name (an adversarial review's: two identical rows)
    src = REPO / "results" / "runs" / "kvmemnn_babi10k_joint_valpe-20261207-101916"
    import shutil

    shutil.copytree(src, tmp_path / "a")
    shutil.copytree(src, tmp_path / "b")
    with pytest.raises(OverlookedError, match=r"a and .*b hold the same summary\.json byte for byte \(one is a copy of the other\)"):
        api.compare([tmp_path / "a", tmp_path / "b"], 10**7)


def test_trials_are_recorded_and_checked(tmp_path):
    from overlooked import api
    from overlooked.errors import ConfigError

    cfg = api.load("mlp_mnist", ["data.name=synthetic", "data.kwargs={n_train: 32, n_test: 8, image_shape: [1, 4, 4]}", "model.hidden=[4]", "train.max_steps=1", "train.progress=false", "train.trials=3"])
    _, summary = api.train(cfg, out=tmp_path)
    assert summary["trials"] == 3
    with pytest.raises(ConfigError, match="train.trials must be >= 1"):
        api.load("mlp_mnist", ["train.trials=0"])


def test_capsule_runs_sit_beside_the_paper_with_budget_and_stop_reason(tmp_path):
    from overlooked.bench.report import Run, render_capsules

    refs = {"capsnet_mnist": {"capsule": True, "label": "CapsNet", "source": "§2.1", "error": 0.25, "port_error": 0.34}, "cnn_mnist": {"label": "x", "error": 1.0}}
    summary = {"test_accuracy": 0.996, "val_accuracy": 0.9962, "examples_seen": 1527360, "epochs": 28.28, "stopped_by": "max_minutes", "wall_time_s": 367.0}
    gpu = Run(tmp_path, {"name": "capsnet_mnist"}, {"gpu": "NVIDIA H200", "torch": "2.11"}, summary)
    other = Run(tmp_path, {"name": "cnn_mnist"}, {}, summary)  # a reference without `capsule: true` is not this table's
    lines = render_capsules([gpu, other], refs)
    rows = [line for line in lines if line.startswith("| `")]
    assert len(rows) == 1
    assert "| 0.40 error | 0.25 error (port 0.34) | 99.62 |" in rows[0]
    assert "1,527,360 examples, 28.3 epochs, stopped by max_minutes" in rows[0] and "NVIDIA H200 (CUDA), torch 2.11" in rows[0]
    assert render_capsules([other], refs) == []


def test_paper_scale_figure_plots_every_full_run_of_the_dataset(tmp_path):
    from overlooked.bench.report import Run

    def run(name, model, acc, flops, dataset="mnist", env=None):
        return Run(tmp_path, {"name": name}, env or {}, {"model": model, "dataset": dataset, "test_accuracy": acc, "flops_per_example": flops})

    runs = [run("cnn_mnist", "small_cnn", 0.99, 2e7), run("capsnet_mnist", "capsnet", 0.996, 4e8, env={"gpu": "NVIDIA H200"}), run("x", "mlp", 0.5, 1e6, dataset="babi")]
    (path,) = api.paper_scale_figures(runs, tmp_path / "figs")
    assert path.name == "runs_mnist_accuracy_flops.png" and path.stat().st_size > 1000
    assert api.paper_scale_figures(runs[:1], tmp_path / "none") == []  # one point is no comparison


def test_repeated_bench_figures_are_summarised_by_median_and_range(tmp_path):
    from overlooked.bench.report import render_benches

    def bench(name: str, value: float, commit: str) -> None:
        folder = tmp_path / name
        folder.mkdir()
        (folder / "bench.json").write_text(json.dumps({"family": "memory", "figures": [{"name": "train", "value": value, "unit": "stories/s"}]}))
        env = {"git_commit": commit, "cpu": "CPU", "torch_threads": 2, "date": "2026-12-05T07:00:00+00:00", "argv": ["overlooked", "bench", "memory"]}
        (folder / "environment.json").write_text(json.dumps(env))

    for i, value in enumerate((9000.0, 12000.0, 13000.0, 5000.0)):
        bench(f"bench-memory-{i}", value, "aaaaaaa1" if i < 3 else "bbbbbbb2")
    lines = render_benches([tmp_path])
    summary = [line for line in lines if line.startswith("| train |")]
    assert summary == ["| train | aaaaaaa | 3 | 12,000 stories/s | 9,000-13,000 | CPU (2 threads) | 2026-12-05 |"]  # bbbbbbb ran once
    assert sum(line.startswith("| `bench-memory-") for line in lines) == 4  # every run keeps its row
    assert not any("median" in line for line in render_benches([tmp_path], repeated_at=5))


def test_hardware_names_the_threads_the_run_trained_with():
    from overlooked.bench.report import _hardware

    env = {"cpu": "CPU", "torch_threads": 2, "torch": "2.13"}
    assert _hardware(env, {"train": {"num_threads": 1}}) == "CPU (1 threads), torch 2.13"
    assert _hardware(env, {"train": {}}) == "CPU (2 threads), torch 2.13"
    assert _hardware(env) == "CPU (2 threads), torch 2.13"


def test_babi_table_counts_exactly_five_percent_as_passed_and_fills_every_column(tmp_path):
    """A task at exactly 95.0% accuracy has 5.0% error, not failed (100 * (1 - 0.95) is 5.000000000000004 in
    floats); a one-model-per-task --repeats summary (per-task mean +- std, no spread over whole runs) still
    gives its footer a cell under every column."""
    from overlooked.bench.report import Run, render_babi

    acc = {"1": 0.95, "2": 0.9499, "3": 1.0}
    summary = {
        "repeats": 3,
        "best_by_train": {"seed": 0, "test_group_accuracy": acc},
        "best_by_val": {"seed": 1, "test_group_accuracy": acc},
        "group_error_mean": {"1": 6.0, "2": 7.0, "3": 2.0},
        "group_error_std": {"1": 1.0, "2": 1.0, "3": 0.0},
    }
    lines = render_babi(Run(tmp_path, {"name": "no_reference"}, {}, summary), {})
    table = [line for line in lines if line.startswith("|")]
    assert len({line.count("|") for line in table}) == 1  # header, rule, rows and footer: same number of cells
    assert table[-1] == "| mean (failed > 5%) | **3.34** (1 failed) | **3.34** (1 failed) | 5.00 |"


def test_babi_table_of_a_one_seed_each_run(tmp_path):
    """An --each run of one seed records ``repeats: 1`` beside its per-task accuracies and no best-of choice:
    it still gets its per-task table (it was dropped for 44 committed runs)."""
    from overlooked.bench.report import Run, render_babi

    summary = {"repeats": 1, "test_group_accuracy": {"1": 1.0, "2": 0.9}}
    table = [line for line in render_babi(Run(tmp_path, {"name": "x"}, {}, summary), {}) if line.startswith("|")]
    assert table[0] == "| task | ours |" and table[2:4] == ["| 1 | 0.0 |", "| 2 | 10.0 |"]


def test_report_refuses_a_runs_folder_it_cannot_use(tmp_path):
    from overlooked import api
    from overlooked.errors import OverlookedError

    with pytest.raises(OverlookedError, match="no such folder"):
        api.report([str(tmp_path / "nope")], output=tmp_path / "out" / "results.md")
    run = tmp_path / "runs" / "a-1"
    run.mkdir(parents=True)
    (run / "summary.json").write_text("{}")
    with pytest.raises(OverlookedError, match=r"is a run folder itself; pass the folder that holds run folders \(e.g. .*runs\)"):
        api.report([str(run)], output=tmp_path / "out" / "results.md")
    assert not (tmp_path / "out").exists()


def test_report_never_overwrites_a_file_it_did_not_write(tmp_path):
    """An adversarial review's: --output RUN/summary.json replaced a run's summary with Markdown (exit 0);
    --output x.html wrote the Markdown there, then the HTML over it; a hand-written results.md was replaced;
    a folder was an IsADirectoryError; --runs R R listed every run twice; an empty folder gave "No committed
    runs yet." with exit 0."""
    import shutil

    from overlooked import api
    from overlooked.errors import OverlookedError
    from overlooked.plots.common import written_by_overlooked

    runs = tmp_path / "results" / "runs"
    runs.mkdir(parents=True)
    src = REPO / "results" / "runs" / "kvmemnn_babi10k_joint_valpe-20261207-101916"
    shutil.copytree(src, runs / src.name)
    summary = (runs / src.name / "summary.json").read_bytes()
    for output, says in ((runs / src.name / "summary.json", r"name a Markdown file \(\.md\)"), (tmp_path / "page.html", r"name a Markdown file"),
                         (tmp_path, r"name a Markdown file")):
        with pytest.raises(OverlookedError, match=says):
            api.report([str(runs)], output=output)
    assert (runs / src.name / "summary.json").read_bytes() == summary
    mine = tmp_path / "docs" / "results.md"
    mine.parent.mkdir()
    mine.write_text("# my notes\n")
    with pytest.raises(OverlookedError, match=r"results\.md exists and was not written by `overlooked report`; refusing to overwrite it"):
        api.report([str(runs)], output=mine)
    assert mine.read_text() == "# my notes\n"
    written = api.report([str(runs)], output=mine, force=True)
    assert written[0] == mine and mine.with_suffix(".html").is_file()
    assert api.report([str(runs)], output=mine)[0] == mine  # its own page: regenerated without --force
    # A PNG of the report's figure name that no overlooked command wrote: put back, the report refused.
    figure = mine.parent / "figures" / f"{src.name}_tasks.png"
    assert written_by_overlooked(figure)  # the report's own figure carries the mark
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(1, 1))
    fig.savefig(figure)  # a user's PNG: matplotlib's own "Software" text
    plt.close(fig)
    theirs, page = figure.read_bytes(), mine.read_text()
    mine.write_text(page.replace("# ", "# (old) ", 1))
    with pytest.raises(OverlookedError, match=r"_tasks\.png existed and was not written by overlooked .*kept as it was, and .*results\.md not written: "
                                              r"move it away, name another --output, or pass --force"):
        api.report([str(runs)], output=mine)
    assert figure.read_bytes() == theirs and mine.read_text().startswith("# (old) ")
    (mine.parent / "figures" / "notes.png").write_bytes(b"not a png")  # another name: kept, shown, not a clash
    assert api.report([str(runs)], output=mine, force=True)[0] == mine
    assert written_by_overlooked(figure) and (mine.parent / "figures" / "notes.png").read_bytes() == b"not a png"
    with pytest.raises(OverlookedError, match=r"--runs names .* more than once"):
        api.report([str(runs), str(runs) + "/"], output=mine)
    (tmp_path / "empty").mkdir()
    with pytest.raises(OverlookedError, match=r"no run folders \(folders with a summary\.json\) inside; nothing to report"):
        api.report([str(tmp_path / "empty")], output=mine)
    (tmp_path / "a_file").write_text("")
    with pytest.raises(OverlookedError, match=r"a_file is a file, not a folder; give --output a folder"):
        api.report([str(runs)], output=tmp_path / "a_file" / "results.md")


def test_a_damaged_run_folder_is_named(tmp_path):
    from overlooked.bench.report import collect_runs
    from overlooked.errors import OverlookedError

    run = tmp_path / "runs" / "r1"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("name: r1\n")
    (run / "summary.json").write_text('{"test_accuracy": 0.9, "trunc')
    with pytest.raises(OverlookedError, match=r"r1/summary\.json is damaged \(JSONDecodeError: .*\); restore it from git or remove the folder$"):
        collect_runs([tmp_path / "runs"])
    (run / "summary.json").write_text('{"test_accuracy": 0.9}')
    (run / "config.yaml").write_text("name: [r1\n")  # an edit that no longer parses
    with pytest.raises(OverlookedError, match=r"r1/config\.yaml is damaged \(ParserError: .*\(line \d+\)\); restore it from git or remove the folder$"):
        collect_runs([tmp_path / "runs"])


def test_the_crossover_figure_is_drawn_from_the_newest_bench_that_measured_it(tmp_path):
    from overlooked.api import crossover_figure

    bench = tmp_path / "bench"
    rows = [{"name": f"event sim activity {a}% {k}", "value": v, "unit": "ms", "activity": a / 100, "path": k} for a, k, v in ((1, "event", 5.0), (1, "dense", 70.0), (50, "event", 150.0), (50, "dense", 70.0))]
    rows.append({"name": "event sim crossover activity (event faster below)", "value": 20.0, "unit": "%"})
    for name, figures in (("bench-spiking-20261101-000000", rows), ("bench-spiking-20261201-000000", rows[:1]), ("bench-memory-20261202-000000", [])):
        (bench / name).mkdir(parents=True)
        (bench / name / "bench.json").write_text(json.dumps({"figures": figures if name != "bench-spiking-20261201-000000" else [{"name": "neuron alone", "value": 1.0, "unit": "ms"}]}))
    (written,) = crossover_figure([bench], tmp_path / "figures")
    assert written.name == "spiking_event_crossover.png" and written.stat().st_size > 1000
    assert crossover_figure([tmp_path / "none"], tmp_path / "figures") == []
    (bench / "bench-spiking-20261203-000000").mkdir()
    (bench / "bench-spiking-20261203-000000" / "bench.json").write_text('{"figures": [')
    with pytest.raises(OverlookedError, match=r"bench-spiking-20261203-000000/bench.json is damaged \(JSONDecodeError"):
        crossover_figure([bench], tmp_path / "figures")


def test_the_header_names_run_folders_read_from_elsewhere():
    from overlooked.bench.report import HEADER, render_results

    assert render_results([], source=None).startswith(HEADER)
    text = render_results([], source="`/tmp/runs`")
    assert "from the run summaries under `/tmp/runs`" in text and "committed under" not in text.split("## Runs")[0]
    # the project's remarks on its own folder (a test regenerates it, ../shared/data) are not a user's report's
    assert "a test regenerates" not in text and "shared/data" not in text and "2026-12-05" not in text


def test_a_run_scored_on_the_first_test_examples_says_so_in_its_row(tmp_path):
    from overlooked.bench.report import Run, render_results

    summary = {"model": "mlp", "dataset": "mnist", "test_accuracy": 0.71, "test_examples": 500, "test_examples_available": 10000, "wall_time_s": 6.0}
    row = next(line for line in render_results([Run(tmp_path, {"name": "x"}, {}, summary)], source="runs").splitlines() if line.startswith(f"| `{tmp_path.name}`"))
    assert "| 71.00 (first 500 of 10,000) | 29.00 |" in row


def test_command_of_names_our_command_line_and_nothing_else_as_overlooked():
    from overlooked.bench.report import command_of

    rest = ["train", "cnn_mnist", "train.epochs=2"]
    for first in ("/x/.venv/bin/overlooked", "-m", "/x/src/overlooked/__main__.py"):
        assert command_of({"argv": [first, *rest]}) == "overlooked train cnn_mnist train.epochs=2"
    # another program that trained through the API keeps its own name (pytest's __main__ is not ours)
    assert command_of({"argv": ["/x/site-packages/pytest/__main__.py", "-q"]}) == "/x/site-packages/pytest/__main__.py -q"
    assert command_of({"argv": ["python", "scripts/pool_seeds.py"], "overlooked_data_env": "../d"}) == "OVERLOOKED_DATA=../d python scripts/pool_seeds.py"
    assert command_of({}) == command_of({"argv": []}) == "(unknown)"
    # quoted as a shell reads it back: brackets and spaces survive a copy-paste
    assert command_of({"argv": ["/x/src/overlooked/cli.py", "train", "memnn_babi1k", "data.tasks=[1, 2]"]}) == "overlooked train memnn_babi1k 'data.tasks=[1, 2]'"


def test_fair_rule_counts_the_run_it_started_from():
    row = {"model": "a", "params": 1, "flops_per_example": 1, "wall_time_s": 1.0, "examples_seen": 5, "data_fingerprint": "x", "trials": 1,
           "init_from": {"run": "runs/first", "examples_seen": 15}}
    check_fair([row], max_examples=20)
    with pytest.raises(UnfairComparisonError, match=r"a saw 20 training examples \(5 here, 15 in the run it started from\), over the budget of 19"):
        check_fair([row], max_examples=19)


def test_conversion_curves_keep_two_conversions_with_one_norm(tmp_path):
    """Two conversions of one source run with the same norm (other calibration or steps) are both drawn, not
    the later over the earlier under one label (an adversarial review)."""
    from overlooked.bench.report import CONVERSION, Run, conversion_curves

    def run(name, curve):
        summary = {"kind": CONVERSION, "source_run": "runs/mlp_mnist-1", "ann_test_accuracy": 0.98, "norm": "p99.9", "accuracy_curve": curve}
        return Run(tmp_path / name, {"name": "convert"}, {}, summary)

    runs = [run("convert-a", [0.5, 0.9]), run("convert-b", [0.6, 0.95])]
    curves, ann = conversion_curves(runs)["mlp_mnist-1"]
    assert ann == 0.98 and curves == {"SNN, p99.9 norm": [0.5, 0.9], "SNN, p99.9 norm (convert-b)": [0.6, 0.95]}


def test_report_and_compare_name_damaged_or_edited_files(tmp_path):
    """Damaged or edited files are named with the fix, never a raw AttributeError / TypeError, nor a "nan" row
    (an adversarial review): a summary holding a list, a summary's fields of the wrong type or range, a
    damaged bench.json or suite file, a references.yaml that is not a mapping of mappings, a note linking an
    image that does not exist (neither page written)."""
    import shutil

    from overlooked import api
    from overlooked.errors import OverlookedError

    src = REPO / "results" / "runs" / "kvmemnn_babi10k_joint_valpe-20261207-101916"
    runs = tmp_path / "results" / "runs"
    run = runs / src.name
    shutil.copytree(src, run)
    out = tmp_path / "docs" / "results.md"
    original = (run / "summary.json").read_text()
    for bad, message in (
        ("[1, 2]", "has a damaged summary.json: it holds a list"),
        (json.dumps({**json.loads(original), "test_accuracy": "0.9"}), r"test_accuracy is '0.9', not a fraction in \[0, 1\]"),
        (json.dumps({**json.loads(original), "trials": 0, "wall_time_s": float("nan")}), r"trials is 0, not a whole number >= 1; wall_time_s is nan"),
    ):
        (run / "summary.json").write_text(bad)
        with pytest.raises(OverlookedError, match=message):
            api.report([str(runs)], output=out)
        if bad != "[1, 2]":
            with pytest.raises(OverlookedError, match=message):
                api.compare([run], 10**8)
    (run / "summary.json").write_text(json.dumps({**json.loads(original), "wall_time_s": None}))
    assert api.report([str(runs)], output=out)[0] == out  # an unrecorded wall time is a dash, not a TypeError
    (run / "summary.json").write_text(original)
    (tmp_path / "results" / "references.yaml").write_text("- a list\n")
    with pytest.raises(OverlookedError, match="references.yaml must map each config name"):
        api.report([str(runs)], output=out)
    (tmp_path / "results" / "references.yaml").unlink()
    bench = tmp_path / "results" / "bench" / "bench-x"
    bench.mkdir(parents=True)
    (bench / "bench.json").write_text("{damaged")
    with pytest.raises(OverlookedError, match=r"bench.json is damaged \(JSONDecodeError"):
        api.report([str(runs)], output=out)
    (bench / "bench.json").write_text('{"family": "memory"}')
    with pytest.raises(OverlookedError, match="holds no list of figures"):
        api.report([str(runs)], output=out)
    shutil.rmtree(bench.parent)
    (tmp_path / "results" / "suites").mkdir()
    (tmp_path / "results" / "suites" / "s.json").write_text('{"rows": []}')
    with pytest.raises(OverlookedError, match="s.json is not a suite result"):
        api.report([str(runs)], output=out)
    shutil.rmtree(tmp_path / "results" / "suites")
    before = out.read_text()
    (run / "notes.md").write_text("See ![gone](figures/gone.png).\n")
    with pytest.raises(OverlookedError, match=r"'figures/gone.png' not found .*notes.md may link it.*neither .*results.md nor its .html was written"):
        api.report([str(runs)], output=out)
    assert out.read_text() == before


def test_read_json_names_a_damaged_or_unreadable_file_with_the_fix_for_a_committed_one(tmp_path):
    from overlooked.bench.report import read_json
    from overlooked.errors import OverlookedError

    path = tmp_path / "bench.json"
    path.write_text('{"rows": [1, 2]}')
    assert read_json(path) == {"rows": [1, 2]}
    path.write_bytes(b"\xff\xfe{")
    with pytest.raises(OverlookedError, match=r"bench\.json is damaged \(UnicodeDecodeError: .*\); restore it from git or remove it$"):
        read_json(path)
    path.unlink()
    with pytest.raises(OverlookedError, match=r"bench\.json cannot be read \(FileNotFoundError: .*\); restore it from git or remove it$"):
        read_json(path)
    path.mkdir()
    with pytest.raises(OverlookedError, match=r"bench\.json cannot be read \(IsADirectoryError: .*\); restore it from git or remove it$"):
        read_json(path)


def test_the_papers_mean_is_quoted_over_all_tasks_and_recomputed_over_a_runs_subset(tmp_path):
    """A run on all 20 tasks sits beside the paper's own quoted mean (1.4 here, not the 1.3 its per-task
    figures average to); a run on tasks 1 and 2 beside the paper's numbers on those two tasks (1.30 and 10.10:
    5.70, 1 failed), not beside its mean over 20."""
    from overlooked.bench.report import Run, render_babi

    refs = {"x": {"label": "X", "source": "S", "per_task_error": [1.3, 10.1] + [1.3] * 18, "mean_error": 1.4, "failed": 1}}
    every = Run(tmp_path, {"name": "x"}, {}, {"test_group_accuracy": {str(t): 1.0 for t in range(1, 21)}})
    (foot,) = [line for line in render_babi(every, refs) if line.startswith("| mean")]
    assert foot == "| mean (failed > 5%) | **0.00** (0 failed) | **1.4** (1 failed) |"
    two = Run(tmp_path, {"name": "x"}, {}, {"test_group_accuracy": {"1": 1.0, "2": 0.8}})
    (foot,) = [line for line in render_babi(two, refs) if line.startswith("| mean")]
    assert foot == "| mean (failed > 5%) | **10.00** (1 failed) | **5.70** (1 failed; its 2 tasks of 20) |"


def test_a_repeated_babi_table_by_hand():
    """Three tasks (1, 2, 4) of a run repeated over seeds, no reference: one column per selection rule (the
    training-error rule first), the mean over the run's own tasks (not over 20), the per-task mean +- std, and
    the mean over runs to two decimals."""
    from pathlib import Path

    from overlooked.bench.report import Run, render_babi

    s = {
        "best_by_train": {"seed": 2, "test_group_accuracy": {"1": 1.0, "2": 0.9, "4": 0.97}},  # errors 0, 10, 3
        "best_by_val": {"seed": 0, "test_group_accuracy": {"1": 0.99, "2": 0.8, "4": 1.0}},  # errors 1, 20, 0
        "repeats": 3,
        "group_error_mean": {"1": 0.5, "2": 15.0, "4": 2.0},
        "group_error_std": {"1": 0.5, "2": 5.0, "4": 1.0},
        "mean_group_error_over_runs": {"mean": 6.123, "std": 1.456},
    }
    table = [line for line in render_babi(Run(Path("r"), {"name": "x"}, {}, s), {}) if line.startswith("|")]
    assert table[0] == "| task | best by train (seed 2) | best by val (seed 0) | mean ± std over 3 runs |"
    assert table[2] == "| 1 | 0.0 | 1.0 | 0.5 ± 0.5 |" and table[4] == "| 4 | 3.0 | 0.0 | 2.0 ± 1.0 |"
    assert table[-1] == "| mean (failed > 5%) | **4.33** (1 failed) | **7.00** (1 failed) | 6.12 ± 1.46 |"


def test_paper_mean_uses_the_runs_own_tasks():
    """A run on tasks 2 and 3 is set beside the paper's errors on tasks 2 and 3 (6 and 8: mean 7.00, both failed),
    not its first two tasks (0 and 6)."""
    from overlooked.bench.report import Run, render_babi

    run = Run(Path("x"), {"name": "m"}, {}, {"test_group_accuracy": {"2": 1.0, "3": 0.9}})
    lines = render_babi(run, {"m": {"per_task_error": [0.0, 6.0, 8.0] + [0.0] * 17, "source": "s", "label": "L"}})
    assert any("**7.00** (2 failed; its 2 tasks of 20)" in line for line in lines)


def test_exactly_six_trials_is_allowed():
    row = {"model": "a", "params": 1, "flops_per_example": 1, "wall_time_s": 1.0, "examples_seen": 5, "data_fingerprint": "x", "trials": 6}
    assert check_fair([row], max_examples=5) is None


def test_time_call_takes_the_median(monkeypatch):
    """Timed calls of 1, 3, 2 and 10 s: median 2.5, mean 4, min 1."""
    from overlooked.bench import timing

    ticks = iter([0.0, 1.0, 0.0, 3.0, 0.0, 2.0, 0.0, 10.0])
    monkeypatch.setattr(timing.time, "perf_counter", lambda: next(ticks))
    got = timing.time_call(lambda: None, warmup=0, repeats=4)
    assert (got["median_s"], got["mean_s"], got["min_s"]) == (2.5, 4.0, 1.0)
