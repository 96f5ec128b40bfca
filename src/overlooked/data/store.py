"""Where the data lives, which files each dataset has, and how to fetch and verify them.

Every dataset is a fixed list of files under one data root, laid out exactly as ``shared/data``::

    <root>/babi/tasks_1-20_v1-2/en/qa1_single-supporting-fact_train.txt
    <root>/mnist/train-images-idx3-ubyte.gz
    <root>/nmnist_small/samples/1.bs2
    <root>/uci_gas_sensor_drift/batch1.dat

The expected checksum of every file ships with the package in ``overlooked/data/checksums/<name>.<algorithm>``
(``sha256sum`` format, paths relative to the data root), so :func:`verify` can say exactly which files are
missing or corrupt. Three algorithms are used:

- ``sha256``: the sha256 of the file's bytes (most files).
- ``gunzip-md5``: the md5 of the *decompressed* content of a ``.gz`` file. MNIST's staged ``.gz`` files were
  re-gzipped from the canonical IDX payloads, so only the payload is canonical; its md5s are the ones
  public loaders list for the extracted official files.
- ``git-blob-sha1``: git's blob id, ``sha1(b"blob <size>\\0" + content)``. Used for bAbI's
  ``en-10k/qa3_three-supporting-facts_train.txt``, whose only known identity is its blob id.

:func:`fetch` downloads from the official sources (or from ``mirrors=`` you pass), writes each file to a
temporary name, verifies it, then renames it into place, so a file under its final name has always passed
its checksum. :func:`ensure` is what loaders call: it checks that the files they need are there and either
fetches them or raises a :class:`DataError` saying which files are missing, where it looked and how to fix it.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import hashlib
import http.client
import os
import shutil
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import IO

from overlooked.errors import DataError, DataWarning

ENV_VAR = "OVERLOOKED_DATA"
FOLDER_IN_PLACE = "is a folder where the file should be (remove the folder)"  # what verify and ensure say of one
ALGORITHMS = ("sha256", "gunzip-md5", "git-blob-sha1")
_CHUNK = 1 << 20  # bytes read at a time while hashing and copying
_MAX_LISTED = 20  # files listed one by one in an error message before "... and N more"
_USER_AGENT = "overlooked-data-fetch/0.1 (Python urllib)"  # some hosts refuse urllib's default agent


def resolve_data_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The data root: ``explicit`` if given, else ``$OVERLOOKED_DATA``, else ``~/.cache/overlooked``.

    Args:
        explicit: a folder laid out like ``shared/data`` (the ``data_dir=`` argument or ``--data-dir``).

    Returns:
        The absolute path of the data root (it need not exist yet).

    >>> resolve_data_dir("/srv/data")
    PosixPath('/srv/data')
    """
    env = os.environ.get(ENV_VAR)
    root = Path(explicit if explicit is not None else env if env else Path.home() / ".cache" / "overlooked").expanduser().absolute()
    if root.is_file():  # every file under it would be "missing" or fail its checksum with "Not a directory"
        raise DataError(f"the data root {root} ({_root_origin(explicit)}) is a file, not a folder. Fix: point it at the folder that holds the datasets (laid out like shared/data)")
    return root


def _root_origin(explicit: str | os.PathLike[str] | None) -> str:
    """Why :func:`resolve_data_dir` chose the root it chose, for error messages."""
    if explicit is not None:
        return "given as data_dir / --data-dir"
    if os.environ.get(ENV_VAR):
        return f"from ${ENV_VAR}"
    return f"the default, since neither data_dir / --data-dir nor ${ENV_VAR} was set"


def _fix_hint(name: str) -> str:
    return (
        f"Fix: run `overlooked data fetch {name}` (or set data.kwargs.download=true; download=True in Python), or set {ENV_VAR} / --data-dir "
        f"to a folder that holds these files at these paths (`overlooked data verify {name}` lists them)."
    )


# --------------------------------------------------------------------------------------------------------
# What each dataset holds


@dataclass(frozen=True)
class FileCheck:
    """One expected file of a dataset.

    Attributes:
        path: the file's path relative to the data root, with ``/`` separators.
        algorithm: one of :data:`ALGORITHMS`.
        digest: the expected hex digest.
    """

    path: str
    algorithm: str
    digest: str


@dataclass(frozen=True)
class Source:
    """Where a dataset is downloaded from.

    Attributes:
        mirrors: URLs tried in order. With ``archive=None`` each is a base URL (ending in ``/``) to which a
            file's remote name is appended; otherwise each is the URL of one archive holding every file.
        archive: ``None`` (one download per file), ``"tar"`` (any compression) or ``"zip"``.
        remote_name: maps a path relative to the data root to the file's name under a base URL, or to the
            trailing part of its member path inside the archive.
    """

    mirrors: tuple[str, ...]
    archive: str | None
    remote_name: Callable[[str], str]


def _basename(path: str) -> str:
    return PurePosixPath(path).name


def _drop_first_folder(path: str) -> str:
    return str(PurePosixPath(*PurePosixPath(path).parts[1:]))


SOURCES: dict[str, Source] = {
    # bAbI QA v1.2 (Weston et al. 2015, arXiv:1502.05698). The official tarball from the bAbI project page,
    # then the copy Keras downloads. Its members are tasks_1-20_v1-2/<size>/qaN_<name>_<split>.txt; only the
    # en/ and en-10k/ train and test files plus LICENSE.txt and README.txt are extracted.
    "babi": Source(
        mirrors=(
            "https://dl.fbaipublicfiles.com/babi/tasks_1-20_v1-2.tar.gz",
            "http://www.thespermwhale.com/jaseweston/babi/tasks_1-20_v1-2.tar.gz",
            "https://s3.amazonaws.com/text-datasets/babi_tasks_1-20_v1-2.tar.gz",
        ),
        archive="tar",
        remote_name=_drop_first_folder,
    ),
    # MNIST (LeCun et al. 1998): the four gzipped IDX files, from PyTorch's mirror, the original page (which
    # has answered 403 since 2024) and the Google CVDF mirror. The md5 of the decompressed IDX content is
    # checked, not of the .gz: a copy re-gzipped elsewhere (as the staged one is) holds the same data.
    "mnist": Source(
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "http://yann.lecun.com/exdb/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
        ),
        archive=None,
        remote_name=_basename,
    ),
    # N-MNIST subset as published by SLAYER-PyTorch (bamsumit/slayerPytorch, test/test_files/NMNISTsmall/).
    # Upstream keeps the samples beside the lists (NMNISTsmall/<id>.bs2); here they go to samples/<id>.bs2.
    "nmnist_small": Source(
        mirrors=("https://raw.githubusercontent.com/bamsumit/slayerPytorch/master/test/test_files/NMNISTsmall/",),
        archive=None,
        remote_name=_basename,
    ),
    # affNIST (Tijmen Tieleman, https://www.cs.toronto.edu/~tijmen/affNIST/): the test set of the "transformed"
    # version (10,000 MNIST test digits under random affine maps, 40x40), kept zipped (the loader reads the
    # .mat inside the zip). Its sha256 and size are the ones TensorFlow Datasets lists for this file
    # (tensorflow/datasets, tensorflow_datasets/url_checksums/affnist.txt, 121,743,191 bytes; its URL there is
    # the http:// form of ours), compared character by character; not hashed here from a download, since this
    # project's machines reach no data host.
    "affnist": Source(
        mirrors=("https://www.cs.toronto.edu/~tijmen/affNIST/32x/transformed/",),
        archive=None,
        remote_name=_basename,
    ),
    # smallNORB (LeCun, Huang, Bottou 2004), the six gzipped matrices from the NYU page, kept gzipped (the
    # loader reads them as they are). Their sha256s are the ones TensorFlow Datasets lists for the same URLs
    # (tensorflow/datasets, tensorflow_datasets/url_checksums/smallnorb.txt), compared character by character;
    # not hashed here from a download, since this project's machines reach no data host.
    "smallnorb": Source(
        mirrors=("https://cs.nyu.edu/~ylclab/data/norb-v1.0-small/",),
        archive=None,
        remote_name=_basename,
    ),
    # UCI Gas Sensor Array Drift Dataset at Different Concentrations (UCI id 270, DOI 10.24432/C5MK6M). The
    # zip's internal folders have varied between releases, so batchN.dat members are found by basename
    # (descending into a nested .zip if there is one).
    "uci_gas_sensor_drift": Source(
        mirrors=(
            "https://archive.ics.uci.edu/static/public/270/"
            "gas+sensor+array+drift+dataset+at+different+concentrations.zip",
        ),
        archive="zip",
        remote_name=_basename,
    ),
}


def dataset_names() -> list[str]:
    """Names :func:`fetch`, :func:`verify` and :func:`ensure` accept.

    >>> dataset_names()
    ['affnist', 'babi', 'mnist', 'nmnist_small', 'smallnorb', 'uci_gas_sensor_drift']
    """
    return sorted(SOURCES)


def _source(name: str) -> Source:
    if name not in SOURCES:
        raise DataError(f"unknown dataset {name!r}; known datasets: {', '.join(dataset_names())}")
    return SOURCES[name]


@functools.cache
def dataset_files(name: str) -> tuple[FileCheck, ...]:
    """Every file of dataset ``name`` with its expected checksum, sorted by path.

    Read from the package data ``overlooked/data/checksums/<name>.<algorithm>``.

    >>> [f.path for f in dataset_files("mnist")][:2]
    ['mnist/t10k-images-idx3-ubyte.gz', 'mnist/t10k-labels-idx1-ubyte.gz']
    """
    _source(name)
    folder = resources.files("overlooked.data").joinpath("checksums")
    checks: dict[str, FileCheck] = {}
    for algorithm in ALGORITHMS:
        listing = folder.joinpath(f"{name}.{algorithm}")
        if not listing.is_file():
            continue
        for lineno, line in enumerate(listing.read_text(encoding="ascii").splitlines(), 1):
            parts = line.split(maxsplit=1)
            if len(parts) != 2 or parts[1] in checks:
                raise DataError(
                    f"package file overlooked/data/checksums/{name}.{algorithm}, line {lineno}: expected "
                    f"'<digest>  <unique path>', found {line!r}. Fix: reinstall overlooked."
                )
            checks[parts[1]] = FileCheck(path=parts[1], algorithm=algorithm, digest=parts[0].lower())
    return tuple(sorted(checks.values(), key=lambda c: c.path))


def expected_check(name: str, path: str) -> FileCheck:
    """The :class:`FileCheck` of ``path`` (relative to the data root) in dataset ``name``.

    >>> expected_check("mnist", "mnist/t10k-labels-idx1-ubyte.gz").digest
    '27ae3e4e09519cfbb04c329615203637'
    """
    return _select(name, [path])[0]


def _select(name: str, files: Iterable[str] | None) -> tuple[FileCheck, ...]:
    every = dataset_files(name)
    if files is None:
        return every
    by_path = {c.path: c for c in every}
    wanted = list(dict.fromkeys(files))
    unknown = [f for f in wanted if f not in by_path]
    if unknown:
        raise DataError(f"dataset {name!r} has no file(s) {', '.join(map(repr, unknown))}; see dataset_files({name!r})")
    return tuple(by_path[f] for f in wanted)


# --------------------------------------------------------------------------------------------------------
# Checksums


def _chunks(stream: IO[bytes]) -> Iterator[bytes]:
    while chunk := stream.read(_CHUNK):
        yield chunk


def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest of ``path`` under ``algorithm`` (see :data:`ALGORITHMS`).

    Raises:
        OSError, EOFError, zlib.error: the file cannot be read, or (``gunzip-md5``) is not valid gzip.
    """
    if algorithm == "sha256":
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in _chunks(f):
                digest.update(chunk)
    elif algorithm == "gunzip-md5":
        digest = hashlib.md5(usedforsecurity=False)
        with gzip.open(path, "rb") as f:
            for chunk in _chunks(f):
                digest.update(chunk)
    elif algorithm == "git-blob-sha1":
        digest = hashlib.sha1(usedforsecurity=False)
        digest.update(b"blob %d\0" % os.path.getsize(path))
        with open(path, "rb") as f:
            for chunk in _chunks(f):
                digest.update(chunk)
    else:
        raise DataError(f"unknown checksum algorithm {algorithm!r}; known: {', '.join(ALGORITHMS)}")
    return digest.hexdigest()


_ALGORITHM_WORDS = {
    "sha256": "sha256",
    "gunzip-md5": "md5 of the decompressed content",
    "git-blob-sha1": "git blob id (`git hash-object`)",
}


def check_file(path: Path, check: FileCheck) -> str | None:
    """Why ``path`` fails ``check``, or None when it passes.

    Returns:
        None, ``"missing"``, ``"is a folder ..."``, or a sentence starting ``"failed its checksum: ..."`` with
        expected and found values.
    """
    if path.is_dir():
        return FOLDER_IN_PLACE
    try:
        found = file_digest(path, check.algorithm)
    except FileNotFoundError:
        return "missing"
    except (OSError, EOFError, zlib.error) as err:
        return f"failed its checksum: cannot compute the {_ALGORITHM_WORDS[check.algorithm]} ({err})"
    if found != check.digest:
        return f"failed its checksum: {_ALGORITHM_WORDS[check.algorithm]} expected {check.digest}, found {found}"
    return None


@dataclass
class VerifyReport:
    """What :func:`verify` found.

    Attributes:
        name: the dataset.
        root: the data root that was checked.
        ok: paths (relative to ``root``) present with the right checksum.
        missing: paths that do not exist.
        mismatched: path -> why it failed its checksum.
    """

    name: str
    root: Path
    ok: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    mismatched: dict[str, str] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        """True when every checked file is present with the right checksum."""
        return not self.missing and not self.mismatched

    def describe(self) -> str:
        """A multi-line summary naming every missing and mismatching file."""
        lines = [f"dataset {self.name!r} under {self.root}: {len(self.ok)} file(s) ok"]
        if self.missing:
            lines.append(f"{len(self.missing)} file(s) missing:")
            lines += _listing(f"  {self.root / p}" for p in self.missing)
        if self.mismatched:
            lines.append(f"{len(self.mismatched)} file(s) failed their checksum:")
            lines += _listing(f"  {self.root / p}: {why}" for p, why in self.mismatched.items())
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.describe()

    def raise_if_incomplete(self) -> None:
        """Raise :class:`DataError` with :meth:`describe` and the fix unless :attr:`complete`."""
        if not self.complete:
            raise DataError(f"{self.describe()}\n{_fix_hint(self.name)}")


def _listing(items: Iterable[str]) -> list[str]:
    items = list(items)
    extra = len(items) - _MAX_LISTED
    return items[:_MAX_LISTED] + ([f"  ... and {extra} more"] if extra > 0 else [])


def verify(
    name: str, data_dir: str | os.PathLike[str] | None = None, *, files: Iterable[str] | None = None
) -> VerifyReport:
    """Check presence and checksum of every file of dataset ``name`` (or only ``files``).

    Args:
        name: a dataset name, see :func:`dataset_names`.
        data_dir: the data root; see :func:`resolve_data_dir`.
        files: paths relative to the data root to check instead of all of them.

    Returns:
        A :class:`VerifyReport`; call ``report.raise_if_incomplete()`` to turn problems into a :class:`DataError`.
    """
    report = VerifyReport(name=name, root=resolve_data_dir(data_dir))
    for check in _select(name, files):
        problem = check_file(report.root / check.path, check)
        if problem is None:
            report.ok.append(check.path)
        elif problem == "missing":
            report.missing.append(check.path)
        else:
            report.mismatched[check.path] = problem
    return report


def ensure(
    name: str,
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = False,
    *,
    files: Iterable[str] | None = None,
    verify_checksums: bool = False,
    mirrors: Iterable[str] | None = None,
) -> Path:
    """Make sure the files a loader needs are present; fetch them or explain what is missing.

    Args:
        name: a dataset name, see :func:`dataset_names`.
        data_dir: the data root; see :func:`resolve_data_dir`.
        download: fetch missing (or, with ``verify_checksums``, corrupt) files instead of raising.
        files: the paths (relative to the data root) needed; all of the dataset's files when None.
        verify_checksums: also check checksums, not only presence.
        mirrors: passed on to :func:`fetch`.

    Returns:
        The data root.

    Raises:
        DataError: files are missing or corrupt and ``download`` is False (naming each file, the folder
            looked in, and the fix), or fetching failed.
    """
    root = resolve_data_dir(data_dir)
    checks = _select(name, files)
    if verify_checksums:
        report = verify(name, root, files=[c.path for c in checks])
    else:
        report = VerifyReport(name=name, root=root)
        for c in checks:
            (report.ok if (root / c.path).is_file() else report.missing).append(c.path)
    if report.complete:
        return root
    if download:
        return fetch(name, root, mirrors=mirrors, files=[c.path for c in checks])
    lines = [f"dataset {name!r}: data root {root} ({_root_origin(data_dir)})"]
    for path in report.missing:
        where = root / path
        lines.append(f"  {where} {FOLDER_IN_PLACE}" if where.is_dir() else f"  missing file {where} (looked in folder {where.parent})")
    for path, why in report.mismatched.items():
        lines.append(f"  file {root / path} {why}")
    edited = " Files edited on purpose (your own copy) load with verify=False (`data.kwargs.verify=false`)." if report.mismatched else ""
    raise DataError("\n".join(_listing(lines)) + "\n" + _fix_hint(name) + edited)


# --------------------------------------------------------------------------------------------------------
# Downloading


_Progress = Callable[[str], None] | None


class _MirrorError(Exception):
    """One URL failed. ``unreachable`` marks errors that will fail for every file on that host too;
    ``transient`` ones (a connection dropped or stalled mid-file, a cut-short body, HTTP 429/5xx) may pass
    on a second try."""

    def __init__(self, message: str, unreachable: bool = False, transient: bool = False):
        super().__init__(message)
        self.unreachable, self.transient = unreachable, transient


RETRIES = 3  # tries of one URL when its failure is transient
RETRY_WAIT_S = 2.0  # seconds before the second try, doubled before each later one


def _download_retrying(url: str, dest: Path, timeout: float) -> None:
    """:func:`_download`, tried up to :data:`RETRIES` times while its failure is transient (a single dropped
    connection must not fail a 130 MB file whose only host is up); the last failure is raised."""
    for attempt in range(RETRIES):
        try:
            _download(url, dest, timeout)
            return
        except _MirrorError as err:
            if not err.transient or attempt == RETRIES - 1:
                if attempt:
                    raise _MirrorError(f"{err} (after {attempt + 1} tries)", err.unreachable, err.transient) from None
                raise
            time.sleep(RETRY_WAIT_S * 2**attempt)


def _temp_path(folder: Path, final_name: str) -> Path:
    """A new empty hidden file in ``folder`` (same file system as the final name, so a rename is atomic)."""
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{final_name}.", suffix=".part")
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it 0600: give the installed file the usual mode
    return Path(tmp)


def _download(url: str, dest: Path, timeout: float) -> None:
    """Stream ``url`` into ``dest``; raise :class:`_MirrorError` with a one-line reason on any failure."""
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    received = -1  # -1 until the server answered
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response, open(dest, "wb") as out:
            announced = response.headers.get("Content-Length")
            received = 0
            for chunk in _chunks(response):
                out.write(chunk)
                received += len(chunk)
        if announced is not None and announced.isdigit() and received != int(announced):
            raise _MirrorError(f"truncated download: the server announced {announced} bytes, sent {received}", transient=True)
    except urllib.error.HTTPError as err:
        err.close()
        raise _MirrorError(f"HTTP {err.code} {err.reason}", transient=err.code == 429 or err.code >= 500) from None
    except urllib.error.URLError as err:
        if isinstance(err.reason, TimeoutError):
            raise _MirrorError(f"no answer within {timeout:g} s", unreachable=True) from None
        # A refused or unresolvable host fails for every file; a missing file:// path only for this one.
        raise _MirrorError(f"cannot open: {err.reason}", unreachable=not url.startswith("file:")) from None
    except TimeoutError:
        if received < 0:  # the host did not answer: it will not for the next file either
            raise _MirrorError(f"no answer within {timeout:g} s", unreachable=True) from None
        raise _MirrorError(f"stalled for {timeout:g} s after {received:,} bytes", transient=True) from None
    except (http.client.HTTPException, OSError, ValueError) as err:
        # a connection reset or a broken HTTP exchange may pass on a second try; a local write error (a full disk) will not
        raise _MirrorError(f"{type(err).__name__}: {err}", transient=isinstance(err, (ConnectionError, http.client.HTTPException))) from None


def _install(tmp: Path, root: Path, check: FileCheck) -> str | None:
    """Verify ``tmp`` against ``check`` and rename it to its final path; a failing file is deleted instead. A
    file already at the final path that fails its checksum (damaged, or edited by hand) is never lost: it is
    renamed to ``NAME.replaced`` (``NAME.replaced.1``, ... when taken) first, with a :class:`DataWarning`.

    Returns:
        None on success, else why the file failed its checksum.
    """
    problem = check_file(tmp, check)
    dest = root / check.path  # never a folder: fetch refuses one before downloading
    if problem is None:
        if dest.is_file() and check_file(dest, check) is not None:
            aside = dest.with_name(dest.name + ".replaced")
            n = 0
            while aside.exists():
                n += 1
                aside = dest.with_name(f"{dest.name}.replaced.{n}")
            os.replace(dest, aside)
            warnings.warn(f"{dest} failed its checksum and is replaced by a verified download; the old copy is kept as {aside}", DataWarning, stacklevel=2)
        os.replace(tmp, dest)
    else:
        tmp.unlink(missing_ok=True)
    return problem


def _join(base: str, name: str) -> str:
    return base.rstrip("/") + "/" + name


def _fetch_each(
    root: Path, todo: list[FileCheck], urls: tuple[str, ...], source: Source, timeout: float, progress: _Progress
) -> dict[str, list[str]]:
    """Download each file from the first mirror that serves a verified copy.

    Returns:
        path -> one line per mirror tried, for every file no mirror could provide.
    """
    failed: dict[str, list[str]] = {}
    unreachable: dict[str, str] = {}  # base URL -> why; not retried for later files
    for check in todo:
        final = root / check.path
        attempts = []
        for base in urls:
            if base in unreachable:
                attempts.append(f"{base}: skipped, it failed earlier ({unreachable[base]})")
                continue
            url = _join(base, source.remote_name(check.path))
            if progress is not None:
                progress(f"downloading {url} -> {final}")
            tmp = _temp_path(final.parent, final.name)
            try:
                _download_retrying(url, tmp, timeout)
                problem = _install(tmp, root, check)
            except _MirrorError as err:
                attempts.append(f"{url}: {err}")
                if err.unreachable or err.transient:  # down, or failing again after its retries: skip it for later files
                    unreachable[base] = str(err)
                continue
            finally:
                tmp.unlink(missing_ok=True)  # already renamed away on success
            if problem is None:
                break
            attempts.append(f"{url}: {problem}")
        else:
            failed[check.path] = attempts
    return failed


def _member_key(member_name: str, wanted: dict[str, FileCheck]) -> str | None:
    """The key of ``wanted`` that ``member_name`` ends with at a folder boundary, if any."""
    parts = PurePosixPath(member_name.replace("\\", "/")).parts
    for i in range(len(parts)):
        key = "/".join(parts[i:])
        if key in wanted:
            return key
    return None


def _extract_stream(stream: IO[bytes], root: Path, check: FileCheck) -> str | None:
    final = root / check.path
    tmp = _temp_path(final.parent, final.name)
    try:
        with open(tmp, "wb") as out:
            shutil.copyfileobj(stream, out, _CHUNK)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return _install(tmp, root, check)


def _walk_tar(archive: Path) -> Iterator[tuple[str, Callable[[], IO[bytes]]]]:
    with tarfile.open(archive, "r:*") as tar:
        for member in tar:
            if member.isfile():
                yield member.name, functools.partial(tar.extractfile, member)


def _walk_zip(zf: zipfile.ZipFile, scratch: Path, depth: int = 0) -> Iterator[tuple[str, Callable[[], IO[bytes]]]]:
    for info in zf.infolist():
        if info.is_dir():
            continue
        if info.filename.lower().endswith(".zip") and depth < 2:
            # A nested zip is copied out first: seeking inside a compressed member re-decompresses it.
            with tempfile.TemporaryFile(dir=scratch) as inner_file:
                with zf.open(info) as inner_stream:
                    shutil.copyfileobj(inner_stream, inner_file, _CHUNK)
                with zipfile.ZipFile(inner_file) as inner:
                    yield from _walk_zip(inner, scratch, depth + 1)
        else:
            yield info.filename, functools.partial(zf.open, info)


def _walk_archive(archive: Path, kind: str) -> Iterator[tuple[str, Callable[[], IO[bytes]]]]:
    if kind == "tar":
        yield from _walk_tar(archive)
    else:
        with zipfile.ZipFile(archive) as zf:
            yield from _walk_zip(zf, archive.parent)


def _fetch_archive(
    name: str,
    root: Path,
    todo: list[FileCheck],
    urls: tuple[str, ...],
    source: Source,
    timeout: float,
    progress: _Progress,
) -> tuple[dict[str, list[str]], list[str]]:
    """Download archives in mirror order and extract, verify and install the wanted files.

    Returns:
        ``(failed, log)``: path -> per-mirror reasons for every file still not installed, and one line per
        mirror saying what happened to it.
    """
    wanted = {source.remote_name(c.path): c for c in todo}
    failed: dict[str, list[str]] = {c.path: [] for c in todo}
    log: list[str] = []
    staging = root / name
    for url in urls:
        if not wanted:
            break
        if progress is not None:
            progress(f"downloading {url}")
        tmp = _temp_path(staging, PurePosixPath(url).name or "archive")
        tried: set[str] = set()  # keys met in this archive, installed or not
        try:
            _download_retrying(url, tmp, timeout)
            with contextlib.closing(_walk_archive(tmp, source.archive)) as members:
                for member_name, opener in members:
                    key = _member_key(member_name, wanted)
                    if key is None:
                        continue
                    tried.add(key)
                    check = wanted[key]
                    with opener() as stream:
                        problem = _extract_stream(stream, root, check)
                    if problem is None:
                        del wanted[key], failed[check.path]
                    else:
                        failed[check.path].append(f"{url} (member {member_name}): {problem}")
        except _MirrorError as err:
            log.append(f"{url}: {err}")
            continue
        except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, OSError) as err:
            log.append(f"{url}: unreadable {source.archive} archive ({type(err).__name__}: {err})")
            continue
        finally:
            tmp.unlink(missing_ok=True)
        for key, check in wanted.items():
            if key not in tried:
                failed[check.path].append(f"{url}: not in the archive")
        log.append(f"{url}: downloaded; {len(wanted)} wanted file(s) still missing or unverified after it")
    return failed, log


def _mirror_url(mirror: str, name: str, source: Source) -> str:
    """A mirror the user named, as the URL :func:`fetch` reads: a URL is kept (a base URL gets its trailing
    ``/``); a local path becomes a ``file://`` URL. What it must point at depends on the dataset: for one
    downloaded file by file, a folder (or base URL) holding the files; for one downloaded as an archive, the
    archive itself."""
    what = "the archive itself" if source.archive else "a folder (or base URL) holding its files"
    if "://" in mirror:
        url = mirror
        if url.startswith("file://") and source.archive and Path(urllib.request.url2pathname(urllib.parse.urlparse(url).path)).is_dir():
            raise DataError(f"mirror {mirror}: {name} is downloaded as one archive, so a mirror is {what}, not a folder")
    else:
        path = Path(mirror).expanduser()
        if not path.exists():
            raise DataError(f"mirror {mirror!r} is neither a URL (https://..., file://...) nor an existing path; for {name} give {what}")
        if source.archive and path.is_dir():
            raise DataError(f"mirror {mirror}: {name} is downloaded as one archive, so a mirror is {what}, not a folder")
        if not source.archive and not path.is_dir():
            raise DataError(f"mirror {mirror}: {name} is downloaded file by file, so a mirror is {what}, not a file")
        url = path.resolve().as_uri()
    return url + "/" if source.archive is None and not url.endswith("/") else url


def fetch(
    name: str,
    data_dir: str | os.PathLike[str] | None = None,
    mirrors: Iterable[str] | None = None,
    force: bool = False,
    *,
    files: Iterable[str] | None = None,
    timeout: float = 60.0,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Download dataset ``name`` into the data root, verify every file, and lay it out like ``shared/data``.

    Files already present with the right checksum are skipped unless ``force``. Each download goes to a
    hidden temporary file beside its destination, is verified, and only then renamed into place, so a file
    that fails its checksum never sits under its final name.

    Args:
        name: a dataset name, see :func:`dataset_names`.
        data_dir: the data root; see :func:`resolve_data_dir`.
        mirrors: URLs or local paths to try in order instead of the official ones: for a dataset downloaded
            file by file, a folder (or base URL) holding its files; for one downloaded as an archive (bAbI,
            the gas sensors), the archive itself (see :class:`Source`).
        force: download even files that are present and verified.
        files: only these paths (relative to the data root) instead of the whole dataset.
        timeout: seconds to wait for a server before giving up on it.
        progress: called with one line of text before each download (the CLI prints it).

    Returns:
        The data root.

    Raises:
        DataError: some file could not be fetched and verified; the message lists every such file, each
            mirror tried and the error it gave.
    """
    source = _source(name)
    root = resolve_data_dir(data_dir)
    if isinstance(mirrors, (str, os.PathLike)):
        raise DataError(f"fetch({name!r}, mirrors={mirrors!r}): mirrors is a list of URLs or paths; wrap the one you have in a list")
    urls = tuple(_mirror_url(str(m), name, source) for m in mirrors) if mirrors is not None else source.mirrors
    if not urls:
        raise DataError(f"fetch({name!r}) got an empty list of mirrors; pass at least one URL or mirrors=None")
    checks = _select(name, files)
    todo = [c for c in checks if force or check_file(root / c.path, c) is not None]
    if not todo:
        return root
    blocked = [str(root / c.path) for c in todo if (root / c.path).is_dir()]
    if blocked:  # said before any download (each mirror was tried, and every download thrown away)
        raise DataError(f"fetching dataset {name!r}: {', '.join(blocked[:5])} {'is a folder' if len(blocked) == 1 else 'are folders'} where the file should be; remove {'it' if len(blocked) == 1 else 'them'} and fetch again")
    log: list[str] = []
    if source.archive is None:
        failed = _fetch_each(root, todo, urls, source, timeout, progress)
    else:
        failed, log = _fetch_archive(name, root, todo, urls, source, timeout, progress)
    if failed:
        lines = [f"fetching dataset {name!r} into {root} left {len(failed)} file(s) missing or unverified:"]
        by_path = {c.path: c for c in checks}
        for path, attempts in list(failed.items())[:_MAX_LISTED]:
            if not (root / path).exists():
                state = "missing"
            elif path in by_path and check_file(root / path, by_path[path]) is None:  # --force over a good file
                state = "the verified copy already there is kept"
            else:
                state = "present but failed its checksum"
            lines.append(f"  {path}: {state}; no mirror provided a verified copy")
            lines += [f"    {a}" for a in attempts]
        if len(failed) > _MAX_LISTED:
            lines.append(f"  ... and {len(failed) - _MAX_LISTED} more (`overlooked data verify {name}` lists them all)")
        if log:
            lines += ["mirrors tried, in order:"] + [f"  {entry}" for entry in log]
        lines.append(
            "Fix: check your network connection (each mirror's error is above), or name mirrors that serve "
            f"these files (`overlooked data fetch {name} --mirror URL`, repeatable; `mirrors=[...]` in Python), or "
            f"copy the files to the paths `overlooked data verify {name}` lists as missing (or point {ENV_VAR} / "
            "--data-dir at a folder that holds them)."
        )
        raise DataError("\n".join(lines))
    return root
