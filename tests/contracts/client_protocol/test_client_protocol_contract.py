"""The ``client_protocol`` role's contract (``pallet.core.contracts.ClientProtocol``)
against every installed implementation: the protocol serves the engine
library, embedded in this test's own process as another Python daemon would
embed it, over a pallet-containerd of the test's own, to the real docker CLI."""
from __future__ import annotations

import asyncio
import glob
import os
import socket
import subprocess
import threading

import pytest

from contract_helpers import implementations
from engines import DOCKER_CLI, VENV_BIN, stop_process, umount_below, wait_socket
from pallet.core import contracts
from pallet.core.config import Config
from pallet.core.kernel import Kernel, Options
from pallet.core.paths import Paths

pytestmark = pytest.mark.root


@pytest.fixture
def containerd(tmp_path):
    """A pallet-containerd on the test's roots."""
    paths = Paths(str(tmp_path / "d"), str(tmp_path / "r"))
    log = open(tmp_path / "containerd.log", "w")
    proc = subprocess.Popen([os.path.join(VENV_BIN, "pallet-containerd"),
                             "--root", paths.containerd_root, "--state", paths.containerd_state,
                             "--address", paths.containerd_socket],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_socket(paths.containerd_socket, proc, log.name)
        yield paths
    finally:
        stop_process(proc)
        log.close()
        umount_below(str(tmp_path))


@pytest.mark.parametrize("plugin", implementations("client_protocol"))
def test_serves_the_engine_until_stopped(plugin, containerd, tmp_path, busybox_tar):
    from pallet.engine.engine import Engine

    paths = containerd
    config = Config(roles={"client_protocol": plugin},
                    engine={"cgroup-parent": f"/pallet-contract-{os.getpid()}"})
    # the engine reads image archives (docker load) with the image store's reader
    kernel = Kernel.load(config, paths=paths, roles=("client_protocol", "image_store"),
                         extensions=False,
                         options=Options(containerd_address=paths.containerd_socket))
    protocol = kernel.provide("client_protocol")
    assert isinstance(protocol, contracts.ClientProtocol)
    sock_path = str(tmp_path / "api.sock")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(sock_path)
    listener.listen(64)
    served = threading.Event()
    result: list = []

    def serve():
        async def main():
            engine = await Engine.from_kernel(kernel).start()
            loop = asyncio.get_running_loop()
            served.set()
            result.append(loop)
            try:
                await protocol.serve(engine, [(f"unix://{sock_path}", listener)])
            finally:
                await engine.close()
        asyncio.run(main())
        result.append("returned")
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    env = dict(os.environ, DOCKER_HOST=f"unix://{sock_path}")

    def docker(*args, **kw):
        return subprocess.run([DOCKER_CLI, *args], env=env, capture_output=True, timeout=60, **kw)
    try:
        assert served.wait(30)
        assert docker("version").returncode == 0
        assert docker("load", "-i", busybox_tar).returncode == 0
        r = docker("run", "--rm", "--network", "none", "busybox", "echo", "embedded")
        assert r.returncode == 0, r.stderr
        assert r.stdout == b"embedded\n"
    finally:
        if result:
            result[0].call_soon_threadsafe(protocol.stop)
        thread.join(30)
        listener.close()
        for parent in glob.glob(f"/sys/fs/cgroup/*/pallet-contract-{os.getpid()}"):
            os.rmdir(parent)
    assert result[-1] == "returned", "serve() did not return after stop()"
