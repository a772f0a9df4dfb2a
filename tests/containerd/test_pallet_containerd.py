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

import json

import cd_image
from cd_util import PALLET_RUNTIME, VENV_BIN
from engines import wait_socket
from pallet.core import errors
from pallet.containerd.client import Containerd, decode_event
from pallet.proto.containerd.services.diff.v1 import diff_pb2, diff_pb2_grpc
from pallet.proto.containerd.services.images.v1 import images_pb2, images_pb2_grpc
from pallet.proto.containerd.services.tasks.v1 import tasks_pb2, tasks_pb2_grpc
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
            tasks_pb2_grpc.TasksStub(ch).Checkpoint(
                tasks_pb2.CheckpointTaskRequest(container_id="x"), timeout=10,
                metadata=(("containerd-namespace", "default"),))
        assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
        with pytest.raises(grpc.RpcError) as e:  # Diff.Diff is served: bad input is refused
            diff_pb2_grpc.DiffStub(ch).Diff(diff_pb2.DiffRequest(), timeout=10,
                                            metadata=(("containerd-namespace", "default"),))
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT


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
                                     snapshot_key=cid, runtime=PALLET_RUNTIME)
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
    wait_socket(d.address, d.proc, d.log)
    asyncio.run(after(pid))


# --- namespaces isolate as containerd's do (checked against the real one too) ------------

def test_content_is_per_namespace(any_containerd):
    import hashlib

    data = b"isolated blob " + secrets.token_hex(8).encode()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()

    async def body():
        root = Containerd(any_containerd.address, "nsa-" + secrets.token_hex(3))
        other = root.with_namespace("nsb-" + secrets.token_hex(3))
        # under leases, so that containerd's collector leaves unreferenced blobs alone
        a = root.with_lease(await root.lease_create(expire=600))
        b = other.with_lease(await other.lease_create(expire=600))
        try:
            await a.content_write("ref-a", data, expected=digest, size=len(data), labels={"k": "a"})
            assert dict((await a.content_info(digest)).labels) == {"k": "a"}
            with pytest.raises(errors.NotFound):
                await b.content_info(digest)
            with pytest.raises(errors.NotFound):
                await b.content_read(digest)
            assert digest not in [i.digest for i in await b.content_list()]
            # b writes it too: it is b's at once, with b's own labels
            assert await b.content_write("ref-b", data, expected=digest, size=len(data),
                                         labels={"k": "b"}) == digest
            assert dict((await b.content_info(digest)).labels) == {"k": "b"}
            assert dict((await a.content_info(digest)).labels) == {"k": "a"}
            await b.content_delete(digest)
            with pytest.raises(errors.NotFound):
                await b.content_info(digest)
            assert await a.content_read(digest) == data
            await a.content_delete(digest)
        finally:
            await root.close()
    asyncio.run(body())


def test_namespace_get_of_a_missing_one_and_delete(any_containerd):
    from pallet.proto.containerd.services.namespaces.v1 import namespace_pb2 as npb
    from pallet.proto.containerd.services.namespaces.v1 import namespace_pb2_grpc as ng

    with grpc.insecure_channel("unix://" + any_containerd.address) as ch:
        stub = ng.NamespacesStub(ch)
        name = "nope-" + secrets.token_hex(3)
        got = stub.Get(npb.GetNamespaceRequest(name=name), timeout=10)
        assert got.namespace.name == name and not got.namespace.labels
        with pytest.raises(grpc.RpcError) as e:
            stub.Delete(npb.DeleteNamespaceRequest(name=name), timeout=10)
        assert e.value.code() == grpc.StatusCode.NOT_FOUND


def test_lease_header_holds_what_is_made_under_it(any_containerd):
    import hashlib

    from pallet.proto.containerd.services.leases.v1 import leases_pb2, leases_pb2_grpc

    img = cd_image.build()
    ns = "t-" + secrets.token_hex(3)

    async def body():
        async with Containerd(any_containerd.address, ns) as c:
            lease = await c.lease_create(expire=600)
            lc = c.with_lease(lease)
            data = b"leased " + secrets.token_hex(6).encode()
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            await lc.content_write("ref-l", data, expected=digest, size=len(data))
            await load_image(c, "docker.io/library/bb:l", img)
            top = await c.unpack("docker.io/library/bb:l")
            await lc.snapshot_prepare("leased-" + secrets.token_hex(3), top)
            stub = leases_pb2_grpc.LeasesStub(c.channel())
            r = await stub.ListResources(leases_pb2.ListResourcesRequest(id=lease),
                                         metadata=c._md())
            kinds = {(x.type, x.id) for x in r.resources}
            assert ("content", digest) in kinds
            assert any(t == "snapshots/overlayfs" and i.startswith("leased-") for t, i in kinds)
            with pytest.raises(errors.NotFound):
                await c.with_lease("no-such-lease").content_write(
                    "ref-x", data + b"x", size=len(data) + 1)
            await c.lease_delete(lease)
    asyncio.run(body())


def test_introspection_lists_pallet_plugins(pallet_containerd):
    async def body():
        async with Containerd(pallet_containerd.address, "default") as c:
            plugins = {(p.type, p.id): p for p in await c.plugins()}
            for key in (("io.pallet.containerd.v1", "api_grpc"),
                        ("io.pallet.image_store.v1", "store_overlay"),
                        ("io.pallet.runtime.v1", "runtime_ns"), ("io.pallet.init.v1", "init_tini"),
                        ("io.containerd.runtime.v2", "task"),
                        ("io.containerd.snapshotter.v1", "overlayfs")):
                assert key in plugins, sorted(plugins)
            rt = plugins[("io.pallet.runtime.v1", "runtime_ns")]
            assert rt.exports["process"] == "pallet-shim" and rt.exports["version"]
            only = await c.plugins(['type=="io.pallet.image_store.v1"'])
            assert [p.id for p in only] == ["store_overlay"]
    asyncio.run(body())


# --- tasks through pallet-containerd -----------------------------------------------------

async def _container(c, cid: str, args, **spec_kw):
    """A container of the test image and its rootfs mounts."""
    top = await c.unpack("docker.io/library/bb:1")
    mounts = await c.snapshot_prepare(cid, top)
    spec = minimal_spec(cid, args)
    if spec_kw.get("cgroup"):
        spec["linux"]["cgroupsPath"] = f"/pallet-test/{c.namespace}/{cid}"
    if spec_kw.get("memory"):
        spec["linux"]["resources"] = {"memory": {"limit": spec_kw["memory"],
                                                 "swap": spec_kw["memory"]}}
    await c.container_create(cid, spec=spec, snapshot_key=cid,
                             runtime=spec_kw.get("runtime") or PALLET_RUNTIME,
                             runtime_options=spec_kw.get("options"))
    return mounts


async def _gone(c, cid: str) -> None:
    try:
        await c.task_kill(cid, 9, all=True)
    except errors.PalletError:
        pass
    try:
        await c.task_wait(cid, timeout=20)
    except errors.PalletError:
        pass
    for fn in (c.task_delete, c.container_delete, c.snapshot_remove):
        try:
            await fn(cid)
        except errors.PalletError:
            pass


def test_events_metrics_update_exec_pause_checkpoint(pallet_containerd):
    from google.protobuf import any_pb2

    from pallet.proto.containerd.services.tasks.v1 import tasks_pb2, tasks_pb2_grpc
    from pallet.proto import shim_task as messages

    d = pallet_containerd
    img = cd_image.build()
    ns = "t-" + secrets.token_hex(3)
    cid, oom = "m-" + secrets.token_hex(3), "o-" + secrets.token_hex(3)

    async def body():
        async with Containerd(d.address, ns) as c:
            await load_image(c, "docker.io/library/bb:1", img)
            events = []

            async def watch():
                async for env in c.subscribe([f'namespace=="{ns}",topic~="^/(tasks|images)/"']):
                    events.append((env.topic, decode_event(env)))
            watcher = asyncio.create_task(watch())
            await asyncio.sleep(0.3)
            await c.image_update("docker.io/library/bb:1", labels={"x": "y"})
            mounts = await _container(c, cid, ["sleep", "300"], cgroup=True)
            await c.task_create(cid, rootfs=mounts)
            await c.task_start(cid)
            stub = tasks_pb2_grpc.TasksStub(c.channel())
            r = await stub.Metrics(tasks_pb2.MetricsRequest(filters=[f"id=={cid}"]),
                                   metadata=c._md())
            assert [m.id for m in r.metrics] == [cid]
            m = messages.Metrics.decode(r.metrics[0].data.value)
            assert m.memory.usage.usage > 0 and m.pids.current == 1
            res = any_pb2.Any(type_url="types.containerd.io/opencontainers/runtime-spec/1/"
                                       "LinuxResources",
                              value=json.dumps({"memory": {"limit": 96 << 20}}).encode())
            await stub.Update(tasks_pb2.UpdateTaskRequest(container_id=cid, resources=res),
                              metadata=c._md())
            r = await stub.Metrics(tasks_pb2.MetricsRequest(filters=[f"id=={cid}"]),
                                   metadata=c._md())
            assert messages.Metrics.decode(r.metrics[0].data.value).memory.usage.limit == 96 << 20
            await c.task_exec(cid, "x1", {"args": ["true"], "cwd": "/", "env": ["PATH=/bin"]})
            await c.task_start(cid, "x1")
            status, _ = await c.task_wait(cid, "x1")
            assert status == 0
            await c.process_delete(cid, "x1")
            await c.task_pause(cid)
            assert (await c.task_get(cid)).status == 4  # PAUSED
            await c.task_resume(cid)
            with pytest.raises(grpc.RpcError) as e:
                await stub.Checkpoint(tasks_pb2.CheckpointTaskRequest(container_id=cid),
                                      metadata=c._md())
            assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
            assert "not implemented" in e.value.details()
            # an OOM: a shell that eats its cgroup's 16 MiB
            mounts = await _container(c, oom, ["sh", "-c", "x=aaaaaaaa; while true; do x=$x$x; "
                                                           "done"], cgroup=True, memory=16 << 20)
            await c.task_create(oom, rootfs=mounts)
            await c.task_start(oom)
            status, _ = await c.task_wait(oom, timeout=60)
            assert status == 137
            await _gone(c, oom)
            await _gone(c, cid)
            await asyncio.sleep(0.5)
            watcher.cancel()
            topics = [t for t, _ in events]
            for topic in ("/images/update", "/tasks/create", "/tasks/start", "/tasks/exec-added",
                          "/tasks/exec-started", "/tasks/paused", "/tasks/resumed",
                          "/tasks/oom", "/tasks/exit", "/tasks/delete"):
                assert topic in topics, topics
            assert dict(events)["/tasks/oom"].container_id == oom
            exits = [e for t, e in events if t == "/tasks/exit"]
            assert {(e.container_id, e.id, e.exit_status) for e in exits} >= {
                (cid, "x1", 0), (oom, oom, 137), (cid, cid, 137)}
    asyncio.run(body())


def test_runtimes_by_name_and_runc_options(pallet_containerd):
    from google.protobuf import any_pb2

    from pallet.proto import shim_task as messages

    d = pallet_containerd
    img = cd_image.build()
    ns = "t-" + secrets.token_hex(3)

    async def body():
        async with Containerd(d.address, ns) as c:
            await load_image(c, "docker.io/library/bb:1", img)
            # a runtime whose shim is not installed: containerd's message
            cid = "n-" + secrets.token_hex(3)
            mounts = await _container(c, cid, ["true"], runtime="io.containerd.nope.v7")
            with pytest.raises(errors.NotFound, match="containerd-shim-nope-v7"):
                await c.task_create(cid, rootfs=mounts)
            await _gone(c, cid)
            # runc's options naming a binary: pallet-shim drives Debian's runc
            cid = "r-" + secrets.token_hex(3)
            runc_root = os.path.join(d.base, "runc-root")
            opts = messages.RuncOptions(binary_name="runc", root=runc_root)
            mounts = await _container(
                c, cid, ["sleep", "300"], runtime=PALLET_RUNTIME,
                options=any_pb2.Any(type_url="containerd.runc.v1.Options", value=opts.encode()))
            pid = await c.task_create(cid, rootfs=mounts)
            await c.task_start(cid)
            state = json.loads(subprocess.run(["runc", "--root", runc_root, "state", cid],
                                              capture_output=True, check=True).stdout)
            assert state["status"] == "running" and state["pid"] == pid
            await _gone(c, cid)
            assert not os.path.exists(os.path.join(runc_root, cid))
            # a shim binary named by path (the task's runtime_path): containerd's own runc shim
            real = "/usr/bin/containerd-shim-runc-v2"
            if os.path.exists(real):
                cid = "s-" + secrets.token_hex(3)
                mounts = await _container(c, cid, ["sh", "-c", "exit 12"])
                await c.task_create(cid, rootfs=mounts, runtime_path=real)
                await c.task_start(cid)
                status, _ = await c.task_wait(cid, timeout=30)
                assert status == 12
                assert (await c.task_delete(cid)).exit_status == 12
                await _gone(c, cid)
    asyncio.run(body())


def test_killed_shim(pallet_containerd):
    """kill -9 of one shim: its task is reported stopped (137) with an error for what
    needs the shim, its container process is reaped, no mount is left, nobody hangs,
    and the other containers are untouched."""
    from cd_util import mounted_under, pid_alive, pid_exists, wait_for

    d = pallet_containerd
    img = cd_image.build()
    ns = "t-" + secrets.token_hex(3)
    victim, other = "v-" + secrets.token_hex(3), "o-" + secrets.token_hex(3)

    async def body():
        async with Containerd(d.address, ns) as c:
            await load_image(c, "docker.io/library/bb:1", img)
            pids = {}
            for cid in (victim, other):
                mounts = await _container(c, cid, ["sleep", "300"])
                pids[cid] = await c.task_create(cid, rootfs=mounts)
                await c.task_start(cid)
            bundle = os.path.join(d.state, "io.containerd.runtime.v2.task", ns, victim)
            with open(os.path.join(bundle, "shim.pid")) as f:
                shim = int(f.read())
            waiter = asyncio.create_task(c.task_wait(victim))
            exits = []

            async def watch():
                async for env in c.subscribe([f'topic=="/tasks/exit",namespace=="{ns}"']):
                    exits.append(decode_event(env))
            watcher = asyncio.create_task(watch())
            await asyncio.sleep(0.3)
            os.kill(shim, signal.SIGKILL)
            status, _ = await asyncio.wait_for(waiter, 30)  # nobody hangs
            assert status == 137
            p = await c.task_get(victim)
            assert (p.status, p.exit_status) == (3, 137)  # STOPPED
            assert [t.id for t in await c.tasks() if t.status == 3] == [victim]
            assert wait_for(lambda: not pid_exists(pids[victim]), 10), "container not reaped"
            assert not pid_exists(shim)
            assert not mounted_under(os.path.join(bundle, "rootfs"))
            with pytest.raises(errors.FailedPrecondition, match="shim exited unexpectedly"):
                await c.task_exec(victim, "x", {"args": ["true"], "cwd": "/"})
            with pytest.raises(errors.NotFound):
                await c.task_kill(victim, 9)
            assert pid_alive(pids[other]) and (await c.task_get(other)).status == 2
            assert (await c.task_delete(victim)).exit_status == 137
            assert not os.path.exists(bundle)
            await asyncio.sleep(0.3)
            watcher.cancel()
            assert [(e.container_id, e.exit_status) for e in exits] == [(victim, 137)]
            await _gone(c, victim)
            await _gone(c, other)
    asyncio.run(body())


def test_events_publish_forward_and_filters(any_containerd):
    """Events.Publish (in the caller's namespace), Events.Forward (a whole envelope),
    Subscribe with containerd's filter syntax; on both daemons."""
    from pallet.containerd.client import event_any
    from pallet.proto.containerd.events import image_pb2
    from pallet.proto.containerd.services.events.v1 import events_pb2, events_pb2_grpc

    ns = "ev-" + secrets.token_hex(3)

    async def body():
        async with Containerd(any_containerd.address, ns) as c:
            got = []
            ready = asyncio.Event()

            async def watch():
                agen = c.subscribe([f'namespace=="{ns}",topic~="^/pallet-test/"',
                                    'topic=="/pallet-test/forwarded"'])
                ready.set()
                async for env in agen:
                    got.append(env)
                    if len(got) == 2:
                        return
            watcher = asyncio.create_task(watch())
            await ready.wait()
            await asyncio.sleep(0.5)
            await c.publish("/other/topic", image_pb2.ImageCreate(name="ignored"))
            await c.publish("/pallet-test/published", image_pb2.ImageCreate(name="x"))
            env = events_pb2.Envelope(namespace="elsewhere", topic="/pallet-test/forwarded",
                                      event=event_any(image_pb2.ImageDelete(name="y")))
            env.timestamp.GetCurrentTime()
            stub = events_pb2_grpc.EventsStub(c.channel())
            await stub.Forward(events_pb2.ForwardRequest(envelope=env), metadata=c._md())
            await asyncio.wait_for(watcher, 15)
            assert [(e.topic, e.namespace) for e in got] == [
                ("/pallet-test/published", ns), ("/pallet-test/forwarded", "elsewhere")]
            assert decode_event(got[0]).name == "x" and decode_event(got[1]).name == "y"
            with pytest.raises(errors.InvalidArgument):
                await c.publish("no-slash", image_pb2.ImageCreate(name="x"))
    asyncio.run(body())
