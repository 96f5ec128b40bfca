"""Gas-sensor drift: the strict parser, the batch-1 protocol and its scaling, and the real files' counts."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from overlooked.data.gas import batch_path, gas_drift, parse_line, read_batch
from overlooked.errors import DataError, DataWarning
from overlooked.objectives import CrossEntropy
from overlooked.train.evaluate import evaluate


def _line(gas: int, conc: float, values: list[float]) -> str:
    return f"{gas};{conc:.6f} " + " ".join(f"{i}:{v:.6f}" for i, v in enumerate(values, 1))


def _write_root(tmp_path, batches: dict[int, list[tuple[int, float]]]):
    """A data root with ``batchN.dat`` files; row r of batch b has gas g and every feature = value."""
    folder = tmp_path / "uci_gas_sensor_drift"
    folder.mkdir()
    for b, rows in batches.items():
        (folder / f"batch{b}.dat").write_text("".join(_line(g, 10.0 * b, [v] * 128) + "\n" for g, v in rows))
    return tmp_path


def test_parse_line_hand_values():
    values = [float(i) for i in range(1, 129)]
    values[5] = -2.739388
    cls, conc, feats = parse_line(_line(6, 250.0, values))
    assert (cls, conc, len(feats)) == (5, 250.0, 128) and feats[0] == 1.0 and feats[5] == -2.739388 and feats[127] == 128.0


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("", "empty line"),
        ("7;10.0 " + " ".join(f"{i}:1" for i in range(1, 129)), "expected '<gas 1-6>;<concentration>'"),
        ("1:10.0 " + " ".join(f"{i}:1" for i in range(1, 129)), "expected '<gas 1-6>;<concentration>'"),
        ("1;ten " + " ".join(f"{i}:1" for i in range(1, 129)), "concentration 'ten' is not a number"),
        ("0;10 " + " ".join(f"{i}:1" for i in range(1, 129)), "expected '<gas 1-6>;<concentration>' first, found '0;10'"),
        ("1;-5 " + " ".join(f"{i}:1" for i in range(1, 129)), "concentration '-5' is not a finite non-negative number"),
        ("1;inf " + " ".join(f"{i}:1" for i in range(1, 129)), "concentration 'inf' is not a finite non-negative number"),
        ("1;10 " + " ".join(f"{i}:1" for i in range(1, 128)), "expected 128 'index:value' features, found 127"),
        ("1;10 " + " ".join(f"{i if i != 7 else 8}:1" for i in range(1, 129)), "feature 7: expected '7:<value>', found '8:1'"),
        ("1;10 " + " ".join(f"{i}:{'x' if i == 3 else 1}" for i in range(1, 129)), "feature 3: value 'x' is not a number"),
        ("1;10 " + " ".join(f"{i}:{'nan' if i == 9 else 1}" for i in range(1, 129)), "feature 9: value 'nan' is not finite"),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path, line, why):
    path = tmp_path / "batch1.dat"
    path.write_text(_line(1, 10.0, [1.0] * 128) + "\n" + line + "\n" + _line(2, 5.0, [1.0] * 128) + "\n")  # between measurements
    with pytest.raises(DataError, match=rf"batch1\.dat, line 2: {__import__('re').escape(why)}"):
        read_batch(path)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(DataError, match="missing gas-sensor batch file"):
        read_batch(tmp_path / "batch1.dat")
    (tmp_path / "batch1.dat").write_text("")
    with pytest.raises(DataError, match="no measurements"):
        read_batch(tmp_path / "batch1.dat")


def test_protocol_scaling_from_training_rows_only_and_missing_batches(tmp_path):
    # batch 1: 10 rows, feature value = row index 0..9, gas alternating 1/2; batch 2: two rows; batch 3 absent.
    root = _write_root(tmp_path, {1: [(1 + r % 2, float(r)) for r in range(10)], 2: [(3, 100.0), (1, 0.0)], 4: [(6, 4.5)]})
    with pytest.warns(DataWarning, match=r"batch\(es\) \[3, 5, 6, 7, 8, 9, 10\] are not in"):
        s = gas_drift(data_dir=str(root), val_fraction=0.2, seed=0, verify=False)  # hand-made files: no official checksum
    assert (len(s.train), len(s.val), len(s.test)) == (8, 2, 3)
    assert s.meta["test_batches"] == (2, 4) and s.meta["missing_batches"] == [3, 5, 6, 7, 8, 9, 10]
    assert s.meta["group_key"] == "batch" and s.test.tensors["batch"].tolist() == [2, 2, 4]
    # split_train_val(10, 0.2, seed=0) keeps rows [0, 2, 3, 5, 6, 7, 8, 9] for training (values = row index):
    # mean 40 / 8 = 5.0, population variance (25+9+4+0+1+4+9+16) / 8 = 8.5. All 10 rows would give mean 4.5.
    assert s.val.tensors["concentration"].tolist() == [10.0, 10.0] and s.val.tensors["label"].tolist() == [1, 0]
    mean, std = 5.0, 8.5**0.5
    assert s.test.tensors["features"][0, 0].item() == pytest.approx((100.0 - mean) / std, rel=1e-6)
    assert s.test.tensors["features"][2, 5].item() == pytest.approx((4.5 - mean) / std, rel=1e-6)
    assert s.train.tensors["features"].mean().item() == pytest.approx(0.0, abs=1e-6)
    assert s.test.tensors["label"].tolist() == [2, 0, 5] and s.test.tensors["concentration"].tolist() == [20.0, 20.0, 40.0]
    with pytest.raises(DataError, match="batch3.dat"):
        gas_drift(data_dir=str(root), test_batches=(3,), verify=False)
    with pytest.raises(DataError, match="not used for training"):
        gas_drift(data_dir=str(root), test_batches=(1,), verify=False)


def test_group_accuracy_per_batch(tmp_path):
    root = _write_root(tmp_path, {1: [(1 + r % 2, float(r)) for r in range(10)], 2: [(1, 0.0), (2, 0.0)], 3: [(1, 0.0)]})
    with pytest.warns(DataWarning, match="the test covers batches"):
        s = gas_drift(data_dir=str(root), val_fraction=0.2, verify=False)

    class AlwaysEthanol(nn.Module):
        def forward(self, x):
            return torch.tensor([1.0, 0, 0, 0, 0, 0]).expand(x.shape[0], 6)

    res = evaluate(AlwaysEthanol(), s.test, s.input_keys, s.target_key, CrossEntropy(), group_key=s.meta["group_key"])
    assert res["group_accuracy"] == {"2": 0.5, "3": 1.0} and res["accuracy"] == pytest.approx(2 / 3)


@pytest.mark.data
@pytest.mark.slow
def test_real_batches_counts(data_dir):
    b4 = read_batch(data_dir / batch_path(4))
    # MANIFEST §4.4: 161 rows; gases 1..6 = 64/43/12/30/12/0
    assert b4["features"].shape == (161, 128) and b4["label"].bincount(minlength=6).tolist() == [64, 43, 12, 30, 12, 0]
    with pytest.warns(DataWarning, match=r"gas_drift: batch\(es\) \[7, 10\] are not in .*the test covers batches \[2, 3, 4, 5, 6, 8, 9\] only"):
        s = gas_drift(data_dir=str(data_dir))  # the partial copy: said at load, not only in the meta
    assert len(s.train) + len(s.val) == 445 and s.meta["test_batches"] == (2, 3, 4, 5, 6, 8, 9)
    assert s.meta["missing_batches"] == [7, 10]
    assert s.test.tensors["batch"].bincount(minlength=10).tolist() == [0, 0, 1244, 1586, 161, 197, 2300, 0, 294, 470]


@pytest.mark.data
def test_a_changed_batch_file_fails_its_checksum_unless_verify_is_off(tmp_path, data_dir):
    """The loader checks the archive's sha256 before reading (a changed value would otherwise load as data)."""
    import shutil

    folder = tmp_path / "uci_gas_sensor_drift"
    folder.mkdir()
    for b in (1, 2):
        shutil.copy(data_dir / batch_path(b), folder / f"batch{b}.dat")
    text = (folder / "batch1.dat").read_text()
    first, rest = text.split("\n", 1)
    (folder / "batch1.dat").write_text(first.replace("1:", "1:9", 1) + "\n" + rest)  # one value changed
    with pytest.raises(DataError, match="batch1.dat failed its checksum"):
        gas_drift(data_dir=str(tmp_path), test_batches=(2,))
    edited = gas_drift(data_dir=str(tmp_path), test_batches=(2,), verify=False)
    real = gas_drift(data_dir=str(data_dir), test_batches=(2,))
    assert (len(edited.train), len(edited.val)) == (len(real.train), len(real.val))
    assert not torch.equal(edited.train.tensors["features"], real.train.tensors["features"])  # the edit was read


def test_batch_numbers_are_whole_numbers_and_a_missing_later_batch_is_named(tmp_path):
    root = _write_root(tmp_path, {1: [(1 + r % 2, float(r)) for r in range(10)], 9: [(2, 1.0)]})
    for bad in ("12", (1.9,), (True,)):
        with pytest.raises(DataError, match="train_batches must be a list of whole batch numbers"):
            gas_drift(data_dir=str(root), train_batches=bad, verify=False)
    with pytest.raises(DataError, match="test_batches must be a list of whole batch numbers"):
        gas_drift(data_dir=str(root), test_batches=(1.7,), verify=False)
    with pytest.raises(DataError, match=r"no batch after the training batches \(9,\) to test on: batch\(es\) \[10\] are not in"):
        gas_drift(data_dir=str(root), train_batches=(9,), verify=False)


def test_blank_lines_are_accepted_at_the_end_only(tmp_path):
    root = _write_root(tmp_path, {1: [(1, 0.5), (2, 1.5)]})
    path = root / batch_path(1)
    text = path.read_text()
    path.write_text(text + "\n\n")
    assert read_batch(path)["label"].tolist() == [0, 1]
    first, second = text.splitlines(keepends=True)
    path.write_text(first + "\n" + second)
    with pytest.raises(DataError, match=r"line 2.*empty line"):
        read_batch(path)
    path.write_text(first + "\n\n" + second)  # two blank lines: the first is named
    with pytest.raises(DataError, match=r"batch1\.dat, line 2: empty line"):
        read_batch(path)


def test_a_batch_named_twice_is_refused():
    """An adversarial review's: train_batches=[1, 1] / test_batches=[2, 2] were read once but recorded twice."""
    from overlooked.data.gas import _batch_numbers
    from overlooked.errors import DataError

    with pytest.raises(DataError, match=r"test_batches names batch\(es\) \[2\] more than once"):
        _batch_numbers([2, 2, 3], "test_batches")
    assert _batch_numbers([2, 3], "test_batches") == (2, 3)


@pytest.mark.data
def test_a_val_fraction_leaving_no_training_measurement_is_named_before_any_warning(data_dir):
    import warnings

    from overlooked.data.gas import gas_drift
    from overlooked.errors import DataError

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's "degrees of freedom" warning came first
        with pytest.raises(DataError, match=r"val_fraction=0\.9999 leaves no training measurement of the \d+ in batches \[1\]"):
            gas_drift(data_dir=data_dir, val_fraction=0.9999)
