"""smallNORB reader on small files the test writes in the NORB binary matrix format."""

from __future__ import annotations

import gzip
import hashlib

import numpy as np
import pytest
import torch

from overlooked.data import smallnorb as N
from overlooked.data import store
from overlooked.errors import ConfigError, DataError


def _write(path, array, magic):
    dims = list(array.shape) + [1] * max(0, 3 - array.ndim)  # at least 3 dimensions are stored
    header = np.array([magic, array.ndim, *dims], dtype="<i4").tobytes()
    path.write_bytes(header + np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes())


def _fake_split(root, split, n, seed):
    rng = np.random.default_rng(seed)
    folder = root / "smallnorb"
    folder.mkdir(parents=True, exist_ok=True)
    images = rng.integers(0, 256, size=(n, 2, 96, 96), dtype=np.uint8)
    labels = (np.arange(n) % 5).astype(np.int32)
    info = rng.integers(0, 9, size=(n, 4)).astype(np.int32)
    _write(folder / N.FILES[split].format("dat"), images, 0x1E3D4C55)
    _write(folder / N.FILES[split].format("cat"), labels, 0x1E3D4C54)
    _write(folder / N.FILES[split].format("info"), info, 0x1E3D4C54)
    return images, labels, info


def test_read_norb_matrix_roundtrip_and_bad_files(tmp_path):
    images, labels, info = _fake_split(tmp_path, "train", 4, 0)
    got, got_labels, got_info = N.load_smallnorb_split("train", tmp_path)
    assert torch.equal(got, torch.from_numpy(images)) and got_labels.tolist() == labels.tolist()
    assert torch.equal(got_info, torch.from_numpy(info).long())
    bad = tmp_path / "bad.mat"
    bad.write_bytes(np.array([0x1234, 1, 4, 1, 1], dtype="<i4").tobytes() + b"\0" * 4)
    with pytest.raises(DataError, match="unknown NORB magic"):
        N.read_norb_matrix(bad)
    short = tmp_path / "short.mat"
    short.write_bytes(np.array([0x1E3D4C55, 1, 10, 1, 1], dtype="<i4").tobytes() + b"\0" * 3)
    with pytest.raises(DataError, match="header says"):
        N.read_norb_matrix(short)


def test_smallnorb_splits_downsample_both_views(tmp_path):
    _fake_split(tmp_path, "train", 10, 1)
    _fake_split(tmp_path, "test", 5, 2)
    splits = N.smallnorb(data_dir=tmp_path, image_size=48, val_fraction=0.2, normalize=False)
    assert len(splits.train) == 8 and len(splits.val) == 2 and len(splits.test) == 5
    batch = splits.test[torch.arange(5)]
    assert batch["image"].shape == (5, 2, 48, 48) and 0 <= batch["image"].min() and batch["image"].max() <= 1
    with pytest.raises(DataError, match="missing file .*smallnorb-5x46789x9x18x6x2x96x96-training-dat.mat.gz"):
        N.smallnorb(data_dir=tmp_path / "nowhere")


def test_gzipped_files_as_served_read_like_the_gunzipped_ones(tmp_path):
    """The store keeps smallNORB as the server sends it (.mat.gz); the loader reads those equally."""
    images, labels, info = _fake_split(tmp_path / "plain", "train", 3, 4)
    folder = tmp_path / "gz" / "smallnorb"
    folder.mkdir(parents=True)
    for kind in ("dat", "cat", "info"):
        name = N.FILES["train"].format(kind)
        (folder / f"{name}.gz").write_bytes(gzip.compress((tmp_path / "plain" / "smallnorb" / name).read_bytes()))
    with pytest.raises(DataError, match="training-dat.mat.gz failed its checksum"):  # not the published files
        N.load_smallnorb_split("train", tmp_path / "gz")
    got = N.load_smallnorb_split("train", tmp_path / "gz", verify=False)
    want = N.load_smallnorb_split("train", tmp_path / "plain")
    for a, b in zip(got, want):
        assert torch.equal(a, b)
    (folder / f"{N.FILES['train'].format('cat')}.gz").write_bytes(b"not gzip")
    with pytest.raises(DataError, match="not a readable gzip file"):
        N.load_smallnorb_split("train", tmp_path / "gz", verify=False)


def test_smallnorb_download_entries_cover_every_file_with_a_sha256():
    checks = store.dataset_files("smallnorb")
    assert sorted(c.path for c in checks) == sorted(f"smallnorb/{N.FILES[s].format(k)}.gz" for s in N.FILES for k in ("dat", "cat", "info"))
    assert all(c.algorithm == "sha256" and len(c.digest) == 64 and int(c.digest, 16) >= 0 for c in checks)
    assert store.SOURCES["smallnorb"].remote_name(checks[0].path) == checks[0].path.split("/")[-1]
    # the digests TensorFlow Datasets lists for the official files (tensorflow_datasets/url_checksums/smallnorb.txt):
    # only a download exercises them, so a changed character would show on a user's machine first
    tfds = {
        "5x01235x9x18x6x2x96x96-testing-cat": "ecaf6d5bb8c3bc5eab9cf0258f6d2198dd474e016e374836fc097f2e5ff509ff",
        "5x01235x9x18x6x2x96x96-testing-dat": "cf7104eed3e51174d2f65b66d1e5878b9da233b886f161b0d88f4510ba2c7474",
        "5x01235x9x18x6x2x96x96-testing-info": "16adf314226327ee006d1a44db8cfef52773c06c829951d5653a9f6f310248a2",
        "5x46789x9x18x6x2x96x96-training-cat": "2784e542c1922060691090952b6cd6278879a216c90f81476f0f00256d42cdaa",
        "5x46789x9x18x6x2x96x96-training-dat": "5ffd6272a07d32695ee1082a26a41a93a37aab8c28da047f8c34ed348d214873",
        "5x46789x9x18x6x2x96x96-training-info": "de7eb932ebe7a4ee16217fead60660d0eb3d23632c2f4d1c51f88c501c17bf32",
    }
    assert {c.path: c.digest for c in checks} == {f"smallnorb/smallnorb-{name}.mat.gz": digest for name, digest in tfds.items()}


def test_smallnorb_fetch_rejects_a_file_that_is_not_the_official_one(tmp_path, monkeypatch):
    """A mirror serving other bytes under the official name fails the checksum and nothing is kept."""
    www = tmp_path / "www"
    www.mkdir()
    name = N.FILES["train"].format("cat") + ".gz"
    (www / name).write_bytes(gzip.compress(b"fake"))
    assert hashlib.sha256((www / name).read_bytes()).hexdigest() != store.expected_check("smallnorb", f"smallnorb/{name}").digest
    with pytest.raises(DataError, match="checksum"):
        store.fetch("smallnorb", tmp_path / "root", mirrors=[www.as_uri() + "/"], files=[f"smallnorb/{name}"])
    assert not (tmp_path / "root" / "smallnorb" / name).exists()


def test_the_three_files_of_a_split_are_checked_against_each_other(tmp_path):
    import gzip

    _fake_split(tmp_path, "train", 6, 0)
    folder = tmp_path / "smallnorb"
    cat = folder / N.FILES["train"].format("cat")
    _write(cat, (np.arange(6) % 5 + 3).astype(np.int32), 0x1E3D4C54)  # labels 3..7
    with pytest.raises(DataError, match=r"-cat.mat: labels must be 0..4 .*found 3..7"):
        N.load_smallnorb_split("train", tmp_path)
    _write(cat, (np.arange(5) % 5).astype(np.int32), 0x1E3D4C54)  # 5 labels for 6 image pairs
    with pytest.raises(DataError, match=r"hold \[5\] labels, 6 image pairs and 6 info rows"):
        N.load_smallnorb_split("train", tmp_path)
    dat = folder / N.FILES["train"].format("dat")
    _write(dat, np.zeros((6, 96, 96), np.uint8), 0x1E3D4C55)  # no stereo axis
    with pytest.raises(DataError, match=r"-dat.mat: expected stereo images \[N, 2, H, W\]"):
        N.load_smallnorb_split("train", tmp_path)
    bad = tmp_path / "bad.mat.gz"
    bad.write_bytes(gzip.compress(b"x" * 100)[:12] + b"\xff" * 30)  # a broken deflate stream
    with pytest.raises(DataError, match="not a readable gzip file"):
        N.read_norb_matrix(bad)


def test_smallnorb_as_the_em_paper_feeds_it_normalised_views_and_centre_crops(tmp_path):
    """Hinton et al. 2018, section 5: "We downsample smallNORB to 48 x 48 pixels and normalize each image to
    have zero mean and unit variance. During training, we randomly crop 32 x 32 patches ... During test, we crop
    a 32 x 32 patch from the center." Each view of each pair is one image here."""
    _fake_split(tmp_path, "train", 10, 1)
    _fake_split(tmp_path, "test", 5, 2)
    raw = N.smallnorb(data_dir=tmp_path, val_fraction=0.2, normalize=False)
    splits = N.smallnorb(data_dir=tmp_path, val_fraction=0.2)  # normalize is the default
    x = splits.train.tensors["image"]
    torch.testing.assert_close(x.mean(dim=(2, 3)), torch.zeros(8, 2), atol=1e-5, rtol=0)
    torch.testing.assert_close(x.std(dim=(2, 3), unbiased=False), torch.ones(8, 2), atol=1e-4, rtol=0)
    r = raw.train.tensors["image"]  # the same images, standardised view by view
    torch.testing.assert_close(x, (r - r.mean(dim=(2, 3), keepdim=True)) / r.std(dim=(2, 3), keepdim=True, unbiased=False))

    cropped = N.smallnorb(data_dir=tmp_path, val_fraction=0.2, crop=32)
    assert cropped.meta["image_shape"] == (2, 32, 32) and cropped.meta["train_image_shape"] == (2, 48, 48)
    assert cropped.train.tensors["image"].shape[1:] == (2, 48, 48)  # cut by the random_crop augmentation
    assert cropped.val.tensors["image"].shape[1:] == cropped.test.tensors["image"].shape[1:] == (2, 32, 32)
    assert torch.equal(cropped.test.tensors["image"], splits.test.tensors["image"][..., 8:40, 8:40])  # the centre
    assert torch.equal(cropped.val.tensors["label"], splits.val.tensors["label"])
    for bad in (0, 49, 2.5):
        with pytest.raises(ConfigError, match=r"smallnorb: crop=.* must be a whole number of pixels from 1 to image_size=48"):
            N.smallnorb(data_dir=tmp_path, crop=bad)


def test_a_cropped_smallnorb_run_needs_the_random_crop_augmentation(tmp_path, monkeypatch):
    """Training images stay 48x48 for the crop; without random_crop the first step would feed them to a model
    built for 32x32. Named before the run starts, with the fix; with the augmentation the checks pass."""
    from overlooked import api

    _fake_split(tmp_path, "train", 10, 1)
    _fake_split(tmp_path, "test", 5, 2)
    cfg = api.load("capsule_em_smallnorb", ["augment=null", "train.progress=false"])
    splits = api.build_data(cfg, str(tmp_path))
    with pytest.raises(ConfigError, match=r"keeps its training images at \[2, 48, 48\] .* reads \[2, 32, 32\].*after no augmentation they are \[2, 48, 48\].*random_crop, kwargs: \{size: 32\}"):
        api.check_transforms(cfg, splits, None, None)
    cfg = api.load("capsule_em_smallnorb", ["model.routing_backend=reference"])
    aug = api.AUGMENTATIONS.create(cfg.augment.name, **cfg.augment.kwargs)
    api.check_transforms(cfg, splits, aug, None)
    model = api.build_model(cfg, splits.meta)
    out = model(aug(splits.train[torch.arange(2)], torch.Generator().manual_seed(0))["image"])
    assert out["logits"].shape == (2, 5)


def test_a_cropped_smallnorb_train_split_is_scored_on_its_centre_patch(tmp_path):
    """The training images stay 48x48 for random_crop; the final report and evaluate scored them whole (a
    MatrixCapsNet takes any size, so nothing failed). Splits.scored gives them as the model reads them."""
    _fake_split(tmp_path, "train", 10, 1)
    _fake_split(tmp_path, "test", 5, 2)
    cropped = N.smallnorb(data_dir=tmp_path, val_fraction=0.2, crop=32)
    scored = cropped.scored("train")
    assert scored.tensors["image"].shape[1:] == (2, 32, 32) and torch.equal(scored.tensors["label"], cropped.train.tensors["label"])
    assert torch.equal(scored.tensors["image"], cropped.train.tensors["image"][..., 8:40, 8:40])
    assert cropped.scored("test") is cropped.test and cropped.scored("val") is cropped.val
    whole = N.smallnorb(data_dir=tmp_path, val_fraction=0.2)
    assert whole.scored("train") is whole.train  # nothing kept larger: the split itself


def test_a_cropped_smallnorb_run_reports_its_train_split_on_32x32_inputs(tmp_path, monkeypatch):
    from overlooked import api
    from overlooked.capsules.matrix import MatrixCapsNet

    _fake_split(tmp_path, "train", 10, 1)
    _fake_split(tmp_path, "test", 5, 2)
    seen = []
    forward = MatrixCapsNet.forward
    monkeypatch.setattr(MatrixCapsNet, "forward", lambda self, image: (seen.append(tuple(image.shape[1:])), forward(self, image))[1])
    cfg = api.load("capsule_em_smallnorb", ["model.routing_backend=reference", "model.A=4", "model.B=2", "model.C=2", "model.D=2", "train.max_steps=1", "train.batch_size=4", "train.progress=false", "train.num_threads=1"])
    _, summary = api.train(cfg, data_dir=str(tmp_path), out=tmp_path / "runs")
    assert set(seen) == {(2, 32, 32)} and summary["train_examples"] == 9
