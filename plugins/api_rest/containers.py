"""The container service: docker's container operations over containerd.

A container lives in three places: its ``config.v2.json`` (palletd's record,
the source of truth for docker's view), a containerd container of the same id
(spec, and the rootfs snapshot whose key is the id) created with it, and while
it runs a containerd task whose stdio are FIFOs palletd reads into the
json-file log.  Handlers call one method here each.
"""
from __future__ import annotations

import asyncio
import logging
import os
import secrets
import shutil
import signal as _signal

from pallet.core import errors
from pallet.plugins.api_rest import networking
from pallet.plugins.api_rest import spec as specmod
from pallet.plugins.api_rest.createconfig import (check_create, cgroup_version, host_defaults,
                                                  merge_config, parse_signal)
from pallet.plugins.api_rest.fifos import ContainerIO
from pallet.plugins.api_rest.logs import ContainerLog
from pallet.plugins.api_rest.state import ZERO_TIME, Container, ContainerStore, now_rfc3339

log = logging.getLogger("pallet.api_rest.containers")

DEFAULT_STOP_TIMEOUT = 10


class ContainerService:
    def __init__(self, kernel, ctrd, images, *, runtime: str, snapshotter: str = "overlayfs",
                 cgroup_parent: str = "/pallet"):
        self.kernel = kernel
        self.paths = kernel.paths
        self.ctrd = ctrd
        self.images = images
        self.runtime = runtime
        self.snapshotter = snapshotter
        self.cgroup_parent = cgroup_parent
        self.store = ContainerStore(self.paths)
        self._background: set[asyncio.Task] = set()
        images.in_use = self._users_of

    # --- helpers ---------------------------------------------------------------
    def _users_of(self, image_id: str) -> list[str]:
        return [c.id for c in self.store.all() if c.data.get("Image") == image_id]

    def _spawn(self, coro) -> asyncio.Task:
        """Run work to completion whatever happens to the request that caused it."""
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    def get(self, ref: str) -> Container:
        return self.store.get(ref)

    def _lock(self, c: Container) -> asyncio.Lock:
        if c.op_lock is None:
            c.op_lock = asyncio.Lock()
        return c.op_lock

    def log_of(self, c: Container) -> ContainerLog:
        """The live log of a container, made on demand so that attach-before-start works."""
        if c.log is None:
            c.log = ContainerLog(c.log_path)
        return c.log

    def counts(self) -> dict:
        out = {"running": 0, "paused": 0, "stopped": 0}
        for c in self.store.all():
            st = c.state.get("Status")
            if st == "running":
                out["running"] += 1
            elif st == "paused":
                out["paused"] += 1
            else:
                out["stopped"] += 1
        return out

    # --- start-up ----------------------------------------------------------------
    async def restore(self) -> None:
        """Load every container; reconnect to the tasks still running."""
        self.store.load()
        for c in self.store.all():
            if c.state.get("Status") in ("running", "paused", "restarting"):
                try:
                    await self._reattach(c)
                except errors.Unavailable as e:
                    # containerd is not there yet: the container keeps its state
                    log.warning("container %s: containerd unavailable (%s); will reattach",
                                c.id[:12], e)
                    self._spawn(self._reattach_later(c))
                except Exception as e:  # noqa: BLE001 — a bad record must not stop palletd
                    log.warning("container %s: cannot reattach: %s", c.id[:12], e)
                    c.set_exited(c.state.get("ExitCode") or 255, str(e))
                    c.save()
            elif c.state.get("Status") == "removing" or c.data["HostConfig"].get("AutoRemove") \
                    and c.state.get("Status") == "exited":
                self._spawn(self._auto_remove(c))

    async def _reattach_later(self, c: Container) -> None:
        delay = 0.5
        while c.id in self.store.by_id and c.running and c.wait_task is None:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
            try:
                await self._reattach(c)
                return
            except errors.Unavailable:
                continue
            except errors.PalletError as e:
                log.warning("container %s: cannot reattach: %s", c.id[:12], e)
                return

    async def _reattach(self, c: Container) -> None:
        try:
            proc = await self.ctrd.task_get(c.id)
        except errors.NotFound:
            proc = None
        if proc is None or proc.status in (3, 4):  # STOPPED, or gone
            code = proc.exit_status if proc is not None else 255
            try:
                await self.ctrd.task_delete(c.id)
            except errors.NotFound:
                pass
            c.set_exited(code)
            c.save()
            self.kernel.notify("container_exited", container=self._event(c), exit_code=code)
            if c.data["HostConfig"].get("AutoRemove"):
                self._spawn(self._auto_remove(c))
            return
        io = ContainerIO(self.paths.fifo_dir(c.id), stdin=bool(c.data["Config"].get("OpenStdin")),
                         stderr=not c.tty)
        io.open()
        clog = self.log_of(c)
        clog.open()
        io.start_reading(self._sink(c, clog))
        c.io = io
        c.wait_task = self._spawn(self._watch(c))
        log.info("container %s: reattached to running task (pid %s)", c.id[:12], proc.pid)

    # --- create ------------------------------------------------------------------
    async def create(self, body, name: str | None) -> dict:
        if not isinstance(body, dict):
            raise errors.InvalidArgument("invalid container config: JSON object expected")
        check_create(body)
        image_ref = body.get("Image")
        if not image_ref:
            raise errors.InvalidArgument("config cannot be empty in order to create a container")
        host = dict(body.get("HostConfig") or {})
        rec = await self.images.get(image_ref)
        name = self.store.check_name(name) if name else None
        cfg = {k: v for k, v in body.items() if k not in ("HostConfig", "NetworkingConfig")}
        cfg = merge_config(cfg, rec.config.get("config") or {})
        args = specmod.command({}, cfg)  # raises "no command specified"
        host = host_defaults(host)
        for key in ("Binds", "Mounts", "VolumesFrom", "Links", "Devices"):
            if host.get(key):
                raise errors.NotImplementedYet(f"HostConfig.{key} is not supported yet")
        specmod.capabilities(host.get("CapAdd"), host.get("CapDrop"), bool(host.get("Privileged")))
        parent = await self.images.unpack(rec)

        cid = secrets.token_hex(32)
        while cid in self.store.by_id:
            cid = secrets.token_hex(32)
        if name is None:
            from pallet.plugins.api_rest.names import random_name
            name = random_name(self.store.names)
        cdir = self.paths.container_dir(cid)
        os.makedirs(cdir, mode=0o710)
        cfg.setdefault("Hostname", "")
        if not cfg["Hostname"]:
            cfg["Hostname"] = cid[:12]
        created = now_rfc3339()
        data = {
            "Id": cid, "Created": created, "Path": args[0], "Args": args[1:],
            "State": {"Status": "created", "Running": False, "Paused": False,
                      "Restarting": False, "OOMKilled": False, "Dead": False, "Pid": 0,
                      "ExitCode": 0, "Error": "", "StartedAt": ZERO_TIME,
                      "FinishedAt": ZERO_TIME},
            "Image": rec.id, "ResolvConfPath": os.path.join(cdir, "resolv.conf"),
            "HostnamePath": os.path.join(cdir, "hostname"),
            "HostsPath": os.path.join(cdir, "hosts"),
            "LogPath": os.path.join(cdir, f"{cid}-json.log"),
            "Name": "/" + name, "RestartCount": 0, "Driver": self.snapshotter,
            "Platform": "linux", "MountLabel": "", "ProcessLabel": "", "AppArmorProfile": "",
            "ExecIDs": None, "HostConfig": host,
            "GraphDriver": {"Name": self.snapshotter, "Data": None},
            "Mounts": [], "Config": cfg,
            "NetworkSettings": {"Bridge": "", "SandboxID": "", "HairpinMode": False,
                                "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0,
                                "Ports": {}, "SandboxKey": "", "Networks": {}},
            # pallet's own bookkeeping (not in docker's inspect)
            "CreatedUnix": int(__import__("time").time()),
            "ImageName": image_ref,
            "RootfsParent": parent,
        }
        c = Container(data, cdir)
        self._write_etc_files(c)
        try:  # network mode, networks, aliases, --ip, ports: checked and remembered
            await networking.register(self.kernel, c, body.get("NetworkingConfig"))
        except BaseException:
            shutil.rmtree(cdir, ignore_errors=True)
            raise
        try:
            mounts_parent = parent
            await self.ctrd.snapshot_prepare(cid, mounts_parent, snapshotter=self.snapshotter,
                                             labels={"containerd.io/gc.root": created})
            try:
                await self.ctrd.container_create(
                    cid, spec={"ociVersion": "1.0.2"}, image=rec.names[0] if rec.names else "",
                    snapshot_key=cid, snapshotter=self.snapshotter, runtime=self.runtime,
                    labels={"com.docker/engine.bundle.path": cdir})
            except BaseException:
                await self._quiet(self.ctrd.snapshot_remove(cid, snapshotter=self.snapshotter))
                raise
            c.save()
        except BaseException:
            await networking.unregister(self.kernel, c)
            shutil.rmtree(cdir, ignore_errors=True)
            raise
        self.store.add(c)
        self.kernel.notify("container_created", container=self._event(c))
        return {"Id": cid, "Warnings": []}

    def _write_etc_files(self, c: Container) -> None:
        hostname = c.data["Config"]["Hostname"]
        with open(c.data["HostnamePath"], "w") as f:
            f.write(hostname + "\n")
        with open(c.data["HostsPath"], "w") as f:
            f.write("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                    "fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\n"
                    f"ff02::2\tip6-allrouters\n127.0.1.1\t{hostname}\n")
        resolv = ""
        if c.data["HostConfig"].get("NetworkMode") == "host":
            try:
                with open("/etc/resolv.conf") as f:
                    resolv = f.read()
            except OSError:
                pass
        with open(c.data["ResolvConfPath"], "w") as f:
            f.write(resolv)

    def _event(self, c: Container) -> dict:
        return {"id": c.id, "name": c.name, "image": c.data["Config"].get("Image", ""),
                "pid": c.state.get("Pid", 0)}

    @staticmethod
    async def _quiet(coro) -> None:
        try:
            await coro
        except errors.PalletError:
            pass

    # --- start ---------------------------------------------------------------------
    async def start(self, ref: str) -> None:
        c = self.get(ref)
        # run to completion even if the client goes away (STYLE rule 7)
        await asyncio.shield(self._spawn(self._start(c)))

    async def _start(self, c: Container) -> None:
        async with self._lock(c):
            if c.removing or c.id not in self.store.by_id:
                raise errors.Conflict(f"container {c.id} is marked for removal and cannot be "
                                      "started")
            if c.running:
                raise errors.NotModified("container already started")
            io = None
            networked = False
            try:
                mounts = await self.ctrd.snapshot_mounts(c.id, snapshotter=self.snapshotter)
                # the sandbox is made before the spec, as libnetwork does
                networked = True
                net_settings = await networking.setup(self.kernel, c)
                spec = specmod.build(
                    c.data, {}, rootfs_dirs=specmod.rootfs_dirs_from_mounts(mounts),
                    cgroup_parent=self.cgroup_parent, cgroup_version=cgroup_version())
                host = c.data["HostConfig"]
                self.kernel.hook.pallet_build_spec(kernel=self.kernel, spec=spec, container={
                    "id": c.id, "name": c.name, "image": c.data["Config"].get("Image", ""),
                    "init": bool(host.get("Init")), "network_mode": host.get("NetworkMode"),
                    "host_config": host})
                net_settings["Ports"] = await networking.publish(self.kernel, c)
                await self.ctrd.container_update(c.id, spec=spec)
                io = ContainerIO(self.paths.fifo_dir(c.id),
                                 stdin=bool(c.data["Config"].get("OpenStdin")),
                                 stderr=not c.tty)  # a terminal merges stderr into stdout
                io.open()
                clog = self.log_of(c)
                clog.open()
                io.start_reading(self._sink(c, clog))
                await self._quiet(self.ctrd.task_delete(c.id))  # a stale stopped task
                await self.ctrd.task_create(
                    c.id, rootfs=mounts, stdin=io.paths.get("stdin", ""),
                    stdout=io.paths["stdout"], stderr=io.paths.get("stderr", ""),
                    terminal=c.tty)
                try:
                    pid = await self.ctrd.task_start(c.id)
                except BaseException:
                    await self._quiet(self.ctrd.task_delete(c.id))
                    raise
            except errors.PalletError as e:
                code = _exit_code_for(e.message)
                if io is not None:
                    io.close()
                if c.log is not None:
                    c.log.close()
                    c.log = None
                if networked:
                    await networking.teardown(self.kernel, c)
                c.set_exited(code, e.message)
                c.save()
                if c.data["HostConfig"].get("AutoRemove"):
                    # the docker CLI waits for the removal after a failed start
                    self._spawn(self._auto_remove(c))
                if code in (126, 127) and not isinstance(e, errors.InvalidArgument):
                    # a command that is missing or not executable is the request's
                    # fault: dockerd answers 400 (startInvalidConfigError)
                    raise errors.InvalidArgument(e.message) from None
                raise
            except BaseException:
                if networked:
                    await networking.teardown(self.kernel, c)
                raise
            c.io = io
            c.set_running(pid)
            c.data["NetworkSettings"] = net_settings
            c.save()
            c.wait_task = self._spawn(self._watch(c))
            self.kernel.notify("container_started", container=self._event(c))

    def _sink(self, c: Container, clog: ContainerLog):
        def sink(stream: str, data: bytes) -> None:
            if data:
                clog.write(stream, data)
            else:
                clog.flush(stream)
        return sink

    # --- exit ----------------------------------------------------------------------
    async def _watch(self, c: Container) -> None:
        """Wait for the task to exit (again after a pallet-containerd restart), then
        record the exit, clean up the task and notify."""
        code, backoff = None, 0.1
        while code is None:
            try:
                code, _ = await self.ctrd.task_wait(c.id)
            except asyncio.CancelledError:
                raise
            except errors.NotFound:
                code = 255  # the task is gone: containerd lost it
            except errors.PalletError as e:
                # the stream broke (pallet-containerd restarting): wait again
                log.info("container %s: wait interrupted (%s); retrying", c.id[:12], e)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
        await self._exited(c, code)

    async def _exited(self, c: Container, code: int) -> None:
        io = c.io
        if io is not None:
            io.release_writers()
            await io.drained(2.0)
        for attempt in range(50):
            try:
                r = await self.ctrd.task_delete(c.id)
                if not code and r is not None and getattr(r, "exit_status", 0):
                    code = r.exit_status
                break
            except errors.NotFound:
                break
            except errors.Unavailable:
                await asyncio.sleep(0.2)
            except errors.PalletError as e:
                log.warning("container %s: delete task: %s", c.id[:12], e)
                break
        if io is not None:
            io.close()
            c.io = None
        if c.log is not None:
            c.log.close()
            c.log = None
        await networking.teardown(self.kernel, c)
        c.set_exited(code)
        c.data["NetworkSettings"] = networking.settings(self.kernel, c)
        c.wait_task = None
        try:
            c.save()
        except OSError as e:
            log.warning("container %s: save state: %s", c.id[:12], e)
        self.kernel.notify("container_exited", container=self._event(c), exit_code=code)
        waiters, c.exit_waiters = c.exit_waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(code)
        if c.data["HostConfig"].get("AutoRemove"):
            await self._auto_remove(c)

    async def _auto_remove(self, c: Container) -> None:
        try:
            await self._remove(c, force=True)
        except errors.PalletError as e:
            log.warning("container %s: auto-remove: %s", c.id[:12], e)

    # --- stop, kill, wait ----------------------------------------------------------
    async def kill(self, ref: str, sig=None) -> None:
        c = self.get(ref)
        signum = parse_signal(sig)
        if not c.running:
            raise errors.Conflict(f"Container {c.id} is not running")
        await self.ctrd.task_kill(c.id, signum, all=signum == _signal.SIGKILL)

    def _exit_future(self, c: Container) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        c.exit_waiters.append(fut)
        return fut

    async def stop(self, ref: str, timeout: int | None = None, sig=None) -> None:
        c = self.get(ref)
        if not c.running:
            raise errors.NotModified("container already stopped")
        await asyncio.shield(self._spawn(self._stop(c, timeout, sig)))

    async def _stop(self, c: Container, timeout: int | None, sig) -> None:
        if not c.running:
            return
        if timeout is None:
            timeout = c.data["Config"].get("StopTimeout")
            timeout = DEFAULT_STOP_TIMEOUT if timeout is None else int(timeout)
        signum = parse_signal(sig or c.data["Config"].get("StopSignal"), _signal.SIGTERM)
        fut = self._exit_future(c)
        try:
            await self.ctrd.task_kill(c.id, signum)
        except errors.NotFound:
            pass
        if timeout < 0:
            await fut
            return
        try:
            await asyncio.wait_for(asyncio.shield(fut), timeout)
            return
        except asyncio.TimeoutError:
            pass
        try:
            await self.ctrd.task_kill(c.id, _signal.SIGKILL, all=True)
        except errors.NotFound:
            pass
        try:
            await asyncio.wait_for(asyncio.shield(fut), 30)
        except asyncio.TimeoutError:
            raise errors.PalletError(f"container {c.id[:12]} did not exit after SIGKILL") \
                from None

    async def wait(self, ref: str, condition: str = "not-running"):
        """A future of the exit code for ``condition`` (registered before returning,
        so that the caller can answer its headers and then await it)."""
        c = self.get(ref)
        condition = condition or "not-running"
        loop = asyncio.get_running_loop()
        if condition == "not-running":
            if not c.running:
                fut = loop.create_future()
                fut.set_result(c.state.get("ExitCode", 0))
                return fut
            return self._exit_future(c)
        if condition == "next-exit":
            return self._exit_future(c)
        if condition == "removed":
            fut = loop.create_future()
            c.removed_waiters.append(fut)
            return fut
        raise errors.InvalidArgument(f"invalid condition: {condition!r}")

    async def close_stdin(self, c: Container) -> None:
        """The attached client's stdin ended (``StdinOnce``): the container's ends too."""
        if c.io is not None:
            c.io.close_stdin()
        if c.running:
            await self._quiet(self.ctrd.task_close_io(c.id, stdin=True))

    async def resize(self, ref: str, height: int, width: int) -> None:
        c = self.get(ref)
        if not c.running:
            raise errors.Conflict(f"Container {c.id} is not running")
        if height < 0 or width < 0:
            raise errors.InvalidArgument("invalid terminal size")
        await self.ctrd.task_resize(c.id, width, height)

    # --- remove --------------------------------------------------------------------
    async def remove(self, ref: str, *, force: bool = False, volumes: bool = False) -> None:
        c = self.get(ref)
        if c.running and not force:
            raise errors.Conflict(f"You cannot remove a running container {c.id}. Stop the "
                                  "container before attempting removal or force remove")
        await asyncio.shield(self._spawn(self._remove(c, force=force)))

    async def _remove(self, c: Container, *, force: bool) -> None:
        if c.removing:
            return
        if c.running:
            if not force:
                raise errors.Conflict(f"You cannot remove a running container {c.id}")
            fut = self._exit_future(c)
            await self._quiet(self.ctrd.task_kill(c.id, _signal.SIGKILL, all=True))
            try:
                await asyncio.wait_for(fut, 30)
            except asyncio.TimeoutError:
                raise errors.PalletError(f"could not kill running container {c.id}, cannot "
                                         "remove") from None
            if c.id not in self.store.by_id:
                return  # auto-removed meanwhile
        if c.removing:
            return
        c.removing = True
        c.state["Status"] = "removing"
        try:
            await self._quiet(self.ctrd.task_delete(c.id))
            await self._quiet(self.ctrd.container_delete(c.id))
            await self._quiet(self.ctrd.snapshot_remove(c.id, snapshotter=self.snapshotter))
        except errors.Unavailable:
            c.removing = False
            raise
        if c.io is not None:
            c.io.close()
            c.io = None
        await networking.unregister(self.kernel, c)
        shutil.rmtree(self.paths.fifo_dir(c.id), ignore_errors=True)
        shutil.rmtree(c.dir, ignore_errors=True)
        self.store.drop(c)
        self.kernel.notify("container_removed", container=self._event(c))
        waiters, c.removed_waiters = c.removed_waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(c.state.get("ExitCode", 0))

    # --- listing -------------------------------------------------------------------
    def list(self, *, all: bool = False, limit: int | None = None,
             filters: dict | None = None) -> list[dict]:
        filters = filters or {}
        known = {"status", "name", "id", "label", "exited", "ancestor"}
        for key in filters:
            if key not in known:
                raise errors.InvalidArgument(f"invalid filter '{key}'")
        out = []
        containers = sorted(self.store.all(), key=lambda c: c.data.get("Created", ""),
                            reverse=True)
        for c in containers:
            st = c.state.get("Status", "created")
            if not all and not filters.get("status") and st != "running":
                continue
            if not _matches(c, filters):
                continue
            out.append(networking.summary(self.kernel, c, c.summary()))
            if limit and limit > 0 and len(out) >= limit:
                break
        return out

    def inspect(self, ref: str) -> dict:
        c = self.get(ref)
        data = {k: v for k, v in c.data.items() if k not in ("CreatedUnix", "ImageName",
                                                              "RootfsParent")}
        data["State"] = dict(data["State"])
        data["NetworkSettings"] = networking.settings(self.kernel, c)
        return data

    async def shutdown(self) -> None:
        """palletd stops: leave containers running (their shims keep them), stop reading."""
        for c in self.store.all():
            if c.wait_task is not None:
                c.wait_task.cancel()
            if c.io is not None:
                c.io.close(remove=False)
                c.io = None
            if c.log is not None:
                c.log.close()
                c.log = None


def _matches(c: Container, filters: dict) -> bool:
    for key, values in filters.items():
        if not values:
            continue
        if key == "status" and c.state.get("Status") not in values:
            return False
        if key == "name" and not any(v.lstrip("/") in c.name for v in values):
            return False
        if key == "id" and not any(c.id.startswith(v) for v in values):
            return False
        if key == "exited":
            if c.state.get("Status") != "exited" or str(c.state.get("ExitCode")) not in values:
                return False
        if key == "ancestor" and not any(v in (c.data["Config"].get("Image"), c.data.get("Image"))
                                         for v in values):
            return False
        if key == "label":
            labels = c.data["Config"].get("Labels") or {}
            for v in values:
                k, eq, val = v.partition("=")
                if k not in labels or (eq and labels[k] != val):
                    return False
    return True


def _exit_code_for(message: str) -> int:
    """docker's exit codes for a start that failed: 127 not found, 126 not executable."""
    low = message.lower()
    if "executable file not found" in low or "no such file or directory" in low:
        return 127
    if "permission denied" in low:
        return 126
    return 128
