"""pallet.containerd.client against Debian's real containerd 1.6 and pallet-containerd.

The real daemon proves the client (and the protos) wire-compatible; the same
tests against pallet-containerd prove the server.
"""
from __future__ import annotations

import asyncio
import os
import secrets
import threading

import pytest

import cd_image
from cd_util import minimal_spec
from pallet.core import errors
from pallet.containerd.client import Containerd, SyncContainerd, chain_ids, decode_event, spec_of

pytestmark = pytest.mark.root


def run(coro):
    return asyncio.run(coro)


async def load_image(c: Containerd, name: str, img: dict) -> None:
    """Write every blob (with containerd's GC reference labels) and name the index."""
    for digest, data in img["blobs"].items():
        got = await c.content_write(f"test-{digest}", data, expected=digest, size=len(data),
                                    labels=img["gc_labels"].get(digest))
        assert got == digest
    await c.image_create(name, img["index"], labels={"test": "yes"})


def test_version_and_namespaces(any_containerd):
    async def body():
        async with Containerd(any_containerd.address, "t-" + secrets.token_hex(3)) as c:
            v = await c.version()
            assert v["version"]
            await c.namespace_create(c.namespace, {"a": "b"})
            names = {n.name: dict(n.labels) for n in await c.namespaces()}
            assert names[c.namespace] == {"a": "b"}
            with pytest.raises(errors.AlreadyExists):
                await c.namespace_create(c.namespace)
            await c.namespace_delete(c.namespace)
            # (containerd 1.6 answers Get of a missing namespace with empty labels)
            assert c.namespace not in [n.name for n in await c.namespaces()]
    run(body())


def test_errors_carry_the_server_message(any_containerd):
    async def body():
        async with Containerd(any_containerd.address, "default") as c:
            with pytest.raises(errors.NotFound) as e:
                await c.image_get("docker.io/library/nope:" + secrets.token_hex(3))
            assert "not found" in str(e.value)
            with pytest.raises(errors.NotFound):
                await c.container_get("nope-" + secrets.token_hex(3))
            with pytest.raises(errors.NotFound):
                await c.content_info("sha256:" + "1" * 64)
    run(body())


def test_unavailable_address():
    async def body():
        async with Containerd("/tmp/pl-nothing-here.sock", "default", timeout=2) as c:
            with pytest.raises(errors.Unavailable):
                await c.version()
    run(body())


def test_content_and_images(any_containerd):
    img = cd_image.build()
    ns = "t-" + secrets.token_hex(3)

    async def body():
        async with Containerd(any_containerd.address, ns) as c:
            await load_image(c, "docker.io/library/bb:1", img)
            # writing a blob again is not an error
            cfg_digest = next(d for d, b in img["blobs"].items() if b.startswith(b'{"architecture'))
            await c.content_write("again", img["blobs"][cfg_digest], expected=cfg_digest,
                                  size=len(img["blobs"][cfg_digest]))
            info = await c.content_info(cfg_digest)
            assert info.size == len(img["blobs"][cfg_digest])
            assert await c.content_read(cfg_digest) == img["blobs"][cfg_digest]
            assert {i.digest for i in await c.content_list()} >= set(img["blobs"])
            # a wrong expected digest is refused
            with pytest.raises(errors.PalletError):
                await c.content_write("bad-" + secrets.token_hex(3), b"abc",
                                      expected="sha256:" + "2" * 64, size=3)
            image = await c.image_get("docker.io/library/bb:1")
            assert image.target.digest == img["index"]["digest"]
            assert dict(image.labels) == {"test": "yes"}
            assert [i.name for i in await c.images()] == ["docker.io/library/bb:1"]
            await c.image_update("docker.io/library/bb:1", labels={"x": "1"})
            assert dict((await c.image_get("docker.io/library/bb:1")).labels) == {"x": "1"}
            await c.image_put("docker.io/library/bb:2", img["index"])
            await c.image_put("docker.io/library/bb:2", img["index"])
            desc, manifest = await c.resolve_manifest(image.target)
            assert desc["digest"] == img["manifest"]["digest"]
            _, config = await c.image_config("docker.io/library/bb:1")
            assert config["rootfs"]["diff_ids"] == img["diff_ids"]
            await c.image_delete("docker.io/library/bb:2")
            await c.image_delete("docker.io/library/bb:1", sync=True)
            assert await c.images() == []
    run(body())


def test_unpack_container_task(any_containerd):
    img = cd_image.build()
    ns = "t-" + secrets.token_hex(3)
    cid = "c-" + secrets.token_hex(4)
    fifo_dir = os.path.join(any_containerd.base, "fifo")
    os.makedirs(fifo_dir)
    stdout = os.path.join(fifo_dir, "out")
    stderr = os.path.join(fifo_dir, "err")
    os.mkfifo(stdout)
    os.mkfifo(stderr)
    got, got_err = [], []

    def reader():
        with open(stdout, "rb") as f:
            got.append(f.read())

    def err_reader():
        with open(stderr, "rb") as f:
            got_err.append(f.read())

    async def body():
        async with Containerd(any_containerd.address, ns) as c:
            await load_image(c, "docker.io/library/bb:1", img)
            top = await c.unpack("docker.io/library/bb:1")
            assert top == chain_ids(img["diff_ids"])[-1]
            assert await c.unpack("docker.io/library/bb:1") == top  # idempotent
            infos = {i.name: i for i in await c.snapshots()}
            assert top in infos and infos[top].parent == img["diff_ids"][0]
            # (a gc.root label, as palletd sets: an active snapshot that nothing
            # refers to yet may be collected by containerd's GC)
            mounts = await c.snapshot_prepare(cid, top, labels={"k": "v", "containerd.io/gc.root": "t"})
            assert mounts and mounts[0].type in ("overlay", "bind")
            assert (await c.snapshot_stat(cid)).parent == top
            assert len(await c.snapshot_mounts(cid)) == len(mounts)

            spec = minimal_spec(cid, ["sh", "-c", "cat /hello; echo out-$$"])
            await c.container_create(cid, spec=spec, image="docker.io/library/bb:1",
                                     snapshot_key=cid, labels={"l": "1"})
            got_c = await c.container_get(cid)
            assert spec_of(got_c) == spec and got_c.snapshot_key == cid
            assert [x.id for x in await c.containers()] == [cid]
            await c.container_update(cid, labels={"l": "2"})
            assert dict((await c.container_get(cid)).labels) == {"l": "2"}

            events = []
            ready = asyncio.Event()

            async def watch():
                agen = c.subscribe([f'namespace=="{ns}"'])
                ready.set()
                async for env in agen:
                    events.append((env.topic, decode_event(env)))
                    if env.topic == "/tasks/exit":
                        break

            watcher = asyncio.create_task(watch())
            await ready.wait()
            await asyncio.sleep(0.3)
            t = threading.Thread(target=reader)
            t.start()
            t2 = threading.Thread(target=err_reader)
            t2.start()
            pid = await c.task_create(cid, rootfs=mounts, stdout=stdout, stderr=stderr)
            assert pid > 0
            assert (await c.task_get(cid)).status == 1  # CREATED
            assert pid in [p.pid for p in await c.task_pids(cid)]
            assert any(p.id == cid for p in await c.tasks())
            waiter = asyncio.create_task(c.task_wait(cid))
            await c.task_start(cid)
            status, exited_at = await asyncio.wait_for(waiter, 30)
            assert status == 0 and exited_at > 0
            await asyncio.wait_for(watcher, 10)
            d = await c.task_delete(cid)
            assert d.exit_status == 0
            t.join(10)
            t2.join(10)
            assert got_err == [b""]
            assert got and b"hello from layer two" in got[0] and b"out-1" in got[0]
            topics = [e[0] for e in events]
            # each once, though both pallet-containerd and the shim report them
            assert topics.count("/tasks/create") == 1 and topics.count("/tasks/start") == 1
            assert topics.count("/tasks/exit") == 1
            exit_ev = dict(events)["/tasks/exit"]
            assert exit_ev.container_id == cid and exit_ev.exit_status == 0

            await c.container_delete(cid)
            await c.snapshot_remove(cid)
            with pytest.raises(errors.NotFound):
                await c.snapshot_stat(cid)
    run(body())


def test_long_running_task_kill(any_containerd):
    img = cd_image.build()
    ns = "t-" + secrets.token_hex(3)
    cid = "k-" + secrets.token_hex(4)

    async def body():
        async with Containerd(any_containerd.address, ns) as c:
            await load_image(c, "docker.io/library/bb:1", img)
            top = await c.unpack("docker.io/library/bb:1")
            mounts = await c.snapshot_prepare(cid, top)
            await c.container_create(cid, spec=minimal_spec(cid, ["sleep", "300"]),
                                     snapshot_key=cid)
            await c.task_create(cid, rootfs=mounts)
            await c.task_start(cid)
            assert (await c.task_get(cid)).status == 2  # RUNNING
            # containerd 1.6 answers UNKNOWN "cannot delete a running process"
            with pytest.raises(errors.PalletError, match="running"):
                await c.task_delete(cid)
            await c.task_kill(cid, 9, all=True)
            status, _ = await c.task_wait(cid, timeout=30)
            assert status == 137
            await c.task_delete(cid)
            await c.container_delete(cid)
            await c.snapshot_remove(cid)
    run(body())


def test_sync_client(any_containerd):
    with SyncContainerd(any_containerd.address, "default") as c:
        assert c.version()["version"]
        assert isinstance(c.namespaces(), list)
        other = c.with_namespace("t-" + secrets.token_hex(3))
        assert other.containers() == []
