"""Fixtures of the image store tests: roots under pytest's tmp_path (unique per
test), the built-in busybox archive (built once per session), and a mount
tracker that unmounts everything a test mounted, even when it fails."""
from __future__ import annotations

import os

import pytest

from pallet.distribution import busybox_image as builtin
from pallet.linux import mounts as mountlib
from pallet.imagestore.store import ImageStore
from pallet.plugins.store_native.native import NativeSnapshotter
from pallet.plugins.store_overlay.overlay import OverlaySnapshotter
from store_helpers import LayerBuilder


@pytest.fixture(scope="session")
def busybox_tar(tmp_path_factory) -> str:
    """The built-in busybox image as a docker-save tarball."""
    path = str(tmp_path_factory.mktemp("busybox") / "busybox.tar")
    builtin.write_archive(path)
    return path


@pytest.fixture
def store(tmp_path) -> ImageStore:
    """The library's ImageStore laid out as pallet-containerd's, under this
    test's tmp_path, with both plugins' snapshotters (overlayfs the default)."""
    root = tmp_path / "containerd"
    s = ImageStore(
        content_root=str(root / "io.containerd.content.v1.content"),
        metadata_db=str(root / "io.containerd.metadata.v1.pallet" / "meta.db"),
        snapshotters=[(cls, str(root / f"io.containerd.snapshotter.v1.{cls.name}"))
                      for cls in (OverlaySnapshotter, NativeSnapshotter)])
    yield s
    s.close()


class Mounts:
    """Mounts made by one test, undone in reverse order at teardown."""

    def __init__(self, base):
        self.base = base
        self.targets: list[str] = []

    def mount(self, mounts, name: str) -> str:
        target = str(self.base / name)
        os.makedirs(target, exist_ok=True)
        self.targets.append(target)
        mountlib.mount_all(mounts, target)
        return target

    def unmount(self, target: str) -> None:
        mountlib.unmount_all(target)
        self.targets.remove(target)

    def cleanup(self) -> None:
        for target in reversed(self.targets):
            mountlib.unmount_all(target, detach=True)
        self.targets.clear()


@pytest.fixture
def mounts(tmp_path):
    tracker = Mounts(tmp_path / "mnt")
    yield tracker
    tracker.cleanup()


@pytest.fixture
def layer(tmp_path):
    """``layer("name")`` -> a LayerBuilder writing tmp_path/name.tar."""
    def make(name="layer"):
        return LayerBuilder(tmp_path / f"{name}.tar")
    return make
