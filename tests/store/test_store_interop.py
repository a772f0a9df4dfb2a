"""Interoperability with the real containerd (Debian's), when installed:
archives written by pallet load there with the same manifest digest, and
archives written by containerd load in pallet."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

from pallet.distribution import busybox_image as builtin
from pallet.distribution.archive import read_archive

pytestmark = [pytest.mark.root, pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("containerd") or not shutil.which("ctr"),
    reason="needs root, containerd and ctr")]


@pytest.fixture
def containerd():
    """A private containerd (own root, state, socket; CRI off), stopped after."""
    base = tempfile.mkdtemp(prefix="pallet-store-ctd-")
    sock = os.path.join(base, "s", "c.sock")
    config = os.path.join(base, "config.toml")
    with open(config, "w") as f:
        f.write(f'version = 2\nroot = "{base}/root"\nstate = "{base}/s"\n'
                f'[grpc]\n  address = "{sock}"\n'
                '[plugins."io.containerd.grpc.v1.cri"]\n  disable = true\n')
    log = open(os.path.join(base, "log"), "wb")
    proc = subprocess.Popen(["containerd", "--config", config], stdout=log, stderr=log,
                            start_new_session=True)

    def ctr(*args):
        return subprocess.run(["ctr", "--address", sock, "-n", "pallet-test", *args],
                              capture_output=True, text=True, check=True, timeout=60).stdout
    try:
        deadline = time.monotonic() + 20
        while True:
            if os.path.exists(sock) and subprocess.run(
                    ["ctr", "--address", sock, "version"], capture_output=True).returncode == 0:
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.skip("containerd did not start")
            time.sleep(0.1)
        yield ctr
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


def test_containerd_imports_our_archive_with_the_same_digest(containerd, busybox_tar):
    out = containerd("images", "import", busybox_tar)
    assert "docker.io/library/busybox:latest" in out
    listing = containerd("images", "ls")
    assert builtin.build_image().manifest.digest in listing


def test_we_read_containerds_export(containerd, busybox_tar, store, tmp_path):
    containerd("images", "import", busybox_tar)
    exported = str(tmp_path / "from-containerd.tar")
    containerd("images", "export", exported, "docker.io/library/busybox:latest")
    with read_archive(exported) as archive:
        names = {i.name: i.target.digest for i in archive.images()}
    assert names == {"docker.io/library/busybox:latest": builtin.build_image().manifest.digest}
    (rec,) = store.import_archive(exported, "default")
    assert store.resolve(rec.target).image_id == builtin.build_image().image_id
