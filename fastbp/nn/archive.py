"""The file format of saved models and weights: a zip of a JSON manifest and ``.npy`` arrays.

A file holds one manifest (``fastbp_model.json`` or ``fastbp_weights.json``) with its ``format``,
``format_version`` and, under ``"arrays"``, each array's member name, shape, dtype and SHA-256;
every array is one uncompressed ``.npy`` member (``allow_pickle=False``), so ``np.load`` opens a
weights file too. Reading checks, in this order: a zip archive, the manifest present, within size
limits, valid JSON of the expected format and a version this code reads, each member's zip CRC-32,
each array's size, SHA-256, ``.npy`` header, shape and dtype. Any failure is a ``ValueError``
naming the file and what is wrong; nothing is parsed before its checksum matched.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile

import numpy as np

from .atomic import atomic_write

#: the largest manifest read (a manifest holds configs and checksums: kilobytes)
MAX_MANIFEST_BYTES = 16 << 20
#: the largest .npy header written by NumPy (version 2/3 headers may be up to 4 GiB; ours are small)
MAX_NPY_HEADER_BYTES = 1 << 16
_DTYPES = ("float32", "float64", "int64", "int32")


class ArchiveError(ValueError):
    """A file that is not a readable archive of the expected kind."""


def write_archive(path, manifest_name, manifest: dict, arrays: dict) -> None:
    """Write ``manifest`` (with an ``"arrays"`` entry added) and ``arrays`` (member name ->
    ndarray) to ``path``, atomically (:func:`fastbp.nn.atomic.atomic_write`)."""
    blobs, entries = {}, {}
    for name, array in arrays.items():
        array = np.ascontiguousarray(array)
        if array.dtype.name not in _DTYPES:
            raise TypeError(f"cannot save array {name!r} of dtype {array.dtype}")
        buf = io.BytesIO()
        np.lib.format.write_array(buf, array, allow_pickle=False)
        blobs[name] = buf.getvalue()
        entries[name] = {"shape": list(array.shape), "dtype": array.dtype.name,
                         "sha256": hashlib.sha256(blobs[name]).hexdigest()}
    text = json.dumps({**manifest, "arrays": entries}, indent=1, sort_keys=True).encode("utf-8")

    def write(f):
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as zf:
            zf.writestr(manifest_name, text)
            for name, blob in blobs.items():
                zf.writestr(name, blob)
    atomic_write(path, write)


class Archive:
    """An opened, checked archive: ``manifest`` (dict) and :meth:`array` (checked on read)."""

    def __init__(self, path, manifest_name, expected_format, readable_versions, other_kinds=None):
        self.path = os.fspath(path)
        self._zip = _open_zip(self.path)
        try:
            self.manifest = self._read_manifest(manifest_name, expected_format, readable_versions, other_kinds or {})
        except BaseException:
            self._zip.close()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._zip.close()

    def fail(self, why) -> ArchiveError:
        return ArchiveError(f"{self.path}: {why}")

    def _member(self, name, limit):
        try:
            info = self._zip.getinfo(name)
        except KeyError:
            raise self.fail(f"the member {name!r} is missing") from None
        if info.file_size > limit:
            raise self.fail(f"the member {name!r} has {info.file_size} bytes, more than the {limit} expected")
        try:
            return self._zip.read(info)
        except (zipfile.BadZipFile, EOFError, OSError, ValueError, zipfile.LargeZipFile) as e:
            raise self.fail(f"the member {name!r} is corrupted or truncated ({e})") from None
        except Exception as e:  # zlib errors, NotImplementedError for unknown compression, ...
            raise self.fail(f"the member {name!r} cannot be read ({type(e).__name__}: {e})") from None

    def _read_manifest(self, name, expected_format, versions, other_kinds):
        if name not in self._zip.namelist():
            for other, what in other_kinds.items():
                if other in self._zip.namelist():
                    raise self.fail(f"this is {what}, not a {expected_format} file")
            raise self.fail(f"not a {expected_format} file (no {name} in the archive)")
        raw = self._member(name, MAX_MANIFEST_BYTES)
        try:
            manifest = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise self.fail(f"the manifest {name} is not valid JSON ({e})") from None
        if not isinstance(manifest, dict) or manifest.get("format") != expected_format:
            raise self.fail(f"not a {expected_format} file (its manifest says format "
                            f"{manifest.get('format') if isinstance(manifest, dict) else manifest!r})")
        version = manifest.get("format_version")
        if version not in versions:
            raise self.fail(f"format version {version!r} cannot be read by this fastbp (it reads "
                            f"{', '.join(map(str, versions))}); a newer fastbp may have written it")
        if not isinstance(manifest.get("arrays"), dict):
            raise self.fail("the manifest has no array table")
        return manifest

    def names(self):
        return list(self.manifest["arrays"])

    def array(self, name, shape=None, dtype=None, what=None) -> np.ndarray:
        """The array ``name``, after checking its checksum and, where given, that it has ``shape``
        and ``dtype`` (``what`` says what needs that shape, for the error)."""
        entry = self.manifest["arrays"].get(name)
        if not isinstance(entry, dict):
            raise self.fail(f"the array {name!r} is not in the manifest")
        try:
            want_shape = tuple(int(s) for s in entry["shape"])
            want_dtype = np.dtype(entry["dtype"])
            digest = str(entry["sha256"])
        except (KeyError, TypeError, ValueError):
            raise self.fail(f"the manifest's entry for {name!r} is malformed") from None
        if want_dtype.name not in _DTYPES or any(s < 0 for s in want_shape):
            raise self.fail(f"the manifest's entry for {name!r} is malformed")
        what = what or name
        if shape is not None and want_shape != tuple(shape):
            raise self.fail(f"{what}: the saved array has shape {want_shape}, the saved architecture needs "
                            f"{tuple(shape)}")
        if dtype is not None and want_dtype != np.dtype(dtype):
            raise self.fail(f"{what}: the saved array has dtype {want_dtype}, expected {np.dtype(dtype)}")
        size = int(np.prod(want_shape, dtype=np.int64)) * want_dtype.itemsize
        blob = self._member(name, size + MAX_NPY_HEADER_BYTES)
        if hashlib.sha256(blob).hexdigest() != digest:
            raise self.fail(f"the array {name!r} is corrupted (its SHA-256 does not match the manifest)")
        try:
            array = np.lib.format.read_array(io.BytesIO(blob), allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise self.fail(f"the array {name!r} is not a valid .npy ({e})") from None
        if array.shape != want_shape or array.dtype != want_dtype:
            raise self.fail(f"the array {name!r} holds shape {array.shape} {array.dtype}, the manifest says "
                            f"{want_shape} {want_dtype}")
        return array


def _open_zip(path):
    try:
        size = os.path.getsize(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    if os.path.isdir(path):
        raise ArchiveError(f"{path}: is a directory, not a saved file")
    if size == 0:
        raise ArchiveError(f"{path}: the file is empty")
    try:
        return zipfile.ZipFile(path, "r")
    except zipfile.BadZipFile as e:
        raise ArchiveError(f"{path}: not a fastbp file, or truncated or corrupted (not a readable zip archive: {e})") \
            from None
    except (OSError, EOFError, ValueError, NotImplementedError, zipfile.LargeZipFile) as e:
        if isinstance(e, (FileNotFoundError, PermissionError)):
            raise
        raise ArchiveError(f"{path}: unreadable as a zip archive ({type(e).__name__}: {e})") from None
