"""Remote snapshots: ``Index.snapshot`` into a directory under the server's ``--snapshot-dir``.

A snapshot is written into a hidden temporary directory and renamed into place, so a listed
snapshot is always complete; names are single path components, so nothing is ever written or
deleted outside the snapshot directory.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
import uuid
from dataclasses import dataclass

from simsearch.errors import AlreadyExistsError, FailedPreconditionError, InvalidArgumentError, NotFoundError

from ._metrics import directory_bytes

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
_TMP_PREFIX = ".tmp-"


@dataclass(frozen=True)
class SnapshotInfo:
    name: str
    size_bytes: int
    created_unix_seconds: float


def check_snapshot_name(name: str) -> str:
    """``name`` as one directory entry under the snapshot directory, or INVALID_ARGUMENT."""
    if os.path.isabs(name) or "/" in name or "\\" in name:
        raise InvalidArgumentError(
            f"A snapshot name is a directory name under --snapshot-dir, not a path. Got {name!r}.")
    if name in (".", "..") or name.startswith(".") or not _NAME.match(name):
        raise InvalidArgumentError(
            f"A snapshot name must be 1 to 128 characters from [A-Za-z0-9_.-], not starting with '.'. Got {name!r}.")
    return name


class Snapshots:
    """The snapshot directory of one server (None: snapshots are refused)."""

    def __init__(self, root: str | None) -> None:
        self.root = None if root is None else os.path.realpath(root)
        self._lock = threading.Lock()

    def _path(self, name: str) -> str:
        if self.root is None:
            raise FailedPreconditionError("snapshots are off: start the server with --snapshot-dir DIR")
        path = os.path.join(self.root, check_snapshot_name(name))
        if os.path.dirname(os.path.realpath(path)) != self.root:  # a symlink planted in the directory
            raise InvalidArgumentError(f"the snapshot {name!r} resolves outside --snapshot-dir")
        return path

    def _info(self, name: str) -> SnapshotInfo:
        path = os.path.join(self.root, name)
        return SnapshotInfo(name, directory_bytes(path) or 0, os.stat(path).st_mtime)

    def create(self, index, name: str = "") -> SnapshotInfo:
        if not name:
            name = "snapshot-" + time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + f"-{uuid.uuid4().hex[:6]}"
        dest = self._path(name)
        os.makedirs(self.root, exist_ok=True)
        if os.path.lexists(dest):
            raise AlreadyExistsError(f"snapshot {name!r} exists; pick another name or delete it first")
        tmp = os.path.join(self.root, f"{_TMP_PREFIX}{name}-{uuid.uuid4().hex}")
        try:
            index.snapshot(tmp)
            with self._lock:
                if os.path.lexists(dest):
                    raise AlreadyExistsError(f"snapshot {name!r} exists; pick another name or delete it first")
                os.rename(tmp, dest)
        finally:
            if os.path.exists(tmp):
                shutil.rmtree(tmp, ignore_errors=True)
        fd = os.open(self.root, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return self._info(name)

    def list(self) -> list[SnapshotInfo]:
        self._path("x")  # refused when off
        if not os.path.isdir(self.root):
            return []
        return [self._info(e.name) for e in sorted(os.scandir(self.root), key=lambda e: e.name)
                if e.is_dir(follow_symlinks=False) and not e.name.startswith(".")]

    def delete(self, name: str) -> None:
        path = self._path(name)
        with self._lock:
            if not os.path.isdir(path) or os.path.islink(path):
                raise NotFoundError(f"snapshot {name!r} does not exist")
            trash = os.path.join(self.root, f"{_TMP_PREFIX}deleted-{uuid.uuid4().hex}")
            os.rename(path, trash)  # gone from the listing at once, removed below
        shutil.rmtree(trash, ignore_errors=True)
