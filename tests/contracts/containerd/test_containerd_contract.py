"""The containerd role's contract (``pallet.core.contracts.ContainerdAPI``):
containerd's v1 gRPC API, checked against every installed implementation
and against Debian's containerd 1.6, the reference (see conftest.py).

The same client calls go to each daemon and must give the same answers:
results, the error class of each refusal (the gRPC status) and the words
containerd's messages carry.  ``test_object_*`` checks the role's object
in-process: listen, start, stop.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import stat

import pytest

from pallet.containerd.client import Containerd, SyncContainerd, decode_event
from pallet.core import errors

from cd_util import minimal_spec
from contract_helpers import implementations

pytestmark = pytest.mark.root
SPEC = {"ociVersion": "1.0.2", "process": {"args": ["true"], "cwd": "/"},
        "root": {"path": "rootfs"}}


def run(coro):
    return asyncio.run(coro)


@contextlib.asynccontextmanager
async def leased(address: str):
    """A client whose calls hold what they make under a lease, as containerd's
    clients do: containerd's garbage collector takes anything nothing refers to."""
    async with Containerd(address, _ns()) as c:
        lease = await c.lease_create(expire=600)
        try:
            yield c.with_lease(lease)
        finally:
            await c.lease_delete(lease)


def _ns() -> str:
    return "cc-" + secrets.token_hex(3)


# --- the object -----------------------------------------------------------------------

@pytest.mark.parametrize("plugin", implementations("containerd"))
def test_object_listens_starts_and_stops(plugin, tmp_path):
    from contract_helpers import kernel_for
    from pallet.containerd_services.services import Backend
    from pallet.core.paths import Paths

    base = str(tmp_path)
    paths = Paths.for_containerd(os.path.join(base, "root"), os.path.join(base, "state"))
    kernel = kernel_for("containerd", plugin, paths, roles=("containerd", "image_store"))
    address = os.path.join(base, "c.sock")
    backend = Backend(kernel, address)
    server = kernel.provide("containerd")  # checked against the contract
    other = None
    try:
        server.listen(address)
        assert stat.S_IMODE(os.stat(address).st_mode) == 0o660
        server.start(backend)
        with SyncContainerd(address, "default") as c:
            assert c.version()["version"]
            c.namespace_create("from-the-contract")
            assert "from-the-contract" in [n.name for n in c.namespaces()]
        # another object on the same address is refused while this one serves
        other = type(server)(kernel)
        with pytest.raises(errors.AlreadyExists):
            other.listen(address)
        server.stop()
        assert not os.path.exists(address)
        with SyncContainerd(address, "default", timeout=2) as c:
            with pytest.raises(errors.Unavailable):
                c.version()
    finally:
        server.stop()
        backend.close()


# --- the API, against each daemon -----------------------------------------------------------

def test_version_and_plugins(containerd):
    async def body():
        async with Containerd(containerd.address) as c:
            v = await c.version()
            assert v["version"] and v["revision"]
            assert await c.server_uuid()
            plugins = {(p.type, p.id) for p in await c.plugins()}
            for wanted in (("io.containerd.snapshotter.v1", "overlayfs"),
                           ("io.containerd.runtime.v2", "task"),
                           ("io.containerd.grpc.v1", "tasks"),
                           ("io.containerd.content.v1", "content")):
                assert wanted in plugins
            only = await c.plugins(['type=="io.containerd.snapshotter.v1"'])
            assert {p.type for p in only} == {"io.containerd.snapshotter.v1"}
    run(body())


def test_namespaces(containerd):
    ns = _ns()

    async def body():
        async with Containerd(containerd.address, ns) as c:
            made = await c.namespace_create(ns, {"a": "1"})
            assert (made.name, dict(made.labels)) == (ns, {"a": "1"})
            with pytest.raises(errors.AlreadyExists, match="already exists"):
                await c.namespace_create(ns)
            got = await c.namespace_get(ns)
            assert dict(got.labels) == {"a": "1"}
            assert ns in [n.name for n in await c.namespaces()]
            await c.namespace_delete(ns)
            assert ns not in [n.name for n in await c.namespaces()]
            with pytest.raises(errors.NotFound, match="not found"):
                await c.namespace_delete(ns)
    run(body())


def test_content(containerd):
    async def body():
        async with leased(containerd.address) as c:
            data = b"a blob of the contract " * 100
            desc = await c.content_write_blob(data, labels={"k": "v"})
            info = await c.content_info(desc.digest)
            assert (info.digest, info.size, dict(info.labels)) == \
                (desc.digest, len(data), {"k": "v"})
            assert await c.content_read(desc.digest) == data
            assert await c.content_read(desc.digest, offset=2, size=5) == data[2:7]
            info = await c.content_update(desc.digest, {"k": "w", "x": "y"})
            assert dict(info.labels) == {"k": "w", "x": "y"}
            listed = await c.content_list(['labels.x=="y"'])
            assert [i.digest for i in listed] == [desc.digest]
            # writing it again is no error (containerd's content.WriteBlob)
            assert (await c.content_write_blob(data)).digest == desc.digest
            await c.content_delete(desc.digest)
            with pytest.raises(errors.NotFound, match="not found"):
                await c.content_info(desc.digest)
            with pytest.raises(errors.NotFound):
                await c.content_delete(desc.digest)
            with pytest.raises(errors.NotFound):
                await c.content_status("no-such-ref")
    run(body())


def test_images(containerd):
    async def body():
        async with leased(containerd.address) as c:
            target = await c.content_write_blob(b'{"schemaVersion": 2}',
                                                media_type="application/vnd.oci.image.index.v1+json")
            name = "docker.io/library/contract:1"
            img = await c.image_create(name, target, {"l": "1"})
            assert (img.name, img.target.digest, dict(img.labels)) == \
                (name, target.digest, {"l": "1"})
            with pytest.raises(errors.AlreadyExists, match="already exists"):
                await c.image_create(name, target)
            assert (await c.image_get(name)).target.digest == target.digest
            assert [i.name for i in await c.images([f"name=={name}"])] == [name]
            assert await c.images(["name==docker.io/library/other:1"]) == []
            img = await c.image_update(name, labels={"l": "2"})
            assert dict(img.labels) == {"l": "2"}
            await c.image_delete(name)
            with pytest.raises(errors.NotFound, match="not found"):
                await c.image_get(name)
            with pytest.raises(errors.NotFound):
                await c.image_delete(name)
    run(body())


def test_snapshots(containerd):
    async def body():
        async with leased(containerd.address) as c:
            mounts = await c.snapshot_prepare("base-active")
            assert mounts and mounts[0].type in ("bind", "overlay")
            await c.snapshot_commit("base", "base-active")
            with pytest.raises(errors.NotFound):
                await c.snapshot_stat("base-active")
            info = await c.snapshot_stat("base")
            assert (info.name, info.kind) == ("base", 3)  # COMMITTED
            child = await c.snapshot_prepare("child", "base", labels={"x": "1"})
            assert child[0].type == "overlay"
            assert (await c.snapshot_stat("child")).parent == "base"
            with pytest.raises(errors.AlreadyExists, match="already exists"):
                await c.snapshot_prepare("child", "base")
            with pytest.raises(errors.NotFound):
                await c.snapshot_prepare("orphan", "no-such-parent")
            assert await c.snapshot_view("a-view", "base")
            assert [m.type for m in await c.snapshot_mounts("child")] == ["overlay"]
            assert "child" in [s.name for s in await c.snapshots(['labels.x=="1"'])]
            with pytest.raises(errors.FailedPrecondition):
                await c.snapshot_remove("base")  # it has children
            for key in ("child", "a-view", "base"):
                await c.snapshot_remove(key)
            with pytest.raises(errors.NotFound):
                await c.snapshot_remove("base")
    run(body())


def test_containers(containerd):
    async def body():
        async with Containerd(containerd.address, _ns()) as c:
            made = await c.container_create("cc-1", spec=SPEC, image="docker.io/library/x:1",
                                            labels={"a": "1"})
            assert (made.id, made.image, made.runtime.name) == \
                ("cc-1", "docker.io/library/x:1", "io.containerd.runc.v2")
            assert made.created_at.seconds > 0
            with pytest.raises(errors.AlreadyExists, match="already exists"):
                await c.container_create("cc-1", spec=SPEC)
            with pytest.raises(errors.InvalidArgument):
                await c.container_create("cc-2")  # no spec
            with pytest.raises(errors.InvalidArgument):
                await c.container_create("bad id!", spec=SPEC)
            got = await c.container_get("cc-1")
            assert got.spec.value == made.spec.value
            await c.container_create("cc-3", spec=SPEC, labels={"a": "2"})
            assert [x.id for x in await c.containers(['labels.a=="2"'])] == ["cc-3"]
            up = await c.container_update("cc-1", labels={"b": "3"}, fields=["labels.b"])
            assert dict(up.labels) == {"a": "1", "b": "3"}
            for cid in ("cc-1", "cc-3"):
                await c.container_delete(cid)
            with pytest.raises(errors.NotFound, match="not found"):
                await c.container_get("cc-1")
            with pytest.raises(errors.NotFound):
                await c.container_delete("cc-1")
    run(body())


def test_leases(containerd):
    async def body():
        async with Containerd(containerd.address, _ns()) as c:
            lease = await c.lease_create("cc-lease", expire=None, labels={"k": "v"})
            assert lease == "cc-lease"
            with pytest.raises(errors.AlreadyExists):
                await c.lease_create("cc-lease", expire=None)
            leases = await c.leases(['id=="cc-lease"'])
            assert [(x.id, dict(x.labels)) for x in leases] == [("cc-lease", {"k": "v"})]
            await c.lease_delete("cc-lease")
            assert await c.leases(['id=="cc-lease"']) == []
            with pytest.raises(errors.NotFound):
                await c.lease_delete("cc-lease")
    run(body())


def test_events_by_namespace_and_topic(containerd):
    from pallet.proto.containerd.events import image_pb2

    ns = _ns()

    async def body():
        async with Containerd(containerd.address, ns) as c:
            got = []

            async def listen():
                async for env in c.subscribe([f'namespace=={ns},topic~="^/contract/"']):
                    got.append(env)
                    if len(got) == 2:
                        return
            listener = asyncio.ensure_future(listen())
            for _ in range(100):  # until the subscription is in place
                await c.publish("/contract/ping", image_pb2.ImageDelete(name="ping"))
                await asyncio.sleep(0.05)
                if got:
                    break
            await c.with_namespace("elsewhere").publish("/contract/x",
                                                         image_pb2.ImageDelete(name="x"))
            await c.publish("/contract/done", image_pb2.ImageDelete(name="done"))
            await asyncio.wait_for(listener, 10)
            assert got[0].namespace == ns and got[0].topic == "/contract/ping"
            assert got[-1].topic == "/contract/done"
            assert decode_event(got[-1]).name == "done"
            with pytest.raises(errors.InvalidArgument):
                await c.publish("no-slash", image_pb2.ImageDelete(name="x"))
    run(body())


def test_tasks(containerd, busybox_tar):
    """A task through the API: an image's layers unpacked with Diff.Apply, a
    container on them, its task created, started, waited for, deleted."""
    cid = "cc-task"
    out = os.path.join(containerd.base, "task.out")
    os.mkfifo(out)

    async def body():
        async with leased(containerd.address) as c:
            await _import(c, busybox_tar)
            top = await c.unpack("docker.io/library/busybox:latest")
            mounts = await c.snapshot_prepare(cid, top)
            spec = minimal_spec(cid, ["sh", "-c", "echo from-the-task; exit 6"])
            await c.container_create(cid, spec=spec, snapshot_key=cid)
            with pytest.raises(errors.NotFound):
                await c.task_get(cid)
            reader = os.open(out, os.O_RDONLY | os.O_NONBLOCK)
            try:
                pid = await c.task_create(cid, rootfs=mounts, stdout=out, stderr=out)
                assert pid > 0 and (await c.task_get(cid)).status == 1  # CREATED
                with pytest.raises(errors.AlreadyExists):
                    await c.task_create(cid, rootfs=mounts, stdout=out, stderr=out)
                assert await c.task_start(cid) == pid
                status, _ = await c.task_wait(cid, timeout=30)
                assert status == 6
                proc = await c.task_get(cid)
                assert (proc.status, proc.exit_status) == (3, 6)  # STOPPED
                assert [t.id for t in await c.tasks()] == [cid]
                deleted = await c.task_delete(cid)
                assert (deleted.pid, deleted.exit_status) == (pid, 6)
                await asyncio.sleep(0.1)
                assert b"from-the-task" in os.read(reader, 4096)
            finally:
                os.close(reader)
            with pytest.raises(errors.NotFound):
                await c.task_delete(cid)
            await c.container_delete(cid)
            await c.snapshot_remove(cid)
    run(body())


async def _import(c: Containerd, tarball: str) -> None:
    """busybox from its OCI layout archive, through the API (Content, Images), as
    ``ctr images import`` does."""
    import json
    import tarfile

    with tarfile.open(tarball) as t:
        index = json.load(t.extractfile("index.json"))
        blobs = {"sha256:" + m.name.rsplit("/", 1)[1]: t.extractfile(m).read()
                 for m in t.getmembers() if m.name.startswith("blobs/sha256/") and m.isfile()}
    target = index["manifests"][0]
    manifest = json.loads(blobs[target["digest"]])
    refs = [manifest["config"]["digest"]] + [layer["digest"] for layer in manifest["layers"]]
    labels = {f"containerd.io/gc.ref.content.{i}": d for i, d in enumerate(refs)}
    for digest in refs:
        await c.content_write_blob(blobs[digest])
    await c.content_write_blob(blobs[target["digest"]], labels=labels)
    await c.image_put("docker.io/library/busybox:latest", target)
