"""pallet-containerd's own behaviour: socket, errors, restart with running tasks."""
from __future__ import annotations

import asyncio
import os
import secrets
import signal
import stat
import subprocess

import grpc
import pytest

import cd_image
from cd_util import VENV_BIN, _wait_socket
from pallet.core.containerd import Containerd
from pallet.core.proto.containerd.services.diff.v1 import diff_pb2, diff_pb2_grpc
from pallet.core.proto.containerd.services.images.v1 import images_pb2, images_pb2_grpc
from test_containerd_client import load_image, minimal_spec

pytestmark = pytest.mark.root


def test_socket_mode(pallet_containerd):
    st = os.stat(pallet_containerd.address)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660


def test_namespace_required_and_unimplemented(pallet_containerd):
    with grpc.insecure_channel("unix://" + pallet_containerd.address) as ch:
        with pytest.raises(grpc.RpcError) as e:
            images_pb2_grpc.ImagesStub(ch).List(images_pb2.ListImagesRequest(), timeout=10)
        assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "namespace is required" in e.value.details()
        with pytest.raises(grpc.RpcError) as e:
            diff_pb2_grpc.DiffStub(ch).Diff(diff_pb2.DiffRequest(), timeout=10,
                                            metadata=(("containerd-namespace", "default"),))
        assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_second_daemon_on_same_socket_refused(pallet_containerd):
    d = pallet_containerd
    r = subprocess.run([os.path.join(VENV_BIN, "pallet-containerd"), "--address", d.address,
                        "--root", d.root + "2", "--state", d.state + "2"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "address already in use" in r.stderr
    assert "Traceback" not in r.stderr


def test_restart_keeps_running_tasks(pallet_containerd):
    d = pallet_containerd
    img = cd_image.build()
    ns = "t-" + secrets.token_hex(3)
    cid = "r-" + secrets.token_hex(4)

    async def before():
        async with Containerd(d.address, ns) as c:
            await load_image(c, "docker.io/library/bb:1", img)
            top = await c.unpack("docker.io/library/bb:1")
            mounts = await c.snapshot_prepare(cid, top)
            await c.container_create(cid, spec=minimal_spec(cid, ["sleep", "300"]),
                                     snapshot_key=cid)
            pid = await c.task_create(cid, rootfs=mounts)
            await c.task_start(cid)
            return pid

    async def after(pid):
        async with Containerd(d.address, ns) as c:
            p = await c.task_get(cid)
            assert p.pid == pid and p.status == 2
            assert [t.id for t in await c.tasks()] == [cid]
            waiter = asyncio.create_task(c.task_wait(cid))
            await asyncio.sleep(0.2)
            await c.task_kill(cid, signal.SIGKILL)
            status, _ = await asyncio.wait_for(waiter, 30)
            assert status == 137
            await c.task_delete(cid)
            await c.container_delete(cid)
            await c.snapshot_remove(cid)

    pid = asyncio.run(before())
    d.proc.send_signal(signal.SIGTERM)
    d.proc.wait(30)
    os.kill(pid, 0)  # the container outlives pallet-containerd
    with open(d.log, "a") as log:
        d.proc = subprocess.Popen(
            [os.path.join(VENV_BIN, "pallet-containerd"), "--address", d.address,
             "--root", d.root, "--state", d.state], stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True)
    _wait_socket(d.address, d.proc, d.log)
    asyncio.run(after(pid))
