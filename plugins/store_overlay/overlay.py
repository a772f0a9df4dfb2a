"""containerd's overlayfs snapshotter over the image store's snapshot table.

Layout under ``{containerd_root}/io.containerd.snapshotter.v1.overlayfs``::

    snapshots/<id>/fs      the snapshot's own files (overlay's upperdir)
    snapshots/<id>/work    overlay's workdir (active snapshots only)
"""
from __future__ import annotations

import os

from pallet.core.models import Mount
from pallet.imagestore.snapshots import KIND_ACTIVE, KIND_VIEW, Snapshotter


def _supports_index_off() -> bool:
    # containerd adds index=off when the module knows the option, so that an
    # upper dir reused after its lower changed does not fail the mount
    return os.path.exists("/sys/module/overlay/parameters/index")


class OverlaySnapshotter(Snapshotter):
    """containerd's overlayfs snapshotter.

    Mounts, as containerd returns them:

    * no parent: ``bind`` of the snapshot's ``fs`` (``rw``/``ro``, ``rbind``),
      since overlay needs a lower layer;
    * active with parents: ``overlay`` with ``lowerdir`` (nearest parent
      first), ``upperdir`` and ``workdir``;
    * view with one parent: read-only ``bind`` of that parent's ``fs``;
    * view with several: ``overlay`` with only ``lowerdir`` (read-only).
    """

    name = "overlayfs"

    def __init__(self, root: str):
        super().__init__(root)
        self._index_off: bool | None = None

    def upper_path(self, sid: int) -> str:
        """The ``fs`` directory of snapshot ``sid`` (its upperdir while active)."""
        return os.path.join(self._snapdir(sid), "fs")

    def _tree(self, sid: int) -> str:
        return self.upper_path(sid)

    def _populate(self, tmpdir: str, kind: str, parent_ids: list[int]) -> None:
        fs = os.path.join(tmpdir, "fs")
        os.mkdir(fs, 0o755)
        os.chmod(fs, 0o755)
        if kind == KIND_ACTIVE:
            os.mkdir(os.path.join(tmpdir, "work"), 0o711)
        if parent_ids:
            # the root of the merged tree takes its owner from the upper dir
            st = os.stat(self.upper_path(parent_ids[0]))
            os.lchown(fs, st.st_uid, st.st_gid)

    def _mounts(self, sid: int, kind: str, parent_ids: list[int]) -> list[Mount]:
        if not parent_ids:
            ro = "ro" if kind == KIND_VIEW else "rw"
            return [Mount(type="bind", source=self.upper_path(sid), options=(ro, "rbind"))]
        if self._index_off is None:
            self._index_off = _supports_index_off()
        options = ["index=off"] if self._index_off else []
        if kind == KIND_ACTIVE:
            options += [f"workdir={os.path.join(self._snapdir(sid), 'work')}",
                        f"upperdir={self.upper_path(sid)}"]
        elif len(parent_ids) == 1:
            return [Mount(type="bind", source=self.upper_path(parent_ids[0]),
                          options=("ro", "rbind"))]
        options.append("lowerdir=" + ":".join(self.upper_path(p) for p in parent_ids))
        return [Mount(type="overlay", source="overlay", options=tuple(options))]
