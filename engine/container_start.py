"""Starting a container and what happens when its process exits: the spec
(docker's defaults, resources, security, mounts, then every plugin's part),
the task with its stdio FIFOs, the wait, the exit record, and the restart
policy that may bring it back."""
from __future__ import annotations

import asyncio
import logging

from pallet.core import errors
from pallet.engine import links as linksmod
from pallet.engine import mounts as mountsmod
from pallet.engine import networking, resources, security
from pallet.engine import spec as specmod
from pallet.engine.createconfig import cgroup_version
from pallet.engine.fifos import ContainerIO
from pallet.engine.logs import ContainerLog, parse_time
from pallet.engine.restart import next_timeout, should_restart
from pallet.engine.state import Container

log = logging.getLogger("pallet.api_rest.containers")


class StartOps:
    async def start(self, ref: str) -> None:
        c = self.get(ref)
        # run to completion even if the client goes away (STYLE rule 7)
        await asyncio.shield(self._spawn(self._start(c, by_client=True)))

    async def _start(self, c: Container, *, by_client: bool = False) -> None:
        async with self._lock(c):
            if c.removing or c.id not in self.store.by_id:
                raise errors.Conflict(f"container {c.id} is marked for removal and cannot be "
                                      "started")
            if c.running:
                raise errors.NotModified("container already started")
            if c.restart_task is not None and by_client:
                c.restart_task.cancel()
                c.restart_task = None
            if by_client:
                c.data["HasBeenManuallyStopped"] = False
            c.exit_on_next = False
            io = None
            networked = False
            exit_status = None
            try:
                # the mounts Snapshots.Prepare gave at create serve its first start
                mounts, c.snapshot_mounts = c.snapshot_mounts, None
                if mounts is None:
                    mounts = await self.ctrd.snapshot_mounts(c.id, snapshotter=self.snapshotter)
                linked = linksmod.resolve(self.store, c)
                # the sandbox is made before the spec, as libnetwork does
                networked = True
                net_settings = await networking.setup(self.kernel, c,
                                                      links=linksmod.for_network(linked))
                sources = await self._mount_volumes(c)
                spec = self._build_spec(c, mounts, linked, sources)
                net_settings["Ports"] = await networking.publish(self.kernel, c)
                await self.ctrd.container_update(c.id, spec=spec)
                io = ContainerIO(self.paths.fifo_dir(c.id),
                                 stdin=bool(c.data["Config"].get("OpenStdin")),
                                 stderr=not c.tty)  # a terminal merges stderr into stdout
                io.open()
                clog = self.log_of(c)
                clog.open()
                io.start_reading(self._sink(c, clog))
                c.oom_killed = False
                created = await self._task_create(c, mounts, io)
                c.task_may_exist = True
                exit_status = self.task_events.expect(c.id, created)
                try:
                    pid = await self.ctrd.task_start(c.id)
                except BaseException:
                    self.task_events.forget(c.id)
                    await self._quiet(self.ctrd.task_delete(c.id))
                    c.task_may_exist = False
                    raise
            except errors.PalletError as e:
                code = _exit_code_for(e.message)
                if io is not None:
                    io.close()
                if c.log is not None:
                    c.log.close()
                    c.log = None
                await self._unmount_volumes(c)
                if networked:
                    await networking.teardown(self.kernel, c)
                c.set_exited(code, e.message)
                c.save()
                self.emit(c, "die", exitCode=code)
                if c.data["HostConfig"].get("AutoRemove"):
                    # the docker CLI waits for the removal after a failed start
                    self._spawn(self._auto_remove(c))
                if code in (126, 127) and not isinstance(e, errors.InvalidArgument):
                    # a command that is missing or not executable is the request's
                    # fault: dockerd answers 400 (startInvalidConfigError)
                    raise errors.InvalidArgument(e.message) from None
                raise
            except BaseException:
                await self._unmount_volumes(c)
                if networked:
                    await networking.teardown(self.kernel, c)
                raise
            c.io = io
            c.set_running(pid)
            if self.health is not None:  # health checks begin (engine/health.py)
                self.health.start(c)
            c.cgroups = _cgroups(pid)
            c.data["NetworkSettings"] = net_settings
            c.data["HasBeenStartedBefore"] = True
            c.save()
            c.wait_task = self._spawn(self._watch(c, exit_status))
            self._network_events(c, "connect")
            self.emit(c, "start")

    async def _task_create(self, c: Container, mounts, io) -> int:
        """Tasks.Create; a stopped task left by an earlier run (palletd died
        before deleting it) is deleted first, only when there is one."""
        for attempt in (1, 2):
            try:
                return await self.ctrd.task_create(
                    c.id, rootfs=mounts, stdin=io.paths.get("stdin", ""),
                    stdout=io.paths["stdout"], stderr=io.paths.get("stderr", ""),
                    terminal=c.tty)
            except errors.AlreadyExists:
                if attempt == 2:
                    raise
                await self._quiet(self.ctrd.task_delete(c.id))

    def _build_spec(self, c: Container, snap_mounts, linked=(), sources=None) -> dict:
        """docker's defaults, then resources, security and mounts, then the
        network's sandbox and, with ``--init``, the init role's PID 1, then
        extension plugins' parts through ``pallet_build_spec``."""
        host = c.data["HostConfig"]
        spec = specmod.build(
            c.data, {}, rootfs_dirs=specmod.rootfs_dirs_from_mounts(snap_mounts),
            cgroup_parent=self.cgroup_parent, cgroup_version=cgroup_version())
        if linked:
            self._link_environment(c, spec, linked)
        resources.apply(spec, host)
        security.apply(spec, host)
        security.add_devices(spec, host.get("Devices"))
        sources = sources or {}
        user = mountsmod.oci_mounts(c.data.get("MountPoints") or [], host.get("Tmpfs"), sources)
        spec["mounts"] = mountsmod.merge_into(spec["mounts"], user)
        info = {"id": c.id, "name": c.name, "image": c.data["Config"].get("Image", ""),
                "init": bool(host.get("Init")), "network_mode": host.get("NetworkMode"),
                "host_config": host}
        if self.kernel.has_role("network"):
            self.kernel.provide("network").build_spec(spec, info)
        if info["init"]:
            self.kernel.provide("init").prepare_spec(spec)
            self._check_init(spec)
        self.kernel.hook.pallet_build_spec(kernel=self.kernel, spec=spec, container=info)
        return spec

    def _check_init(self, spec: dict) -> None:
        """``--init`` never silently does nothing: an in-process init (the
        ``org.pallet.init`` annotation, docs/ARCHITECTURE.md) runs only under
        pallet's own runtimes; any other shim would start the process bare."""
        if (spec.get("annotations") or {}).get("org.pallet.init") != "builtin" \
                or self.runtime.startswith("io.containerd.pallet."):
            return
        raise errors.PalletError(
            f"--init: the init role's builtin init runs only under pallet's runtime "
            f"(io.containerd.pallet.v2), not {self.runtime}: set [plugins.init_tini] "
            f"init_path to a static init binary (e.g. /usr/bin/tini-static) or choose "
            f"[roles] init = \"init_exec\"")

    def _link_environment(self, c: Container, spec: dict, linked) -> None:
        """The links' variables go after HOSTNAME, PATH and TERM and before the
        container's own, as dockerd orders them."""
        added = []
        for child, alias in linked:
            ns = networking.settings(self.kernel, child)
            ip = ns.get("IPAddress") or next(
                (n.get("IPAddress") for n in (ns.get("Networks") or {}).values()
                 if n.get("IPAddress")), "")
            added += linksmod.environment(c.name, alias, ip, child.data["Config"])
        env = spec["process"]["env"]
        head = 0
        while head < len(env) and env[head].split("=", 1)[0] in ("HOSTNAME", "PATH", "TERM"):
            head += 1
        spec["process"]["env"] = env[:head] + added + env[head:]

    def _network_events(self, c: Container, action: str) -> None:
        """dockerd's network ``connect``/``disconnect`` events of a start and an exit."""
        nets = (c.data.get("NetworkSettings") or {}).get("Networks") or {}
        for name, ep in nets.items():
            if not isinstance(ep, dict):
                continue
            self.events.publish("network", action, ep.get("NetworkID") or name,
                                {"container": c.id, "name": name, "type": "bridge"
                                 if name not in ("host", "none") else name})

    async def _mount_volumes(self, c: Container, *, remount: bool = False) -> dict[str, str]:
        """Ask the volume driver for each volume point's directory (once per run)."""
        if self.volumes is None:
            return {}
        if c.volumes and not remount:
            await self._unmount_volumes(c)
        out = {}
        c.volumes = []
        for p in c.data.get("MountPoints") or ():
            if p.get("Type") != "volume":
                continue
            try:
                v = self.volumes.get(p["Name"])
            except errors.NotFound:
                # removed behind our back (rm -rf of the volumes root): make it again
                v = await self.volumes.create(p["Name"], p.get("Driver") or None)
            out[p["Destination"]] = p["Source"] = await self.volumes.mount(v, c.id)
            c.volumes.append(v)
        return out

    async def _unmount_volumes(self, c: Container) -> None:
        volumes, c.volumes = c.volumes, []
        for v in volumes:
            try:
                await self.volumes.unmount(v, c.id)
            except errors.PalletError as e:
                log.warning("container %s: unmount volume %s: %s", c.id[:12], v.name, e)

    def _sink(self, c: Container, clog: ContainerLog):
        def sink(stream: str, data: bytes) -> None:
            if data:
                clog.write(stream, data)
            else:
                clog.flush(stream)
        return sink

    # --- exit ----------------------------------------------------------------------
    async def _watch(self, c: Container, exit_status: asyncio.Future) -> None:
        """Wait for the exit of the task's PID 1 (from containerd's events, see
        :mod:`pallet.engine.task_events`), then record it and clean up."""
        await self._exited(c, await exit_status)

    def _oom(self, container_id: str) -> None:
        """containerd's ``/tasks/oom``: the OOM killer struck in the container's
        cgroup (dockerd's ``oom`` event; ``OOMKilled`` at the exit)."""
        c = self.store.by_id.get(container_id)
        if c is not None:
            c.oom_killed = True
            self.emit(c, "oom")

    async def _exited(self, c: Container, code: int) -> None:
        if self.health is not None:  # no more health checks (engine/health.py)
            self.health.stop(c)
        io = c.io
        if io is not None:
            io.release_writers()
            await io.drained(2.0)
        oom = c.oom_killed
        for attempt in range(50):
            try:
                r = await self.ctrd.task_delete(c.id)
                if not code and r is not None and getattr(r, "exit_status", 0):
                    code = r.exit_status
                c.task_may_exist = False
                break
            except errors.NotFound:
                c.task_may_exist = False
                break
            except errors.Unavailable:
                await asyncio.sleep(0.2)
            except errors.PalletError as e:
                log.warning("container %s: delete task: %s", c.id[:12], e)
                break
        # the record first: a client whose attach stream ends next reads the exit
        c.set_exited(code, oom=oom)
        c.wait_task = None
        restart = self._wants_restart(c, code)
        if restart:
            c.set_restarting()
        try:
            c.save()
        except OSError as e:
            log.warning("container %s: save state: %s", c.id[:12], e)
        self.emit(c, "die", exitCode=code)
        if io is not None:
            io.close()
            c.io = None
        if c.log is not None:
            c.log.close()
            c.log = None
        await self._unmount_volumes(c)
        c.cgroups = {}
        self._network_events(c, "disconnect")
        await networking.teardown(self.kernel, c)
        c.data["NetworkSettings"] = networking.settings(self.kernel, c)
        try:
            c.save()
        except OSError as e:
            log.warning("container %s: save state: %s", c.id[:12], e)
        waiters, c.exit_waiters = c.exit_waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(code)
        if restart:
            c.restart_task = self._spawn(self._restart_later(c))
        elif c.data["HostConfig"].get("AutoRemove"):
            await self._auto_remove(c)

    def _wants_restart(self, c: Container, code: int) -> bool:
        if c.exit_on_next or c.removing or self.shutting_down or c.id not in self.store.by_id:
            c.exit_on_next = False
            return False
        host = c.data["HostConfig"]
        if not should_restart(host.get("RestartPolicy"), code,
                              bool(c.data.get("HasBeenManuallyStopped")),
                              int(c.data.get("RestartCount") or 0)):
            return False
        try:
            ran = (parse_time(c.state["FinishedAt"]) - parse_time(c.state["StartedAt"])) / 1e9
        except (KeyError, TypeError, ValueError):
            ran = 0.0
        c.restart_timeout = next_timeout(c.restart_timeout, ran)
        return True

    async def _restart_later(self, c: Container) -> None:
        """The restart policy's wait, then the start (a failed start counts as an exit)."""
        try:
            await asyncio.sleep(c.restart_timeout)
        except asyncio.CancelledError:
            if c.state.get("Status") == "restarting":
                c.state.update({"Status": "exited", "Running": False, "Restarting": False})
                try:
                    c.save()
                except OSError:
                    pass
            raise
        c.restart_task = None
        if c.id not in self.store.by_id or c.removing or self.shutting_down:
            return
        c.data["RestartCount"] = int(c.data.get("RestartCount") or 0) + 1
        c.state.update({"Status": "exited", "Running": False, "Restarting": False})
        try:
            await self._start(c)
        except errors.NotModified:
            return
        except errors.PalletError as e:
            log.warning("container %s: restart: %s", c.id[:12], e)
            code = c.state.get("ExitCode") or 128
            if self._wants_restart(c, code):
                c.set_restarting()
                c.save()
                c.restart_task = self._spawn(self._restart_later(c))

    async def _auto_remove(self, c: Container) -> None:
        try:
            await self._remove(c, force=True, volumes=True)
        except errors.PalletError as e:
            log.warning("container %s: auto-remove: %s", c.id[:12], e)


def _cgroups(pid: int) -> dict[str, str]:
    from pallet.engine.containers import _cgroups_of

    return _cgroups_of(pid)


def _exit_code_for(message: str) -> int:
    """docker's exit codes for a start that failed: 127 not found, 126 not executable."""
    low = message.lower()
    if "executable file not found" in low or "no such file or directory" in low:
        return 127
    if "permission denied" in low:
        return 126
    return 128
