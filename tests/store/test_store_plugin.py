"""The plugin's wiring: role, paths from docs/ARCHITECTURE.md, lazy construction."""
from __future__ import annotations

import subprocess
import sys

import pytest

from pallet.core.config import Config
from pallet.core.errors import ConfigError, InvalidArgument
from pallet.core.kernel import Kernel
from pallet.core.paths import Paths
from pallet.plugins.store_overlay import plugin


def make_kernel(tmp_path, section=None):
    config = Config(plugins={"store_overlay": section or {}})
    kernel = Kernel(config, Paths(str(tmp_path / "data"), str(tmp_path / "exec")), {},
                    {"image_store": "store_overlay"}, ["image_store"])
    kernel.pm.register(plugin, name="store_overlay")
    kernel.hook.pallet_configure(kernel=kernel)
    return kernel


def test_provides_the_image_store_at_contract_paths(tmp_path):
    kernel = make_kernel(tmp_path)
    assert plugin.PALLET_ROLE == "image_store"
    store = kernel.provide("image_store")
    assert store is kernel.provide("image_store")
    croot = tmp_path / "data" / "containerd"
    assert store.content_root == str(croot / "io.containerd.content.v1.content")
    assert store.metadata_db == str(croot / "io.containerd.metadata.v1.pallet" / "meta.db")
    assert not croot.exists()  # providing it touched nothing
    assert store.snapshotter().root == str(croot / "io.containerd.snapshotter.v1.overlayfs")
    assert store.snapshotter("native").root == str(croot / "io.containerd.snapshotter.v1.native")
    assert store.snapshotter().name == "overlayfs"
    with pytest.raises(InvalidArgument, match="snapshotter 'btrfs'"):
        store.snapshotter("btrfs")
    store.content.write_blob(b"x")
    assert (croot / "io.containerd.content.v1.content" / "blobs" / "sha256").is_dir()
    store.close()


def test_default_snapshotter_from_config(tmp_path):
    store = make_kernel(tmp_path, {"snapshotter": "native"}).provide("image_store")
    assert store.snapshotter().name == "native"
    with pytest.raises(ConfigError, match="configured snapshotter 'zfs'"):
        make_kernel(tmp_path, {"snapshotter": "zfs"})


def test_plugin_import_is_light():
    code = ("import sys; import pallet.plugins.store_overlay.plugin as p; "
            "heavy = [m for m in ('sqlite3', 'tarfile', 'pallet.imagestore.content',"
            " 'pallet.imagestore.store') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"
