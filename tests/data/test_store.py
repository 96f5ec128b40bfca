"""The data store: data-root resolution, checksums, and fetching from a loopback HTTP server."""

from __future__ import annotations

import gzip
import io
import shutil
import socket
import tarfile
import threading
import warnings
import zipfile
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from overlooked.data import store
from overlooked.errors import DataError

QA3_10K = "babi/tasks_1-20_v1-2/en-10k/qa3_three-supporting-facts_train.txt"
MNIST_LABELS = "mnist/train-labels-idx1-ubyte.gz"


# --------------------------------------------------------------------------------------------------------
# Resolution and the file table


def test_resolve_data_dir_prefers_explicit_then_env_then_home(tmp_path, monkeypatch):
    explicit, env_dir, home = tmp_path / "explicit", tmp_path / "env", tmp_path / "home"
    monkeypatch.setenv("OVERLOOKED_DATA", str(env_dir))
    monkeypatch.setenv("HOME", str(home))
    assert store.resolve_data_dir(explicit) == explicit
    assert store.resolve_data_dir(str(explicit)) == explicit
    assert store.resolve_data_dir() == env_dir
    monkeypatch.delenv("OVERLOOKED_DATA")
    assert store.resolve_data_dir() == home / ".cache" / "overlooked"
    monkeypatch.setenv("OVERLOOKED_DATA", "")  # empty counts as unset
    assert store.resolve_data_dir() == home / ".cache" / "overlooked"


def test_file_table_has_every_file_with_its_algorithm():
    counts = {name: len(store.dataset_files(name)) for name in store.dataset_names()}
    assert counts == {"affnist": 1, "babi": 82, "mnist": 4, "nmnist_small": 1102, "smallnorb": 6, "uci_gas_sensor_drift": 10}
    algorithms = {c.path: c.algorithm for name in store.dataset_names() for c in store.dataset_files(name)}
    assert algorithms[QA3_10K] == "git-blob-sha1"
    assert algorithms["babi/tasks_1-20_v1-2/en/qa1_single-supporting-fact_train.txt"] == "sha256"
    assert algorithms[MNIST_LABELS] == "gunzip-md5"
    assert algorithms["nmnist_small/samples/60100.bs2"] == "sha256"
    assert algorithms["uci_gas_sensor_drift/batch7.dat"] == "sha256"


def test_unknown_dataset_lists_known_names():
    with pytest.raises(DataError, match="known datasets: affnist, babi, mnist, nmnist_small, smallnorb, uci_gas_sensor_drift"):
        store.verify("cifar10")


@pytest.mark.data
def test_file_table_matches_shared_layout(data_dir):
    """Every file in the data folder is one the store knows, and the datasets our results use are there
    (this machine's copy lacks bAbI's 10k task 3 training file; a complete copy passes too)."""
    on_disk = {
        p.relative_to(data_dir).as_posix()
        for p in data_dir.rglob("*")
        if p.is_file() and p.name not in ("SHA256SUMS", "MANIFEST.md")
    }
    listed = {c.path for name in store.dataset_names() for c in store.dataset_files(name)}
    assert on_disk <= listed, sorted(on_disk - listed)
    for name, may_lack in (("babi", {QA3_10K}), ("mnist", set()), ("nmnist_small", set())):
        lacking = {c.path for c in store.dataset_files(name)} - on_disk
        assert lacking <= may_lack, (name, sorted(lacking))


@pytest.mark.data
def test_verify_shared_data_matches_the_files_on_disk(data_dir):
    """``verify`` reports as missing exactly the listed files that are absent, and every present file
    matches its checksum (the checksums in the store are those of the official downloads)."""
    reports = {name: store.verify(name, data_dir) for name in store.dataset_names()}
    for name, report in reports.items():
        absent = sorted(c.path for c in store.dataset_files(name) if not (data_dir / c.path).is_file())
        assert sorted(report.missing) == absent, name
        assert not report.mismatched, (name, report.mismatched)
        assert report.complete == (not absent)
    assert reports["mnist"].complete
    babi_ok = len(store.dataset_files("babi")) - len(reports["babi"].missing)
    expected = f"dataset 'babi' under {data_dir}: {babi_ok} file(s) ok"
    if reports["babi"].missing:
        expected += f"\n{len(reports['babi'].missing)} file(s) missing:\n" + "\n".join(f"  {data_dir / p}" for p in reports["babi"].missing)
    assert str(reports["babi"]) == expected
    gas = reports["uci_gas_sensor_drift"]
    if gas.missing:
        with pytest.raises(DataError, match=gas.missing[0].rsplit("/", 1)[-1]):
            gas.raise_if_incomplete()


def test_git_blob_sha1_matches_git_hash_object(tmp_path):
    path = tmp_path / "hello.txt"
    path.write_bytes(b"hello\n")
    assert store.file_digest(path, "git-blob-sha1") == "ce013625030ba8dba906f756967f9e9ca394464a"
    good = store.FileCheck("hello.txt", "git-blob-sha1", "ce013625030ba8dba906f756967f9e9ca394464a")
    assert store.check_file(path, good) is None
    bad = store.FileCheck("hello.txt", "git-blob-sha1", "0" * 40)
    assert "failed its checksum" in store.check_file(path, bad)
    assert store.check_file(tmp_path / "absent.txt", good) == "missing"


def test_verify_reports_mismatch_and_missing(tmp_path):
    (tmp_path / "mnist").mkdir()
    with gzip.open(tmp_path / MNIST_LABELS, "wb") as f:
        f.write(b"not the labels")
    report = store.verify("mnist", tmp_path)
    assert not report.complete
    assert report.missing == [
        "mnist/t10k-images-idx3-ubyte.gz",
        "mnist/t10k-labels-idx1-ubyte.gz",
        "mnist/train-images-idx3-ubyte.gz",
    ]
    assert list(report.mismatched) == [MNIST_LABELS]
    assert "a25bea736e30d166cdddb491f175f624" in report.mismatched[MNIST_LABELS]


def test_ensure_names_missing_file_folder_and_fix(tmp_path):
    with pytest.raises(DataError) as info:
        store.ensure("mnist", tmp_path, download=False, files=[MNIST_LABELS])
    message = str(info.value)
    assert str(tmp_path / MNIST_LABELS) in message
    assert f"looked in folder {tmp_path / 'mnist'}" in message
    assert "overlooked data fetch mnist" in message and "OVERLOOKED_DATA" in message
    assert "t10k" not in message  # only the requested file is reported


# --------------------------------------------------------------------------------------------------------
# Fetching from a loopback server


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # keep the test output clean
        pass


@pytest.fixture
def server(tmp_path, monkeypatch):
    """A loopback HTTP server over ``tmp_path / "www"``; yields ``(base_url, www_dir, requested_paths)``."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "*")
    www = tmp_path / "www"
    www.mkdir()
    requested: list[str] = []

    class Handler(_QuietHandler):
        def do_GET(self):
            requested.append(self.path)
            super().do_GET()

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(www)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", www, requested
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*.part"))


@pytest.mark.data
def test_fetch_mnist_falls_back_to_second_mirror(server, tmp_path, data_dir):
    base, www, requested = server
    shutil.copytree(data_dir / "mnist", www / "mirror2")
    root = tmp_path / "root"
    mirrors = [f"{base}/dead/", f"{base}/mirror2/"]
    assert store.fetch("mnist", root, mirrors=mirrors) == root
    assert store.verify("mnist", root).complete
    for check in store.dataset_files("mnist"):
        assert (root / check.path).read_bytes() == (data_dir / check.path).read_bytes()
    assert sum(p.startswith("/dead/") for p in requested) == 4
    assert _leftovers(root) == []

    requested.clear()
    store.fetch("mnist", root, mirrors=mirrors)  # present and verified: nothing is downloaded
    assert requested == []
    store.fetch("mnist", root, mirrors=[f"{base}/mirror2/"], force=True, files=[MNIST_LABELS])
    assert requested == ["/mirror2/train-labels-idx1-ubyte.gz"]


@pytest.mark.data
@pytest.mark.parametrize("damage", ["gzip byte", "payload byte"])
def test_fetch_rejects_a_file_with_one_byte_changed(server, tmp_path, data_dir, damage):
    base, www, _ = server
    data = bytearray((data_dir / MNIST_LABELS).read_bytes())
    if damage == "gzip byte":
        data[len(data) // 2] ^= 0xFF
    else:  # a valid gzip whose content differs in one label
        payload = bytearray(gzip.decompress(bytes(data)))
        payload[100] = (payload[100] + 1) % 10
        data = bytearray(gzip.compress(bytes(payload)))
    (www / "bad").mkdir()
    (www / "bad" / "train-labels-idx1-ubyte.gz").write_bytes(bytes(data))
    root = tmp_path / "root"
    with pytest.raises(DataError) as info:
        store.fetch("mnist", root, mirrors=[f"{base}/bad/"], files=[MNIST_LABELS])
    message = str(info.value)
    assert MNIST_LABELS in message and "checksum" in message and f"{base}/bad/" in message
    assert not (root / MNIST_LABELS).exists()
    assert _leftovers(root) == []


@pytest.mark.data
def test_ensure_with_download_replaces_a_corrupt_file(server, tmp_path, data_dir):
    base, www, requested = server
    shutil.copytree(data_dir / "mnist", www / "mnist")
    root = tmp_path / "root"
    (root / "mnist").mkdir(parents=True)
    (root / MNIST_LABELS).write_bytes(gzip.compress(b"damaged"))
    with pytest.raises(DataError, match="failed its checksum"):
        store.ensure("mnist", root, files=[MNIST_LABELS], verify_checksums=True)
    from overlooked.errors import DataWarning

    with pytest.warns(DataWarning, match="the old copy is kept as"):
        store.ensure("mnist", root, download=True, files=[MNIST_LABELS], verify_checksums=True, mirrors=[f"{base}/mnist/"])
    assert requested == ["/mnist/train-labels-idx1-ubyte.gz"]
    assert (root / MNIST_LABELS).read_bytes() == (data_dir / MNIST_LABELS).read_bytes()
    assert (root / (MNIST_LABELS + ".replaced")).read_bytes() == gzip.compress(b"damaged")


def test_fetch_lists_every_mirror_and_its_error(server, tmp_path):
    base, _, _ = server
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    mirrors = [f"http://127.0.0.1:{closed_port}/mnist/", f"{base}/nothing-here/"]
    root = tmp_path / "root"
    with pytest.raises(DataError) as info:
        store.fetch("mnist", root, mirrors=mirrors, timeout=5)
    message = str(info.value)
    for check in store.dataset_files("mnist"):
        assert f"{check.path}: missing" in message
    assert f"http://127.0.0.1:{closed_port}/mnist/t10k-images-idx3-ubyte.gz: cannot open" in message
    assert "skipped, it failed earlier" in message  # an unreachable host is tried once, not per file
    assert f"{base}/nothing-here/t10k-labels-idx1-ubyte.gz: HTTP 404" in message
    assert "Fix:" in message
    assert _leftovers(root) == []


@pytest.mark.data
def test_fetch_nmnist_lays_flat_samples_out_under_samples(server, tmp_path, data_dir):
    base, www, _ = server
    (www / "NMNISTsmall").mkdir()
    wanted = ["nmnist_small/train1K.txt", "nmnist_small/samples/1.bs2", "nmnist_small/samples/60100.bs2"]
    for path in wanted:
        shutil.copy(data_dir / path, www / "NMNISTsmall" / Path(path).name)
    root = tmp_path / "root"
    store.fetch("nmnist_small", root, mirrors=[f"{base}/NMNISTsmall/"], files=wanted)
    assert store.verify("nmnist_small", root, files=wanted).complete


def _babi_tarball(data_dir: Path, dest: Path) -> None:
    """The official tarball's layout (tasks_1-20_v1-2/...) from the shared files, plus a file to ignore."""
    with tarfile.open(dest, "w:gz", compresslevel=1) as tar:
        tar.add(data_dir / "babi" / "tasks_1-20_v1-2", arcname="tasks_1-20_v1-2")
        extra = b"not wanted"
        info = tarfile.TarInfo("tasks_1-20_v1-2/hn/qa1_single-supporting-fact_train.txt")
        info.size = len(extra)
        tar.addfile(info, io.BytesIO(extra))


@pytest.mark.data
def test_fetch_babi_lays_out_tarball_and_names_the_absent_file(server, tmp_path, data_dir):
    base, www, _ = server
    _babi_tarball(data_dir, www / "tasks_1-20_v1-2.tar.gz")
    root = tmp_path / "root"
    mirrors = [f"{base}/gone/tasks_1-20_v1-2.tar.gz", f"{base}/tasks_1-20_v1-2.tar.gz"]
    with pytest.raises(DataError) as info:
        store.fetch("babi", root, mirrors=mirrors)
    message = str(info.value)
    assert f"{QA3_10K}: missing" in message
    assert "1 file(s) missing or unverified" in message
    assert f"{base}/gone/tasks_1-20_v1-2.tar.gz: HTTP 404" in message
    assert f"{base}/tasks_1-20_v1-2.tar.gz: not in the archive" in message
    report = store.verify("babi", root)
    assert report.missing == [QA3_10K] and not report.mismatched and len(report.ok) == 81
    assert not (root / "babi" / "tasks_1-20_v1-2" / "hn").exists()
    assert _leftovers(root) == []
    # the files already there are verified and skipped; loaders needing only them are satisfied
    store.ensure("babi", root, files=["babi/tasks_1-20_v1-2/en/qa1_single-supporting-fact_train.txt"])


@pytest.mark.data
def test_fetch_gas_finds_members_by_basename_in_a_nested_zip(server, tmp_path, data_dir):
    base, www, _ = server
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w", compression=zipfile.ZIP_STORED) as zf:
        for batch in (1, 4, 5):
            zf.write(data_dir / "uci_gas_sensor_drift" / f"batch{batch}.dat", f"Dataset/batch{batch}.dat")
    with zipfile.ZipFile(www / "gas.zip", "w") as outer:
        outer.writestr("Dataset.zip", inner.getvalue())
        outer.writestr("__MACOSX/Dataset/._batch1.dat", b"resource fork")
    root = tmp_path / "root"
    wanted = [f"uci_gas_sensor_drift/batch{b}.dat" for b in (1, 4, 5, 7)]
    with pytest.raises(DataError) as info:
        store.fetch("uci_gas_sensor_drift", root, mirrors=[f"{base}/gas.zip"], files=wanted)
    assert "uci_gas_sensor_drift/batch7.dat: missing" in str(info.value)
    report = store.verify("uci_gas_sensor_drift", root, files=wanted)
    assert report.ok == wanted[:3] and report.missing == wanted[3:]


def test_fetch_reports_an_unreadable_archive(server, tmp_path):
    base, www, _ = server
    (www / "babi.tar.gz").write_bytes(b"this is not a tarball")
    with pytest.raises(DataError, match="unreadable tar archive"):
        store.fetch("babi", tmp_path / "root", mirrors=[f"{base}/babi.tar.gz"])
    assert _leftovers(tmp_path / "root") == []


@pytest.mark.data
def test_cli_fetch_takes_mirrors_and_verify_names_the_fix(tmp_path, data_dir, capsys):
    """`overlooked data fetch NAME --mirror URL` (repeatable, in order) reaches store.fetch's mirrors;
    `data verify` on an incomplete folder exits 1 and says how to complete it."""
    from overlooked.cli import main

    www = tmp_path / "www"
    shutil.copytree(data_dir / "mnist", www / "mirror2")
    root = tmp_path / "root"
    assert main(["data", "verify", "mnist", "--data-dir", str(root)]) == 1
    assert "Fix: `overlooked data fetch mnist`" in capsys.readouterr().out
    dead, good = (www / "dead").as_uri() + "/", (www / "mirror2").as_uri() + "/"
    assert main(["data", "fetch", "mnist", "--data-dir", str(root), "--mirror", dead, "--mirror", good]) == 0
    assert store.verify("mnist", root).complete
    assert "mnist: fetched and verified under" in capsys.readouterr().out
    assert main(["data", "verify", "mnist", "--data-dir", str(root)]) == 0
    assert main(["data", "fetch", "mnist", "--data-dir", str(root)]) == 0  # nothing to fetch: said so
    assert "mnist: already present and verified under" in capsys.readouterr().out
    # --force against a mirror with one bad file keeps the verified copy, and says so (it was "present but
    # failed its checksum", while `data verify` called every file OK)
    (www / "mirror2" / MNIST_LABELS.split("/")[-1]).write_bytes(b"not gzip")
    assert main(["data", "fetch", "mnist", "--data-dir", str(root), "--mirror", good, "--force"]) == 2
    err = capsys.readouterr().err
    assert f"{MNIST_LABELS}: the verified copy already there is kept; no mirror provided a verified copy" in err
    assert "present but failed its checksum" not in err and store.verify("mnist", root).complete


def test_fetched_files_get_the_usual_mode(server, tmp_path, data_dir):
    """mkstemp makes its file 0600: the installed file must have the mode the umask gives (a shared data
    folder stays readable)."""
    import os
    import stat

    base, www, _ = server
    shutil.copytree(data_dir / "mnist", www / "m")
    store.fetch("mnist", tmp_path / "root", mirrors=[f"{base}/m/"], files=[MNIST_LABELS])
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "root" / MNIST_LABELS).stat().st_mode) == 0o666 & ~umask


@pytest.mark.data
def test_a_transient_failure_is_retried_on_the_same_mirror_and_a_missing_file_is_not(tmp_path, data_dir, monkeypatch):
    """One mirror only (smallNORB, affNIST, N-MNIST, gas): a 503 or a body cut short used to fail the fetch at
    once. Transient failures are tried again (up to store.RETRIES); a 404 is not."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setattr(store, "RETRY_WAIT_S", 0.0)
    www = tmp_path / "www"
    shutil.copytree(data_dir / "mnist", www / "m")
    requested: list[str] = []
    plan = {"failures": []}  # how the next requests fail, in order

    class Flaky(_QuietHandler):
        def do_GET(self):
            requested.append(self.path)
            failure = plan["failures"].pop(0) if plan["failures"] else None
            if failure in ("503", "429"):  # busy, or rate limited (Too Many Requests): both transient
                self.send_error(int(failure), "busy")
            elif failure == "short":  # announces the whole file, sends half
                body = (www / self.path.lstrip("/")).read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2])
                self.close_connection = True
            else:
                super().do_GET()

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(Flaky, directory=str(www)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        plan["failures"] = ["503", "short"]
        root = tmp_path / "root"
        store.fetch("mnist", root, mirrors=[f"{base}/m/"], files=[MNIST_LABELS])
        assert requested == ["/m/train-labels-idx1-ubyte.gz"] * 3 and store.verify("mnist", root, files=[MNIST_LABELS]).complete
        requested.clear()
        plan["failures"] = ["429"]
        root = tmp_path / "root429"
        store.fetch("mnist", root, mirrors=[f"{base}/m/"], files=[MNIST_LABELS])
        assert requested == ["/m/train-labels-idx1-ubyte.gz"] * 2 and store.verify("mnist", root, files=[MNIST_LABELS]).complete
        requested.clear()
        plan["failures"] = ["503"] * store.RETRIES
        two = [MNIST_LABELS, "mnist/t10k-labels-idx1-ubyte.gz"]
        with pytest.raises(DataError, match=r"HTTP 503 busy \(after 3 tries\)") as info:
            store.fetch("mnist", tmp_path / "root2", mirrors=[f"{base}/m/"], files=two)
        assert len(requested) == store.RETRIES  # a host still failing after its retries is skipped for the next file
        assert "skipped, it failed earlier" in str(info.value)
        requested.clear()
        with pytest.raises(DataError, match="HTTP 404"):
            store.fetch("mnist", tmp_path / "root3", mirrors=[f"{base}/nowhere/"], files=[MNIST_LABELS])
        assert requested == ["/nowhere/train-labels-idx1-ubyte.gz"]  # not found is not tried again
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.mark.data
def test_fetch_keeps_an_edited_or_damaged_file_it_replaces(server, tmp_path, data_dir):
    """`overlooked data fetch` over a file that fails its checksum (edited by hand, or damaged) installs the
    verified download and keeps the old copy as NAME.replaced (then .replaced.1, ...), with a DataWarning:
    the fix the checksum message offers loses nothing. A verified file replaced with --force is not kept
    (the download is the same bytes). Per-file (MNIST) and archive (bAbI) downloads alike."""
    from overlooked.errors import DataWarning

    base, www, _ = server
    shutil.copytree(data_dir / "mnist", www / "m")
    _babi_tarball(data_dir, www / "tasks_1-20_v1-2.tar.gz")
    root = tmp_path / "root"
    qa1 = "babi/tasks_1-20_v1-2/en/qa1_single-supporting-fact_train.txt"
    for rel in (MNIST_LABELS, qa1):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"my edits\n")
    with pytest.warns(DataWarning, match=r"failed its checksum and is replaced by a verified download; the old copy is kept as .*\.replaced"):
        store.fetch("mnist", root, mirrors=[f"{base}/m/"], files=[MNIST_LABELS])
    with pytest.warns(DataWarning, match="qa1_single-supporting-fact_train.txt.replaced"):
        store.fetch("babi", root, mirrors=[f"{base}/tasks_1-20_v1-2.tar.gz"], files=[qa1])
    for rel in (MNIST_LABELS, qa1):
        assert (root / rel).read_bytes() == (data_dir / rel).read_bytes()
        assert (root / (rel + ".replaced")).read_bytes() == b"my edits\n"
    (root / MNIST_LABELS).write_bytes(b"edited again\n")  # a second time: the first copy stays, the new one is numbered
    with pytest.warns(DataWarning, match=r"\.replaced\.1"):
        store.fetch("mnist", root, mirrors=[f"{base}/m/"], files=[MNIST_LABELS])
    assert (root / (MNIST_LABELS + ".replaced")).read_bytes() == b"my edits\n"
    assert (root / (MNIST_LABELS + ".replaced.1")).read_bytes() == b"edited again\n"
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        store.fetch("mnist", root, mirrors=[f"{base}/m/"], files=[MNIST_LABELS], force=True)  # verified: nothing kept
    assert not (root / (MNIST_LABELS + ".replaced.2")).exists()
    assert store.verify("mnist", root, files=[MNIST_LABELS]).complete


def test_a_data_root_that_is_a_file_is_named(tmp_path, monkeypatch):
    """An adversarial review's: --data-dir FILE made every dataset file 'fail its checksum ... Not a directory'."""
    a_file = tmp_path / "data.txt"
    a_file.write_text("")
    with pytest.raises(DataError, match=rf"the data root {a_file} \(given as data_dir / --data-dir\) is a file, not a folder"):
        store.resolve_data_dir(a_file)
    monkeypatch.setenv("OVERLOOKED_DATA", str(a_file))
    with pytest.raises(DataError, match=r"is a file, not a folder.*Fix: point it at the folder that holds the datasets"):
        store.verify("babi")
    assert store.resolve_data_dir(tmp_path) == tmp_path  # a folder, or a path not made yet, is taken as before
    assert store.resolve_data_dir(tmp_path / "new") == tmp_path / "new"


@pytest.mark.data
def test_a_folder_where_a_data_file_should_be_is_named_by_verify_and_fetch(server, tmp_path, data_dir):
    """An adversarial review's: a folder in a file's place was "missing" or "cannot compute the sha256
    ([Errno 21] Is a directory)"; fetch would fail to rename onto it (and downloaded it from every mirror)."""
    base, www, requested = server
    shutil.copytree(data_dir / "mnist", www / "m")
    root = tmp_path / "root"
    (root / MNIST_LABELS).mkdir(parents=True)
    report = store.verify("mnist", root, files=[MNIST_LABELS])
    assert report.mismatched == {MNIST_LABELS: "is a folder where the file should be (remove the folder)"}
    requested.clear()
    with pytest.raises(DataError, match=rf"{root / MNIST_LABELS} is a folder where the file should be; remove it and fetch again"):
        store.fetch("mnist", root, mirrors=[f"{base}/m/"], files=[MNIST_LABELS])
    assert (root / MNIST_LABELS).is_dir() and _leftovers(root) == [] and requested == []  # said before any download


@pytest.mark.data
def test_the_digests_of_files_missing_here_are_the_ones_the_manifest_records(data_dir):
    """The files the shared copy lacks (gas batch7/batch10, bAbI 10k qa3 train) are checked only on a real
    download: their digests must be MANIFEST.md's, which records them from the official archives."""
    manifest = (data_dir / "MANIFEST.md").read_text()
    absent = [c for name in store.dataset_names() for c in store.dataset_files(name) if not (data_dir / c.path).is_file()]
    named = {c.path: c.digest for c in absent if c.path.startswith(("uci_gas_sensor_drift/", "babi/"))}
    assert set(named) >= {"uci_gas_sensor_drift/batch7.dat", "uci_gas_sensor_drift/batch10.dat", "babi/tasks_1-20_v1-2/en-10k/qa3_three-supporting-facts_train.txt"}
    for path, digest in named.items():
        assert digest in manifest, path


def test_download_sources_are_pinned():
    """Each dataset's first download address, pinned (a typo would show only on a user's download): the
    official source, or for MNIST PyTorch's mirror of it (yann.lecun.com, the original, is a fallback)."""
    first = {name: store.SOURCES[name].mirrors[0] for name in ("babi", "mnist", "nmnist_small", "affnist", "smallnorb", "uci_gas_sensor_drift")}
    assert first == {
        "babi": "https://dl.fbaipublicfiles.com/babi/tasks_1-20_v1-2.tar.gz",
        "mnist": "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "nmnist_small": "https://raw.githubusercontent.com/bamsumit/slayerPytorch/master/test/test_files/NMNISTsmall/",
        "affnist": "https://www.cs.toronto.edu/~tijmen/affNIST/32x/transformed/",
        "smallnorb": "https://cs.nyu.edu/~ylclab/data/norb-v1.0-small/",
        "uci_gas_sensor_drift": "https://archive.ics.uci.edu/static/public/270/gas+sensor+array+drift+dataset+at+different+concentrations.zip",
    }
    assert "http://yann.lecun.com/exdb/mnist/" in store.SOURCES["mnist"].mirrors


BABI_QA1 = "babi/tasks_1-20_v1-2/en/qa1_single-supporting-fact_train.txt"


def _one_member_tarball(dest: Path, body: bytes) -> Path:
    """A bAbI-layout .tar.gz holding only task 1's training file, with ``body`` as its bytes."""
    with tarfile.open(dest, "w:gz") as tar:
        info = tarfile.TarInfo("tasks_1-20_v1-2/en/qa1_single-supporting-fact_train.txt")
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
    return dest


def test_an_archive_member_that_fails_its_checksum_leaves_nothing_behind(tmp_path):
    root = tmp_path / "root"
    with pytest.raises(DataError, match="failed its checksum"):
        store.fetch("babi", root, mirrors=[str(_one_member_tarball(tmp_path / "a.tar.gz", b"not the real file\n"))], files=[BABI_QA1])
    assert _leftovers(root) == [] and not (root / BABI_QA1).exists()  # no hidden .part, no final file


@pytest.mark.data
def test_an_archive_mirror_after_one_that_installed_every_file_is_not_read(tmp_path, data_dir):
    """The good archive installs the file; the bad one after it is never opened (reading it once raised a KeyError)."""
    good = _one_member_tarball(tmp_path / "good.tar.gz", (data_dir / BABI_QA1).read_bytes())
    bad = _one_member_tarball(tmp_path / "bad.tar.gz", b"wrong\n")
    root = tmp_path / "root"
    store.fetch("babi", root, mirrors=[str(good), str(bad)], files=[BABI_QA1])
    assert store.verify("babi", root, files=[BABI_QA1]).complete


@pytest.mark.data
def test_a_local_mirror_missing_one_file_is_still_used_for_the_next(tmp_path, data_dir):
    mirror = tmp_path / "m"
    mirror.mkdir()
    shutil.copy(data_dir / MNIST_LABELS, mirror / "train-labels-idx1-ubyte.gz")
    root = tmp_path / "root"
    with pytest.raises(DataError, match=r"1 file\(s\) missing or unverified"):
        store.fetch("mnist", root, mirrors=[str(mirror)], files=["mnist/t10k-labels-idx1-ubyte.gz", MNIST_LABELS])
    assert store.verify("mnist", root, files=[MNIST_LABELS]).complete


def test_ensure_without_checksums_refuses_a_folder_in_a_files_place(tmp_path):
    (tmp_path / MNIST_LABELS).mkdir(parents=True)
    with pytest.raises(DataError, match="is a folder"):
        store.ensure("mnist", tmp_path, files=[MNIST_LABELS])


def test_an_empty_data_dir_given_is_named_as_given(monkeypatch):
    monkeypatch.setenv("OVERLOOKED_DATA", "/somewhere")
    assert store._root_origin("") == "given as data_dir / --data-dir"
