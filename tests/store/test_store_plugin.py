"""The store plugins' wiring: role, paths from docs/ARCHITECTURE.md, one
snapshotter each, lazy construction."""
from __future__ import annotations

import subprocess
import sys

import pytest

from pallet.core.config import Config
from pallet.core.errors import ConfigError, NotFound
from pallet.core.kernel import Kernel
from pallet.core.paths import Paths
from pallet.plugins.store_native import plugin as native_plugin
from pallet.plugins.store_overlay import plugin as overlay_plugin

PLUGINS = {"store_overlay": (overlay_plugin, "overlayfs"),
           "store_native": (native_plugin, "native")}


def make_kernel(tmp_path, name="store_overlay", section=None):
    plugin = PLUGINS[name][0]
    config = Config(plugins={name: section or {}})
    kernel = Kernel(config, Paths(str(tmp_path / "data"), str(tmp_path / "exec")), {},
                    {"image_store": name}, ["image_store"])
    kernel.pm.register(plugin, name=name)
    kernel.hook.pallet_configure(kernel=kernel)
    return kernel


@pytest.mark.parametrize("name", sorted(PLUGINS))
def test_provides_the_image_store_at_contract_paths(tmp_path, name):
    plugin, snapshotter = PLUGINS[name]
    kernel = make_kernel(tmp_path, name)
    assert plugin.PALLET_ROLE == "image_store"
    store = kernel.provide("image_store")
    assert store is kernel.provide("image_store")
    croot = tmp_path / "data" / "containerd"
    assert store.content_root == str(croot / "io.containerd.content.v1.content")
    assert store.metadata_db == str(croot / "io.containerd.metadata.v1.pallet" / "meta.db")
    assert not croot.exists()  # providing it touched nothing
    assert store.snapshotter_names() == (snapshotter,)
    assert store.default_snapshotter == snapshotter
    assert store.snapshotter().root == str(croot / f"io.containerd.snapshotter.v1.{snapshotter}")
    assert store.snapshotter().name == snapshotter
    other = "native" if snapshotter == "overlayfs" else "overlayfs"
    with pytest.raises(NotFound, match=f"snapshotter not loaded: {other}"):
        store.snapshotter(other)
    store.content.write_blob(b"x")
    assert (croot / "io.containerd.content.v1.content" / "blobs" / "sha256").is_dir()
    store.close()


def test_overlay_refuses_the_native_snapshotter_key(tmp_path):
    make_kernel(tmp_path, section={"snapshotter": "overlayfs"})  # the old default is fine
    with pytest.raises(ConfigError, match='image_store = "store_native"'):
        make_kernel(tmp_path, section={"snapshotter": "native"})


@pytest.mark.parametrize("name", sorted(PLUGINS))
def test_registry_keys_are_checked(tmp_path, name):
    make_kernel(tmp_path, name, {"max-concurrent-downloads": 2})
    with pytest.raises(ConfigError, match=f"plugins.{name}"):
        make_kernel(tmp_path, name, {"max-concurrent-downloads": "many"})


@pytest.mark.parametrize("name", sorted(PLUGINS))
def test_plugin_import_is_light(name):
    code = (f"import sys; import pallet.plugins.{name}.plugin as p; "
            "heavy = [m for m in ('sqlite3', 'tarfile', 'pallet.imagestore.content',"
            " 'pallet.imagestore.store') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"
