"""containerd's native snapshotter (Docker's vfs driver): every snapshot a
full copy of its parent, mounted with a bind mount.

It needs nothing of the filesystem beneath it, so it works where overlayfs
cannot be stacked (pallet inside a container whose root is itself overlayfs,
some rootless set-ups), at the cost of disk and time per layer.  Layout under
``{containerd_root}/io.containerd.snapshotter.v1.native``: ``snapshots/<id>``
is the snapshot's tree itself, as in containerd.
"""
from __future__ import annotations

import os
import subprocess

from pallet.core.models import Mount
from pallet.imagestore.snapshots import KIND_VIEW, Snapshotter


def copy_tree(src: str, dst: str) -> None:
    """Copy a tree with owners, modes, times, xattrs, hard links and device nodes.

    GNU ``cp -a --preserve=all`` does exactly that (and reflinks when the
    filesystem can), which a Python walk would only reimplement.
    """
    proc = subprocess.run(["cp", "-a", "--preserve=all", "--reflink=auto",
                           "--no-target-directory", src, dst],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise OSError(f"copy {src} to {dst}: {proc.stderr.strip().lower()}")


class NativeSnapshotter(Snapshotter):
    """containerd's native snapshotter: each snapshot is a full copy of its
    parent, mounted with a bind mount (``rw`` when active, ``ro`` for a view)."""

    name = "native"

    def _tree(self, sid: int) -> str:
        return self._snapdir(sid)

    def _populate(self, tmpdir: str, kind: str, parent_ids: list[int]) -> None:
        if parent_ids:
            os.rmdir(tmpdir)
            copy_tree(self._tree(parent_ids[0]), tmpdir)
        else:
            os.chmod(tmpdir, 0o755)

    def _mounts(self, sid: int, kind: str, parent_ids: list[int]) -> list[Mount]:
        ro = "ro" if kind == KIND_VIEW else "rw"
        return [Mount(type="bind", source=self._tree(sid), options=(ro, "rbind"))]
