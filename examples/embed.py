"""Run a container from Python without palletd, by embedding pallet's core.

    sudo .venv/bin/python examples/embed.py IMAGE.tar [COMMAND ...]

The program loads the same plugins palletd would (through the entry points
and the configuration), but only the roles it needs: the image store and the
runtime (with init).  It imports the image archive, unpacks it into snapshots,
mounts a fresh writable snapshot as the root filesystem and runs the command
in its own namespaces, as a child of this process.  Everything lives under a
temporary data root and exec root, removed at the end.
"""
import os
import sys
import tempfile

from pallet.core.kernel import Kernel
from pallet.core.paths import Paths


def container_spec(args: list[str], hostname: str) -> dict:
    """A small OCI spec: the usual namespaces and kernel file systems."""
    return {
        "ociVersion": "1.1.0",
        "process": {"args": args, "cwd": "/", "user": {"uid": 0, "gid": 0},
                    "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
        "root": {"path": "rootfs"},
        "hostname": hostname,
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
        ],
        "linux": {"namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")]},
    }


def run(archive: str, args: list[str]) -> int:
    top = tempfile.mkdtemp(prefix="pallet-embed-")
    paths = Paths(os.path.join(top, "data"), os.path.join(top, "exec"))
    kernel = Kernel.load(paths=paths, roles=("image_store", "runtime", "init"))
    store = kernel.provide("image_store")
    runtime = kernel.provide("runtime")

    [image] = store.import_archive(archive, namespace="embed")
    parent = store.unpack(image.target, namespace="embed")
    snapshots = store.snapshotter().namespaced("embed")
    bundle = os.path.join(top, "bundle")
    os.makedirs(os.path.join(bundle, "rootfs"))
    mounts = snapshots.prepare("embedded-container", parent)
    from pallet.linux.mounts import mount_all, unmount_all  # the store's mount helper
    mount_all(mounts, os.path.join(bundle, "rootfs"))
    try:
        import json
        with open(os.path.join(bundle, "config.json"), "w") as f:
            json.dump(container_spec(args, "embedded"), f)
        # the container's PID 1 is our child: become a subreaper, as the shim does
        from pallet.linux.syscalls import set_child_subreaper
        set_child_subreaper()
        pid = runtime.create("embedded", bundle, stdin=0, stdout=1, stderr=2)
        runtime.start("embedded")
        _, status = os.waitpid(pid, 0)
        runtime.delete("embedded", force=True)
        return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) \
            else 128 + os.WTERMSIG(status)
    finally:
        unmount_all(os.path.join(bundle, "rootfs"), detach=True)
        snapshots.remove("embedded-container")
        store.close()
        import shutil
        shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    sys.exit(run(sys.argv[1], sys.argv[2:] or ["echo", "hello from an embedded pallet"]))
