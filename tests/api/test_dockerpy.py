"""docker-py 7 against palletd."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.root


def test_version_ping_info(palletd):
    c = palletd.client()
    assert c.ping() is True
    assert c.version()["ApiVersion"] == "1.43"
    info = c.info()
    assert info["OSType"] == "linux" and info["ServerVersion"]


def test_run_remove_streams(palletd):
    c = palletd.client()
    out = c.containers.run("busybox", ["sh", "-c", "echo out; echo err >&2"], remove=True,
                           stdout=True, stderr=False)
    assert out == b"out\n"
    out = c.containers.run("busybox", ["sh", "-c", "echo out; echo err >&2"], remove=True,
                           stdout=False, stderr=True)
    assert out == b"err\n"


def test_exit_status_and_kill(palletd):
    import docker

    c = palletd.client()
    with pytest.raises(docker.errors.ContainerError) as e:
        c.containers.run("busybox", ["sh", "-c", "exit 7"], remove=True)
    assert e.value.exit_status == 7
    ct = c.containers.run("busybox", ["sleep", "300"], detach=True)
    try:
        ct.reload()
        assert ct.status == "running"
        ct.kill()
        assert ct.wait(timeout=30)["StatusCode"] == 137
        ct.reload()
        assert ct.status == "exited"
    finally:
        ct.remove(force=True)


def test_attach_socket_before_start(palletd):
    c = palletd.client()
    ct = c.containers.create("busybox", ["sh", "-c", "echo one; echo two >&2"])
    try:
        sock = c.api.attach_socket(ct.id, params={"stdout": 1, "stderr": 1, "stream": 1})
        ct.start()
        data = b""
        raw = sock._sock
        raw.settimeout(10)
        while True:
            chunk = raw.recv(4096)
            if not chunk:
                break
            data += chunk
        assert b"\x01\x00\x00\x00\x00\x00\x00\x04one\n" in data
        assert b"\x02\x00\x00\x00\x00\x00\x00\x04two\n" in data
        sock.close()
    finally:
        ct.remove(force=True)


def test_logs_and_list(palletd):
    c = palletd.client()
    ct = c.containers.run("busybox", ["sh", "-c", "echo a; echo b"], detach=True)
    try:
        assert ct.wait(timeout=30)["StatusCode"] == 0
        assert ct.logs() == b"a\nb\n"
        assert ct.logs(tail=1) == b"b\n"
        ids = [x.id for x in c.containers.list(all=True)]
        assert ct.id in ids
        assert ct.id not in [x.id for x in c.containers.list()]
        exited = c.containers.list(all=True, filters={"status": "exited"})
        assert ct.id in [x.id for x in exited]
    finally:
        ct.remove()


def test_not_found_errors(palletd):
    import docker

    c = palletd.client()
    with pytest.raises(docker.errors.NotFound):
        c.containers.get("pa-no-such-container")
    with pytest.raises(docker.errors.ImageNotFound):
        c.images.get("pa-no-such-image")
    assert any("busybox:latest" in i.tags for i in c.images.list())
