"""The same pull through containerd's gRPC API (ContainerdTarget), against the
real containerd (Debian's 1.6) when installed: what ctr and palletd do.
The image lands in containerd's content store, unpacked in its overlayfs
snapshotter, listed by ``ctr images ls``."""
from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

from pallet.distribution.pull import pull
from pallet.distribution.push import push
from pallet.containerd.target import ContainerdTarget
from registry_helpers import needs_registry, needs_root, needs_skopeo, skopeo_copy

pytestmark = [needs_registry, needs_skopeo, *needs_root, pytest.mark.skipif(
    not shutil.which("containerd") or not shutil.which("ctr"), reason="needs containerd")]


@pytest.fixture
def containerd():
    base = tempfile.mkdtemp(prefix="pl-rg-ctd-")
    sock = os.path.join(base, "s", "c.sock")
    config = os.path.join(base, "config.toml")
    with open(config, "w") as f:
        f.write(f'version = 2\nroot = "{base}/root"\nstate = "{base}/s"\n'
                f'[grpc]\n  address = "{sock}"\n'
                '[plugins."io.containerd.grpc.v1.cri"]\n  disable = true\n')
    log = open(os.path.join(base, "log"), "wb")
    proc = subprocess.Popen(["containerd", "--config", config], stdout=log, stderr=log,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while not (os.path.exists(sock) and subprocess.run(
                ["ctr", "--address", sock, "version"], capture_output=True).returncode == 0):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.skip("containerd did not start")
            time.sleep(0.1)
        yield sock
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        subprocess.run(["umount", "-R", "-l", base], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def test_pull_and_push_through_containerds_api(containerd, registry, busybox_tar):
    from pallet.containerd.client import Containerd

    skopeo_copy(f"docker-archive:{busybox_tar}", f"docker://{registry.host}/c/busybox:1")
    ref = f"{registry.host}/c/busybox:1"

    async def go():
        async with Containerd(containerd, "pallet-test") as client:
            target = ContainerdTarget(client, snapshotter="overlayfs")
            msgs = []
            result = await pull(ref, target, progress=msgs.append)
            again = await pull(ref, target)
            await client.image_put(f"{registry.host}/c/copy:2", result.target.to_oci())
            pushed = await push(f"{registry.host}/c/copy:2", target)
            return result, again, msgs, pushed
    result, again, msgs, pushed = asyncio.run(go())
    assert msgs[-1]["status"] == f"Status: Downloaded newer image for {ref}"
    assert not again.updated
    assert pushed.digest == result.target.digest

    def ctr(*args):
        return subprocess.run(["ctr", "--address", containerd, "-n", "pallet-test", *args],
                              capture_output=True, text=True, check=True).stdout
    assert result.target.digest in ctr("images", "ls")
    assert result.chain_id in ctr("snapshots", "--snapshotter", "overlayfs", "ls")
    assert ctr("leases", "ls").strip().count("\n") == 0  # only the header: lease released
    out = subprocess.run(["ctr", "--address", containerd, "-n", "pallet-test", "run", "--rm",
                          ref, f"pl-rg-{os.getpid()}", "/bin/sh", "-c", "echo ran"],
                         capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "ran", out.stderr
