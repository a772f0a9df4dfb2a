"""Every path of the engine, derived from the two roots.

Nothing else in the engine builds a path under the roots by hand, so that
several engines (and every test) can run side by side with their own roots.
"""
from __future__ import annotations

import hashlib
import os

import attrs

DEFAULT_DATA_ROOT = "/var/lib/pallet"
DEFAULT_EXEC_ROOT = "/run/pallet"
DEFAULT_RUNC_ROOT = "/run/pallet-runc"


@attrs.frozen
class Paths:
    """Paths under a data root (persistent) and an exec root (runtime state)."""

    data_root: str = DEFAULT_DATA_ROOT
    exec_root: str = DEFAULT_EXEC_ROOT

    @classmethod
    def for_containerd(cls, root: str, state: str) -> "Paths":
        """Paths of a pallet-containerd started with its own --root and --state."""
        return ContainerdPaths(os.path.dirname(root), os.path.dirname(state), root, state)

    # --- palletd -----------------------------------------------------------
    @property
    def palletd_socket(self) -> str:
        return os.path.join(self.exec_root, "pallet.sock")

    @property
    def palletd_pidfile(self) -> str:
        return os.path.join(self.exec_root, "palletd.pid")

    def container_dir(self, cid: str) -> str:
        return os.path.join(self.data_root, "containers", cid)

    def fifo_dir(self, cid: str) -> str:
        return os.path.join(self.exec_root, "fifo", cid)

    @property
    def network_root(self) -> str:
        return os.path.join(self.data_root, "network")

    @property
    def volumes_root(self) -> str:
        return os.path.join(self.data_root, "volumes")

    # --- pallet-containerd ---------------------------------------------------
    @property
    def containerd_root(self) -> str:
        return os.path.join(self.data_root, "containerd")

    @property
    def containerd_state(self) -> str:
        return os.path.join(self.exec_root, "containerd")

    @property
    def containerd_socket(self) -> str:
        return os.path.join(self.containerd_state, "containerd.sock")

    @property
    def content_root(self) -> str:
        return os.path.join(self.containerd_root, "io.containerd.content.v1.content")

    def snapshotter_root(self, name: str = "overlayfs") -> str:
        return os.path.join(self.containerd_root, f"io.containerd.snapshotter.v1.{name}")

    @property
    def metadata_db(self) -> str:
        return os.path.join(self.containerd_root, "io.containerd.metadata.v1.pallet", "meta.db")

    def bundle_dir(self, namespace: str, cid: str) -> str:
        return os.path.join(self.containerd_state, "io.containerd.runtime.v2.task", namespace, cid)

    def shim_socket(self, namespace: str, cid: str) -> str:
        # unix socket paths are limited to 108 bytes: keep them short, as
        # containerd does with /run/containerd/s/<hash>
        digest = hashlib.sha256(f"{namespace}/{cid}".encode()).hexdigest()[:24]
        return os.path.join(self.containerd_state, "s", digest)

    @property
    def runtime_root(self) -> str:
        """--root of the runtime; the shim adds the containerd namespace below it."""
        return os.path.join(self.containerd_state, "runtime")


@attrs.frozen
class ContainerdPaths(Paths):
    """Paths of a pallet-containerd whose --root and --state were given apart."""

    root: str = ""
    state: str = ""

    @property
    def containerd_root(self) -> str:
        return self.root

    @property
    def containerd_state(self) -> str:
        return self.state
