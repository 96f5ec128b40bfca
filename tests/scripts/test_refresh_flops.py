"""scripts/refresh_flops.py: recomputes flops_per_example of finished runs, leaves and parents, as training
wrote it, and changes nothing else."""

from __future__ import annotations

import json

import pytest

from overlooked import api
from overlooked.config import ExperimentConfig

TINY = {
    "name": "tiny",
    "data": {"name": "synthetic", "kwargs": {"n_train": 64, "n_test": 16, "image_shape": [1, 4, 4]}},
    "model": {"name": "mlp", "kwargs": {"hidden": [8]}},
    "train": {"epochs": 1, "max_steps": 2, "batch_size": 16, "progress": False, "repeats": 2},
}


@pytest.fixture(scope="module")
def refresh_flops(load_script):
    return load_script("refresh_flops")


def test_refresh_restores_what_training_wrote(refresh_flops, tmp_path):
    run, summary = api.train(ExperimentConfig.from_dict(TINY), out=tmp_path)
    files = sorted(run.rglob("summary.json"))
    assert len(files) == 3 and summary["flops_per_example"] > 0
    before = {f: json.loads(f.read_text()) for f in files}
    for f in files:
        f.write_text(json.dumps({**before[f], "flops_per_example": 1}))
    assert refresh_flops.refresh(run) == summary["flops_per_example"]
    for f in files:
        assert json.loads(f.read_text()) == before[f]
