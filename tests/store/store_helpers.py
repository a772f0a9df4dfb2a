"""Helpers shared by the image store tests (markers, layer builder)."""
from __future__ import annotations

import io
import os
import tarfile

import pytest


def overlay_available() -> bool:
    try:
        with open("/proc/filesystems") as f:
            return any(line.split()[-1] == "overlay" for line in f if line.strip())
    except OSError:
        return False


def _marks(*marks):
    """One decorator applying several marks (usable as ``pytestmark`` too)."""
    class Marks(list):
        def __call__(self, fn):
            for m in self:
                fn = m(fn)
            return fn
    return Marks(marks)


#: tests that need root; also marked ``root`` (tests/conftest.py) so CI can select them
needs_root = _marks(pytest.mark.root, pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root (mounts, mknod, xattrs)"))
needs_overlay = _marks(pytest.mark.root, pytest.mark.skipif(
    os.geteuid() != 0 or not overlay_available(), reason="needs root and overlayfs"))


class LayerBuilder:
    """Builds layer tarballs entry by entry (for crafted and hostile layers)."""

    def __init__(self, path):
        self.path = str(path)
        self._tf = tarfile.open(self.path, "w", format=tarfile.PAX_FORMAT)

    def _info(self, name, type_, mode=0o644, uid=0, gid=0, mtime=1_000_000_000, **kw):
        ti = tarfile.TarInfo(name)
        ti.type, ti.mode, ti.uid, ti.gid, ti.mtime = type_, mode, uid, gid, mtime
        for k, v in kw.items():
            setattr(ti, k, v)
        return ti

    def dir(self, name, mode=0o755, **kw):
        self._tf.addfile(self._info(name, tarfile.DIRTYPE, mode, **kw))
        return self

    def file(self, name, data: bytes = b"", mode=0o644, **kw):
        ti = self._info(name, tarfile.REGTYPE, mode, **kw)
        ti.size = len(data)
        self._tf.addfile(ti, io.BytesIO(data))
        return self

    def symlink(self, name, target, **kw):
        self._tf.addfile(self._info(name, tarfile.SYMTYPE, 0o777, linkname=target, **kw))
        return self

    def hardlink(self, name, target, **kw):
        self._tf.addfile(self._info(name, tarfile.LNKTYPE, 0o644, linkname=target, **kw))
        return self

    def device(self, name, kind, major, minor, mode=0o600, **kw):
        t = {"chr": tarfile.CHRTYPE, "blk": tarfile.BLKTYPE, "fifo": tarfile.FIFOTYPE}[kind]
        self._tf.addfile(self._info(name, t, mode, devmajor=major, devminor=minor, **kw))
        return self

    def close(self) -> str:
        self._tf.close()
        return self.path
