"""MultiMNIST: two digits of different classes, each shifted by at most 4 px, deterministic from the seed,
test pairs from MNIST test digits only; the top-2 metric."""

from __future__ import annotations

import pytest
import torch

from overlooked.data.multimnist import MultiMNISTPairs, both_correct, place


def _digits(n=40, seed=0):
    images = torch.zeros(n, 28, 28)
    images[:, 10:18, 10:18] = torch.rand(n, 8, 8, generator=torch.Generator().manual_seed(seed)) + 0.5  # a centred blob
    return images.clamp(max=1), torch.arange(n) % 10


def test_pairs_are_deterministic_different_classes_and_shifted_at_most_4px():
    images, labels = _digits()
    ds = MultiMNISTPairs(images, labels, n=500, seed=7)
    batch = ds[torch.arange(500)]
    again = MultiMNISTPairs(images, labels, n=500, seed=7)[torch.tensor([3, 499, 0])]
    torch.testing.assert_close(again["image"], batch["image"][[3, 499, 0]])  # any index regenerates exactly
    assert not torch.equal(MultiMNISTPairs(images, labels, 500, seed=8)[torch.arange(500)]["image"], batch["image"])
    assert batch["image"].shape == (500, 1, 36, 36)
    assert (batch["labels"][:, 0] != batch["labels"][:, 1]).all()
    assert (batch["label"].sum(1) == 2).all()
    torch.testing.assert_close(batch["image"], torch.maximum(batch["image_a"], batch["image_b"]))
    for key in ("image_a", "image_b"):  # the blob sits at rows/cols 14..21 when centred: shifts within +-4
        rows = batch[key][:, 0].sum(2).nonzero()
        first_row = torch.zeros(500, dtype=torch.long).scatter_reduce(0, rows[:, 0], rows[:, 1], "amin", include_self=False)
        assert first_row.min() == 14 - 4 and first_row.max() == 14 + 4  # the extremes occur in 500 draws
    assert set(batch["labels"].flatten().tolist()) == set(range(10))


def test_digits_come_from_the_given_split_only():
    images, labels = _digits()
    test_like = MultiMNISTPairs(images[:20], labels[:20], n=200, seed=0)[torch.arange(200)]
    mass = test_like["image_a"].sum((1, 2, 3))  # every digit used is one of the 20 given
    allowed = images[:20].sum((1, 2))
    assert all(torch.isclose(allowed, m).any() for m in mass)


def test_place_puts_the_digit_at_its_shift():
    d = torch.zeros(1, 28, 28)
    d[0, 0, 0] = 1.0
    out = place(d, torch.tensor([-4]), torch.tensor([3]))
    assert out.shape == (1, 36, 36) and out[0, 0, 7] == 1.0 and out.sum() == 1.0


def test_both_correct_is_order_free_and_strict():
    scores = torch.tensor([[0.1, 0.9, 0.8, 0.0], [0.9, 0.1, 0.8, 0.85]])
    assert both_correct(scores, torch.tensor([[2, 1], [0, 2]])).tolist() == [True, False]


def test_subset_and_source_tensors_pin_the_generated_pairs():
    images, labels = _digits()
    ds = MultiMNISTPairs(images, labels, n=50, seed=3)
    sub = ds.subset(torch.tensor([4, 9]))
    torch.testing.assert_close(sub[torch.arange(2)]["image"], ds[torch.tensor([4, 9])]["image"])
    src = ds.source_tensors()
    assert src["params"].tolist() == [50, 3, 4] and torch.equal(src["images"], images)


def test_both_correct_drives_the_trainers_accuracy():
    """evaluate() with the dataset's metric scores both_correct, not arg-max against the multi-hot target."""
    from overlooked.objectives import MultiLabelBCE
    from overlooked.train.evaluate import evaluate

    images, labels = _digits()
    ds = MultiMNISTPairs(images, labels, n=20, seed=1)
    batch = ds[torch.arange(20)]

    class Oracle(torch.nn.Module):  # scores the two true classes highest for the first 15 examples only
        def forward(self, image):
            k = image.shape[0]
            scores = torch.zeros(k, 10)
            scores[torch.arange(k)[:, None], batch["labels"][:k]] = 1.0
            scores[15:] = torch.arange(10.0)  # top two: classes 9 and 8
            return scores

    wrong_by_chance = int(both_correct(torch.arange(10.0).expand(5, 10), batch["labels"][15:]).sum())
    res = evaluate(Oracle(), ds, ("image",), "label", MultiLabelBCE(), batch_size=20, metric="both_correct")
    assert res["accuracy"] == (15 + wrong_by_chance) / 20


@pytest.mark.data
def test_a_multimnist_run_is_scored_both_correct_by_train_and_evaluate(tmp_path, data_dir):
    """The trainer's summary and `overlooked evaluate` agree, both under the dataset's both_correct metric."""
    from overlooked import api
    from overlooked.config import ExperimentConfig

    cfg = ExperimentConfig.from_dict(
        {
            "name": "mm_tiny",
            "data": {"name": "multimnist", "kwargs": {"n_train": 64, "n_val": 16, "n_test": 16}},
            "model": {"name": "mlp", "kwargs": {"hidden": [16]}},
            "objective": {"name": "multilabel_bce"},
            "train": {"epochs": 1, "max_steps": 2, "batch_size": 32, "progress": False},
        }
    )
    run, summary = api.train(cfg, data_dir=str(data_dir), out=tmp_path)
    assert summary["metric"] == "both_correct"
    res = api.evaluate(run, split="test", data_dir=str(data_dir))
    assert res["n"] == 16 and res["accuracy"] == summary["test_accuracy"]


def test_a_source_split_without_every_class_is_named():
    from overlooked.data.multimnist import MultiMNISTPairs
    from overlooked.errors import DataError

    with pytest.raises(DataError, match=r"holds 0 digits with none of class\(es\) \[0, 1, 2, 3, 4, 5, 6, 7, 8, 9\] \(an empty split: give data.val_fraction > 0\)"):
        MultiMNISTPairs(torch.zeros(0, 28, 28), torch.zeros(0, dtype=torch.long), 10, seed=0)
    with pytest.raises(DataError, match=r"none of class\(es\) \[9\]"):
        MultiMNISTPairs(torch.zeros(9, 28, 28), torch.arange(9), 10, seed=0)


def test_an_index_past_the_pairs_is_refused_as_a_tensors_would_be():
    images, labels = _digits()
    pairs = MultiMNISTPairs(images, labels, n=50, seed=0)
    with pytest.raises(IndexError, match=r"MultiMNIST index \[50\] out of range for 50 examples"):
        pairs[torch.tensor([3, 50])]
    last = pairs[torch.tensor([49])]["image"]
    assert torch.equal(pairs[torch.tensor([-1])]["image"], last)  # negative indices count from the end
