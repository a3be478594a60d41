"""Datasets: MNIST from its original gzip IDX files, checked against the published checksums."""
from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import urllib.request
from pathlib import Path

import numpy as np

#: file name -> SHA-256 of the published gzip files
MNIST_FILES = {
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}
MNIST_MIRRORS = ("https://storage.googleapis.com/cvdf-datasets/mnist/",
                 "https://ossci-datasets.s3.amazonaws.com/mnist/")
DATA_ENV = "FASTBP_DATA"


def user_cache_dir() -> Path:
    """Where downloads are kept: $XDG_CACHE_HOME/fastbp (~/.cache/fastbp)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "fastbp"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _candidates(path) -> list[Path]:
    """Folders to look in, in order: the explicit path, $FASTBP_DATA, the user cache (each as
    given and with a ``mnist`` subfolder)."""
    roots = []
    if path is not None:
        roots.append(Path(path))
    if os.environ.get(DATA_ENV):
        roots.append(Path(os.environ[DATA_ENV]))
    roots.append(user_cache_dir())
    return [d for root in roots for d in (root, root / "mnist")]


def _complete(folder: Path) -> bool:
    return all((folder / name).is_file() for name in MNIST_FILES)


def _verify(folder: Path) -> None:
    for name, digest in MNIST_FILES.items():
        got = _sha256(folder / name)
        if got != digest:
            raise ValueError(f"{folder / name} is not the published MNIST file (SHA-256 {got}, expected {digest})")


def _download(target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for name, digest in MNIST_FILES.items():
        dest = target / name
        if dest.is_file() and _sha256(dest) == digest:
            continue
        errors = []
        for mirror in MNIST_MIRRORS:
            try:
                tmp = dest.with_suffix(".part")
                with urllib.request.urlopen(mirror + name, timeout=30) as r, open(tmp, "wb") as f:
                    shutil.copyfileobj(r, f)
                if _sha256(tmp) != digest:
                    raise ValueError("checksum mismatch")
                tmp.replace(dest)
                break
            except Exception as exc:  # try the next mirror; report all at the end
                errors.append(f"{mirror}{name}: {exc}")
        else:
            raise OSError("could not download MNIST: " + "; ".join(errors))


def _read_idx(path: Path, offset: int) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    return np.frombuffer(data, np.uint8, offset=offset).copy()


def load_mnist(path=None, download: bool = True):
    """Return ``((x_train, y_train), (x_test, y_test))`` as uint8 arrays of shapes (60000, 28, 28),
    (60000,), (10000, 28, 28), (10000,), like ``keras.datasets.mnist.load_data()``.

    Looks for the four original ``*-idx?-ubyte.gz`` files in ``path``, then ``$FASTBP_DATA``, then
    the user cache directory (each folder itself or its ``mnist`` subfolder); checks their SHA-256
    against the published files; downloads into the user cache only when none is found and
    ``download`` is true. Raises FileNotFoundError naming every folder it looked in otherwise.
    """
    folders = _candidates(path)
    found = next((d for d in folders if _complete(d)), None)
    if found is None:
        if not download:
            raise FileNotFoundError(_not_found(folders, "downloading was disabled"))
        try:
            _download(user_cache_dir() / "mnist")
        except OSError as exc:
            raise FileNotFoundError(_not_found(folders, str(exc))) from exc
        found = user_cache_dir() / "mnist"
    _verify(found)
    x_train = _read_idx(found / "train-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28)
    y_train = _read_idx(found / "train-labels-idx1-ubyte.gz", 8)
    x_test = _read_idx(found / "t10k-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28)
    y_test = _read_idx(found / "t10k-labels-idx1-ubyte.gz", 8)
    return (x_train, y_train), (x_test, y_test)


def _not_found(folders, why: str) -> str:
    listing = "\n  ".join(str(d) for d in folders)
    return (f"MNIST files ({', '.join(MNIST_FILES)}) not found; looked in:\n  {listing}\n"
            f"and {why}. Point fastbp at them with load_mnist(path=...) or the {DATA_ENV} "
            f"environment variable (a folder holding the files or a 'mnist' folder with them).")
