"""Containers of pods: CreateContainer, StartContainer, StopContainer,
RemoveContainer, ContainerStatus, ListContainers, UpdateContainerResources
and ReopenContainerLog, and what happens when a container's process exits.

A container is a containerd container record (spec, snapshot, runtime) in
the ``k8s.io`` namespace and, once started, a task of pallet-containerd's
task manager whose stdio are FIFOs read into the CRI log (:mod:`.logs`).
When the process exits its status is recorded (exit code, finish time,
reason: ``Completed``, ``Error``, ``OOMKilled``) and its task is deleted,
as containerd's CRI plugin does, so only live processes hold a shim.
"""
from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import signal as signals
import time

from google.protobuf import any_pb2, json_format

from pallet.core import errors
from pallet.engine import spec as dockerspec
from pallet.proto.containerd.services.tasks.v1 import tasks_pb2
from pallet.proto.cri.runtime.v1 import api_pb2 as cri

from pallet.plugins.api_cri import logs, spec as specmod
from pallet.plugins.api_cri.config import NAMESPACE
from pallet.plugins.api_cri.store import (CONTAINER, CREATED, EXITED, RUNNING, SANDBOX,
                                          UNKNOWN, Container)

log = logging.getLogger("pallet.cri.container")

RESOURCES_TYPE = "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources"
STATES = {CREATED: cri.CONTAINER_CREATED, RUNNING: cri.CONTAINER_RUNNING,
          EXITED: cri.CONTAINER_EXITED, UNKNOWN: cri.CONTAINER_UNKNOWN}
STATE_NAMES = {CREATED: "CONTAINER_CREATED", RUNNING: "CONTAINER_RUNNING",
               EXITED: "CONTAINER_EXITED", UNKNOWN: "CONTAINER_UNKNOWN"}
#: exit code and reason of a container whose start failed, and of one whose end is unknown
START_ERROR_CODE, START_ERROR = 128, "StartError"
UNKNOWN_EXIT_CODE = 255
#: how long a stop waits for the exit after SIGKILL
KILL_WAIT = 30.0


def container_name(config: cri.ContainerConfig, sandbox) -> str:
    """containerd's unique name: ``name_pod_namespace_uid_attempt``."""
    md, pod = config.metadata, sandbox.config.metadata
    return f"{md.name}_{pod.name}_{pod.namespace}_{pod.uid}_{md.attempt}"


def signal_number(config: cri.ContainerConfig, image: dict) -> int:
    """The stop signal: the request's, the image's ``StopSignal``, else SIGTERM."""
    if config.stop_signal:
        name = cri.Signal.Name(config.stop_signal)
        name = {"SIGRTMINPLUS1": "SIGRTMIN+1"}.get(name, name)
        if name.startswith("SIGRTMINPLUS"):
            return int(signals.SIGRTMIN) + int(name[len("SIGRTMINPLUS"):])
        if name.startswith("SIGRTMAXMINUS"):
            return int(signals.SIGRTMAX) - int(name[len("SIGRTMAXMINUS"):])
        return int(getattr(signals, name, signals.SIGTERM))
    text = str(image.get("StopSignal") or "")
    if text.isdigit():
        return int(text)
    if text:
        name = text.upper() if text.upper().startswith("SIG") else "SIG" + text.upper()
        return int(getattr(signals, name, signals.SIGTERM))
    return int(signals.SIGTERM)


class Containers:
    """The container side of api_cri."""

    def __init__(self, cri_):
        self.cri = cri_
        self.cfg = cri_.cfg
        self.records = cri_.records

    @property
    def tasks(self):
        return self.cri.services.tasks

    def snapshotter(self):
        return self.cri.store.snapshotter(self.cri.images.snapshotter).namespaced(NAMESPACE)

    # --- CreateContainer ------------------------------------------------------------------------
    def create(self, req: cri.CreateContainerRequest) -> str:
        config = req.config
        if not req.HasField("config") or not config.HasField("metadata"):
            raise errors.PalletError("container config must include metadata")
        try:
            sb = self.records.sandbox(req.pod_sandbox_id)
        except errors.NotFound:
            raise errors.NotFound(f'failed to find sandbox id "{req.pod_sandbox_id}": '
                                  "not found") from None
        if self.cri.sandboxes.state(sb) != cri.SANDBOX_READY:
            # containerd finds no task of the pod's sandbox: NOT_FOUND, with its words
            raise errors.NotFound(f"failed to get sandbox container task: no running task "
                                  f"found: task {sb.id} not found: not found")
        info = self.cri.images.get(config.image.image)
        cid = secrets.token_hex(32)
        name = container_name(config, sb)
        self.records.reserve("container", name, cid)
        log_path = ""
        if sb.config.log_directory and config.log_path:
            log_path = os.path.join(sb.config.log_directory, config.log_path)
        c = Container(id=cid, sandbox_id=sb.id, name=name, config=config, image_id=info.id,
                      image_name=(info.repo_tags or [info.id])[0],
                      image_ref=(info.repo_digests or [info.id])[0], log_path=log_path,
                      created_at=time.time_ns(), runtime=self.cfg.runtime_for(sb.runtime_handler),
                      root=self.cfg.container_root(cid))
        prepared = False
        try:
            top = self.cri.images.ensure_unpacked(info)
            mounts = self.snapshotter().prepare(cid, top)
            prepared = True
            spec = self._spec(c, sb, info, mounts)
            c.user = {k: spec["process"]["user"].get(k) for k in ("uid", "gid", "additionalGids")}
            self.records.create(CONTAINER, c, spec, image=c.image_name,
                                snapshotter=self.cri.images.snapshotter, snapshot_key=cid,
                                runtime=c.runtime, labels=dict(config.labels))
        except BaseException:
            if prepared:
                try:
                    self.snapshotter().remove(cid)
                except errors.PalletError:
                    pass
            self._unmount_images(c)
            shutil.rmtree(c.root, ignore_errors=True)
            self.records.release(name)
            raise
        self.records.containers[cid] = c
        self.cri.publish(cid, cri.CONTAINER_CREATED_EVENT, container=c)
        return cid

    def _spec(self, c: Container, sb, info, mounts) -> dict:
        config = c.config
        opts = config.linux.security_context.namespace_options
        namespaces = dict(sb.namespaces)
        pid_mode = opts.pid
        if pid_mode == cri.CONTAINER:
            namespaces["pid"] = ""
        elif pid_mode == cri.POD:
            if not sb.namespaces.get("pid"):
                raise errors.FailedPrecondition(f"sandbox {sb.id!r} has no pid namespace to "
                                                "share")
        elif pid_mode == cri.TARGET:
            target = self.records.container(opts.target_id)
            if target.state != RUNNING or not target.pid:
                raise errors.FailedPrecondition(f"target container {opts.target_id!r} is not "
                                                "running")
            namespaces["pid"] = f"/proc/{target.pid}/ns/pid"
        else:
            namespaces.pop("pid", None)
        parent = sb.cgroup_parent or f"/{NAMESPACE}"
        image_mounts = self._mount_images(c)
        spec = specmod.container_spec(
            cid=c.id, config=config, sandbox=sb, image=info.config, image_name=c.image_name,
            rootfs_dirs=dockerspec.rootfs_dirs_from_mounts(mounts),
            hostname=self.cri.sandboxes.hostname(sb), pod_files=self.cri.sandboxes.pod_files(sb),
            namespaces=namespaces,
            cgroups_path="" if self.cfg.disable_cgroup else f"{parent.rstrip('/')}/{c.id}",
            cgroup_v2=self.cri.stats.cgroup_v2, restrict_oom_score_adj=
            self.cfg.restrict_oom_score_adj)
        if image_mounts:
            spec["mounts"] = specmod.ordered(spec["mounts"] + image_mounts)
        return spec

    # --- image volumes (KEP-4639) ---------------------------------------------------------------
    def _mount_images(self, c: Container) -> list[dict]:
        """Read-only views of the images the request mounts, mounted under the
        container's directory and bound from there."""
        from pallet.linux.mounts import mount_all

        out = []
        for i, m in enumerate(c.config.mounts):
            if not m.HasField("image") or m.host_path:
                continue
            info = self.cri.images.get(m.image.image)
            top = self.cri.images.ensure_unpacked(info)
            key = f"{c.id}-image-{i}"
            target = os.path.join(c.root, "image-mounts", str(i))
            os.makedirs(target, exist_ok=True)
            mount_all(self.snapshotter().view(key, top), target)
            source = os.path.join(target, m.image_sub_path.lstrip("/")) if m.image_sub_path \
                else target
            if not os.path.exists(source):
                raise errors.InvalidArgument(f"image sub path {m.image_sub_path!r} does not "
                                             f"exist in image {m.image.image!r}")
            ro = cri.Mount(container_path=m.container_path, readonly=True,
                           propagation=cri.PROPAGATION_PRIVATE)
            out.append(specmod.cri_mount(ro, source=source))
        return out

    def _unmount_images(self, c: Container) -> None:
        from pallet.linux.mounts import unmount_all

        top = os.path.join(c.root, "image-mounts")
        if not os.path.isdir(top):
            return
        for i in os.listdir(top):
            unmount_all(os.path.join(top, i), detach=True)
            try:
                self.snapshotter().remove(f"{c.id}-image-{i}")
            except errors.PalletError:
                pass

    # --- StartContainer -------------------------------------------------------------------------
    def start(self, cid: str) -> None:
        c = self.records.container(cid)
        with c.lock:
            if c.state != CREATED:
                raise errors.PalletError(f'failed to set starting state for container '
                                         f'"{c.id}": container is in {STATE_NAMES[c.state]} '
                                         "state")
            sb = self.records.sandbox(c.sandbox_id)
            if self.cri.sandboxes.state(sb) != cri.SANDBOX_READY:
                raise errors.FailedPrecondition(f'sandbox container "{sb.id}" is not running')
            pipes = self._open_io(c, create=True)
            try:
                self.tasks.create(NAMESPACE, tasks_pb2.CreateTaskRequest(
                    container_id=c.id, stdin=pipes.uri(logs.STDIN),
                    stdout=pipes.uri(logs.STDOUT), stderr=pipes.uri(logs.STDERR),
                    terminal=c.config.tty))
                c.pid = self.tasks.start(NAMESPACE, c.id)
            except Exception as e:
                self._start_failed(c, e)
                raise
            c.state, c.started_at = RUNNING, time.time_ns()
            self.records.save(c)
        self.cri.publish(c.id, cri.CONTAINER_STARTED_EVENT, container=c)

    def _open_io(self, c: Container, create: bool):
        pipes = logs.Pipes(self.cri.io.loop, self.cfg.container_io(c.id), stdin=c.config.stdin,
                           tty=c.config.tty)
        if create:
            pipes.create()
        logfile = logs.CRILog(c.log_path, self.cfg.max_container_log_line_size)
        pipes.subscribers.append(logfile)
        pipes.log = logfile
        self.cri.io.call(pipes.open)
        c.io = pipes
        return pipes

    def _start_failed(self, c: Container, e: Exception) -> None:
        try:
            self.tasks.delete(NAMESPACE, c.id)
        except errors.PalletError:
            pass
        c.state, c.pid = EXITED, 0
        c.finished_at = time.time_ns()
        c.exit_code, c.reason = START_ERROR_CODE, START_ERROR
        c.message = getattr(e, "message", None) or str(e)
        self._close_io(c)
        self.records.save(c)
        c.exited.set()

    def _close_io(self, c: Container) -> None:
        pipes = c.io
        if pipes is None:
            return
        c.io = None
        try:
            self.cri.io.call(pipes.drain)
            self.cri.io.call(pipes.log.close)
        except Exception as e:  # noqa: BLE001 — the status is recorded regardless
            log.warning("close io of %s: %s", c.id, e)

    # --- exits ------------------------------------------------------------------------------------
    def on_exit(self, cid: str, code: int, exited_at: int) -> None:
        """A task of ours ended (from the task events)."""
        c = self.records.containers.get(cid)
        if c is None:
            sb = self.records.sandboxes.get(cid)
            if sb is not None and sb.has_task:
                log.warning("pod %s: its sandbox task exited with %d", cid, code)
            return
        with c.lock:
            if c.state != RUNNING:
                return
            c.state, c.exit_code = EXITED, code
            c.finished_at = exited_at or time.time_ns()
            c.reason = "OOMKilled" if c.oom else ("Completed" if code == 0 else "Error")
            self._close_io(c)
            self.records.save(c)
        self.cri.workers.submit(self._delete_task, c.id)
        c.exited.set()
        self.cri.publish(c.id, cri.CONTAINER_STOPPED_EVENT, container=c)

    def _delete_task(self, cid: str) -> None:
        try:
            self.tasks.delete(NAMESPACE, cid)
        except errors.NotFound:
            pass
        except errors.PalletError as e:
            log.warning("delete task of %s: %s", cid, e)

    def on_oom(self, cid: str) -> None:
        c = self.records.containers.get(cid)
        if c is not None:
            c.oom = True

    # --- StopContainer -------------------------------------------------------------------------
    def stop(self, cid: str, timeout: int) -> None:
        """Signal, wait up to ``timeout`` seconds, then SIGKILL (idempotent)."""
        c = self.records.container(cid)
        if c.state != RUNNING:
            return
        if timeout > 0:
            sig = signal_number(c.config, self._image_config(c))
            self._kill(c, sig)
            if c.exited.wait(timeout):
                return
        self._kill(c, signals.SIGKILL)
        if not c.exited.wait(KILL_WAIT):
            raise errors.Unavailable(f"container {c.id!r}: no exit {KILL_WAIT:g}s after "
                                     "SIGKILL")

    def _kill(self, c: Container, sig: int) -> None:
        try:
            self.tasks.kill(NAMESPACE, c.id, int(sig))
        except errors.NotFound:
            pass   # it exited meanwhile: its exit event is on the way

    def _image_config(self, c: Container) -> dict:
        info = self.cri.images.find(c.image_id)
        return info.config if info is not None else {}

    # --- RemoveContainer -------------------------------------------------------------------------
    def remove(self, cid: str) -> None:
        try:
            c = self.records.container(cid)
        except errors.NotFound:
            return   # idempotent
        if c.state == RUNNING:
            self.stop(c.id, 0)
        with c.lock:
            c.removing = True
            self.records.save(c)
            try:
                self.tasks.delete(NAMESPACE, c.id)
            except errors.NotFound:
                pass
            self._close_io(c)
            try:
                self.snapshotter().remove(c.id)
            except errors.NotFound:
                pass
            self._unmount_images(c)
            self.records.delete(c)
            shutil.rmtree(c.root, ignore_errors=True)
            shutil.rmtree(os.path.dirname(self.cfg.container_io(c.id)), ignore_errors=True)
            self.records.containers.pop(c.id, None)
            self.records.release(c.name)
        self.cri.publish(c.id, cri.CONTAINER_DELETED_EVENT, container=c)

    # --- status ------------------------------------------------------------------------------------
    def status_message(self, c: Container) -> cri.ContainerStatus:
        st = cri.ContainerStatus(
            id=c.id, metadata=c.config.metadata, state=STATES[c.state], created_at=c.created_at,
            started_at=c.started_at, finished_at=c.finished_at, exit_code=c.exit_code,
            image=cri.ImageSpec(image=c.image_name,
                                annotations=dict(c.config.image.annotations)),
            image_ref=c.image_ref, image_id=c.image_id, reason=c.reason, message=c.message,
            labels=dict(c.config.labels), annotations=dict(c.config.annotations),
            mounts=list(c.config.mounts), log_path=c.log_path,
            stop_signal=c.config.stop_signal)
        res = c.resources if c.resources is not None else c.config.linux.resources
        st.resources.linux.CopyFrom(res)
        if c.user:
            st.user.linux.uid = int(c.user.get("uid") or 0)
            st.user.linux.gid = int(c.user.get("gid") or 0)
            st.user.linux.supplemental_groups.extend(int(g) for g in
                                                     c.user.get("additionalGids") or ())
        return st

    def status(self, cid: str, verbose: bool) -> cri.ContainerStatusResponse:
        c = self.records.container(cid)
        resp = cri.ContainerStatusResponse(status=self.status_message(c))
        if verbose:
            try:
                spec = self.records.spec(c.id)
            except errors.PalletError:
                spec = None
            resp.info["info"] = json.dumps({
                "sandboxID": c.sandbox_id, "pid": c.pid, "removing": c.removing,
                "snapshotKey": c.id, "snapshotter": self.cri.images.snapshotter,
                "runtimeType": c.runtime, "config": json_format.MessageToDict(c.config),
                "runtimeSpec": spec})
        return resp

    def list(self, flt: cri.ContainerFilter | None) -> list[cri.Container]:
        out = []
        for c in sorted(self.records.containers.values(), key=lambda c: c.created_at):
            if flt is not None:
                if flt.id and not c.id.startswith(flt.id):
                    continue
                if flt.HasField("state") and flt.state.state != STATES[c.state]:
                    continue
                if flt.pod_sandbox_id and not c.sandbox_id.startswith(flt.pod_sandbox_id):
                    continue
                if any(c.config.labels.get(k) != v for k, v in flt.label_selector.items()):
                    continue
            out.append(cri.Container(
                id=c.id, pod_sandbox_id=c.sandbox_id, metadata=c.config.metadata,
                image=cri.ImageSpec(image=c.image_name,
                                    annotations=dict(c.config.image.annotations)),
                image_ref=c.image_ref, image_id=c.image_id, state=STATES[c.state],
                created_at=c.created_at, labels=dict(c.config.labels),
                annotations=dict(c.config.annotations)))
        return out

    # --- UpdateContainerResources, ReopenContainerLog ----------------------------------------------
    def update_resources(self, req: cri.UpdateContainerResourcesRequest) -> None:
        c = self.records.container(req.container_id)
        with c.lock:
            res = specmod.resources(req.linux, swap=self.cri.stats.swap_available)
            if c.state == RUNNING:
                self.tasks.update(NAMESPACE, tasks_pb2.UpdateTaskRequest(
                    container_id=c.id, resources=any_pb2.Any(type_url=RESOURCES_TYPE,
                                                             value=json.dumps(res).encode())))
            merged = cri.LinuxContainerResources()
            merged.CopyFrom(c.resources if c.resources is not None
                            else c.config.linux.resources)
            merged.MergeFrom(req.linux)
            if req.linux.oom_score_adj == 0:
                merged.oom_score_adj = (c.resources or c.config.linux.resources).oom_score_adj
            c.resources = merged
            self.records.save(c)

    def reopen_log(self, cid: str) -> None:
        c = self.records.container(cid)
        if c.state != RUNNING or c.io is None:
            raise errors.PalletError("container is not running")
        self.cri.io.call(c.io.log.reopen)

    # --- the pod's own task (sandbox_image) --------------------------------------------------------
    def start_pod_task(self, sb, runtime: str, pod_spec: dict, hostname: str) -> None:
        """Run ``sandbox_image`` as the pod's first task (containerd's pause
        container), in the pod's pinned namespaces and a PID namespace of its own."""
        info = self.cri.images.find(sb.image)
        if info is None:
            self.cri.images.pull(cri.ImageSpec(image=sb.image), None)
            info = self.cri.images.get(sb.image)
        top = self.cri.images.ensure_unpacked(info)
        self.snapshotter().prepare(sb.id, top)
        image = info.config
        args = list(image.get("Entrypoint") or ()) + list(image.get("Cmd") or ())
        if not args:
            raise errors.InvalidArgument(f"sandbox image {sb.image!r}: empty entrypoint and cmd")
        opts = sb.config.linux.security_context.namespace_options
        ns = [{"type": "mount"}] + [{"type": k, "path": p} for k, p in sb.namespaces.items()]
        if opts.pid != cri.NODE:
            ns.append({"type": "pid"})
        files = self.cri.sandboxes.pod_files(sb)
        mounts = specmod.default_mounts() + [
            {"destination": specmod.DEV_SHM, "type": "bind", "source": files[specmod.DEV_SHM],
             "options": ["rbind", "ro"]},
            {"destination": specmod.RESOLV_CONF, "type": "bind",
             "source": files[specmod.RESOLV_CONF], "options": ["rbind", "ro"]}]
        parent = sb.cgroup_parent or f"/{NAMESPACE}"
        spec = dict(pod_spec, process={
            "terminal": False, "args": args, "cwd": image.get("WorkingDir") or "/",
            "env": list(image.get("Env") or [specmod.DEFAULT_PATH]),
            "user": dockerspec.resolve_user(image.get("User") or "", ()),
            "capabilities": {k: list(dockerspec.DEFAULT_CAPS)
                             for k in ("bounding", "effective", "permitted")},
            "oomScoreAdj": max(-998, specmod.own_oom_score_adj())
            if self.cfg.restrict_oom_score_adj else -998, "noNewPrivileges": True},
            root={"path": "rootfs", "readonly": True}, mounts=mounts)
        spec["linux"] = dict(spec["linux"], namespaces=ns,
                             cgroupsPath=f"{parent.rstrip('/')}/{sb.id}",
                             resources={"cpu": {"shares": 2}, "devices": [
                                 dict(r) for r in dockerspec.DEFAULT_DEVICE_RULES]})
        sb.has_task = True
        self.records.create(SANDBOX, sb, spec, image=info.names[0] if info.names else info.id,
                            snapshotter=self.cri.images.snapshotter, snapshot_key=sb.id,
                            runtime=runtime, labels=dict(sb.config.labels))
        self.tasks.create(NAMESPACE, tasks_pb2.CreateTaskRequest(container_id=sb.id))
        sb.pid = self.tasks.start(NAMESPACE, sb.id)
        if opts.pid != cri.NODE:
            sb.namespaces["pid"] = f"/proc/{sb.pid}/ns/pid"
        self.records.save(sb)

    def pod_task_running(self, sb) -> bool:
        try:
            from pallet.proto.containerd.types.task import task_pb2
            return self.tasks.get(NAMESPACE, sb.id).status == task_pb2.RUNNING
        except errors.PalletError:
            return False

    def stop_pod_task(self, sb) -> None:
        try:
            self.tasks.kill(NAMESPACE, sb.id, int(signals.SIGKILL))
        except errors.PalletError:
            pass
        try:
            self.tasks.wait(NAMESPACE, sb.id)
            self.tasks.delete(NAMESPACE, sb.id)
        except errors.NotFound:
            pass

    def remove_pod_task(self, sb) -> None:
        try:
            self.snapshotter().remove(sb.id)
        except errors.NotFound:
            pass

    # --- restart ---------------------------------------------------------------------------------
    def recover(self, c: Container) -> None:
        """A container found at start-up: its task tells how it is now."""
        from pallet.proto.containerd.types.task import task_pb2

        self.records.reserve("container", c.name, c.id)
        self.records.containers[c.id] = c
        if c.state != RUNNING:
            return
        try:
            p = self.tasks.get(NAMESPACE, c.id)
        except errors.NotFound:
            # its task is gone and nothing recorded how it ended
            c.state, c.exit_code, c.reason = EXITED, UNKNOWN_EXIT_CODE, "Unknown"
            c.finished_at = time.time_ns()
            self.records.save(c)
            c.exited.set()
            return
        if p.status == task_pb2.STOPPED:
            self._open_io(c, create=False)
            at = p.exited_at.seconds * 1_000_000_000 + p.exited_at.nanos
            self.on_exit(c.id, int(p.exit_status), at)
            return
        self._open_io(c, create=False)
