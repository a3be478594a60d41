"""Atomic file writes: a process killed at any moment leaves the old file or the new one.

:func:`atomic_write` writes into a temporary file in the target's folder, flushes and fsyncs it,
renames it over the target (``os.replace``, atomic on POSIX and Windows) and fsyncs the folder so
that the rename itself survives a power loss. On any error the temporary file is removed and the
target is untouched. A process killed mid-write leaves at most a stale hidden temporary file
(``.<name>.<random>.tmp``), never a partial target.
"""
from __future__ import annotations

import errno
import os
import tempfile

TEMP_SUFFIX = ".tmp"


def temp_prefix(path) -> str:
    """The name prefix of :func:`atomic_write`'s temporary files for ``path`` (the name cut to 200
    characters, so that the temporary's name fits wherever the target's does)."""
    return "." + os.path.basename(os.fspath(path))[:200] + "."


def atomic_write(path, write) -> None:
    """Call ``write(file)`` on a new binary file and make it ``path`` atomically (same folder,
    fsync, rename, fsync of the folder). The new file gets the permissions the old one had, or the
    usual ``0o666 & ~umask`` for a new file."""
    path = os.path.realpath(os.fspath(path))  # a symbolic link: its target is replaced, the link stays
    folder = os.path.dirname(path)
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path} is a directory; give a file name")
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path), suffix=TEMP_SUFFIX, dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _mode_for(path))
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_folder(folder)


def _mode_for(path) -> int:
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        return 0o666 & ~_umask()


def _umask() -> int:
    """The process's umask, read without changing it where Linux allows (/proc), else by the
    set-and-restore idiom."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_folder(folder) -> None:
    """fsync the folder (the rename's durability); where the file system cannot (Windows, some
    network and FUSE mounts: EINVAL, ENOTSUP, EACCES), the file itself is already whole and renamed."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EACCES, errno.EBADF):
            raise
    finally:
        os.close(fd)
