"""containerd's shim v2 task service (``containerd.task.v2.Task``).

One pallet-shim serves one task (the container whose id is the shim's id)
or, as containerd's runc shim does, every task of a group: the containers
whose specs name the same shim group (``io.kubernetes.cri.sandbox-id``, the
pod's id, on every container of a Kubernetes pod; see ``main.shim_group``).
Each task has its own bundle, runtime, stdio, exec processes, cgroup and
exit record; every call names the task it is about, and events carry its
id.  The shim ends on Shutdown only once it serves no task any more: a
Delete of one task leaves the others running.  Everything runs on the shim's loop;
the runtime works in helpers (see :mod:`.runtimes`) and every process of
the container ends up a child of the shim (a child subreaper), which reaps
it and records its exit status.  The exit of the container's PID 1 is also
written to ``exit.json`` in the bundle, for the ``delete`` verb and for a
pallet-containerd that comes back after a restart.

Process states follow containerd's: created -> running (<-> paused, for
the task) -> stopped -> deleted.  Checkpoints are answered UNIMPLEMENTED.
"""
from __future__ import annotations

import json
import os
import signal
import time

from pallet.core import errors
from pallet.core.files import write_json_atomic
from pallet.proto.wire import Any, Empty, timestamp

from pallet.shim import cgroups, stdio as stdio_mod
from pallet.proto import shim_task as m
from pallet.linux import syscalls as sysutil
from pallet.shim.loop import Deferred
from pallet.shim.server import AfterReply

SERVICE = "containerd.task.v2.Task"
EXIT_FILE = "exit.json"
OPTIONS_FILE = "options.json"
VERSION = "pallet"
SPEC_PROCESS_TYPES = ("types.containerd.io/opencontainers/runtime-spec/1/Process",)
#: how long a shim whose task was deleted waits for Shutdown before it ends itself
EXIT_AFTER_DELETE = float(os.environ.get("PALLET_SHIM_EXIT_AFTER_DELETE") or 30.0)

CREATED, RUNNING, PAUSED, STOPPED, DELETED = "created", "running", "paused", "stopped", "deleted"
_STATUS = {CREATED: m.CREATED, RUNNING: m.RUNNING, PAUSED: m.PAUSED, STOPPED: m.STOPPED}


def exit_code(wait_status: int) -> int:
    """A waitpid status as a shell reports it: the code, or 128+N for signal N."""
    if os.WIFSIGNALED(wait_status):
        return 128 + os.WTERMSIG(wait_status)
    if os.WIFEXITED(wait_status):
        return os.WEXITSTATUS(wait_status)
    return 255


def read_json(path: str) -> dict | None:
    try:
        with open(path) as f:
            data = json.load(f)
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


def read_exit(bundle: str) -> dict | None:
    """The exit record a shim left in ``bundle`` ({pid, exit_status, exited_at_ns})."""
    return read_json(os.path.join(bundle, EXIT_FILE))


def mount_rootfs(mounts, target: str) -> list[str]:
    """Mount the task's rootfs Mounts on ``target`` in order; return what to unmount."""
    done: list[str] = []
    if not mounts:
        return done
    os.makedirs(target, mode=0o711, exist_ok=True)
    try:
        for mnt in mounts:
            if not mnt.type:
                raise errors.InvalidArgument(f"rootfs mount of {mnt.source}: no type given")
            try:
                sysutil.mount_options(mnt.type, mnt.source, target, list(mnt.options))
            except OSError as e:
                raise errors.FailedPrecondition(str(e.strerror or e)) from None
            done.append(target)
    except BaseException:
        unmount_all(done)
        raise
    return done


def unmount_all(targets) -> None:
    """Unmount in reverse order, lazily, ignoring what is not mounted any more."""
    for target in reversed(list(targets)):
        try:
            sysutil.umount2(target, sysutil.MNT_DETACH)
        except OSError:
            pass


def runtime_options(options) -> dict:
    """runc's options (BinaryName, Root, SystemdCgroup...) from a task's options Any."""
    if options is None or not options.value and not options.type_url:
        return {}
    if options.type_url.rsplit("/", 1)[-1] not in m.RUNC_OPTIONS_TYPES:
        return {}  # options of another runtime: nothing of ours
    try:
        o = m.RuncOptions.decode(options.value)
    except ValueError as e:
        raise errors.InvalidArgument(f"runtime options: {e}") from None
    return {"binary_name": o.binary_name, "root": o.root, "systemd_cgroup": o.systemd_cgroup,
            "no_pivot_root": o.no_pivot_root, "io_uid": o.io_uid, "io_gid": o.io_gid}


class Process:
    """The task's PID 1 (``exec_id`` empty) or one exec process."""

    def __init__(self, id: str, exec_id: str, stdio_paths, terminal: bool, spec=None):
        self.id, self.exec_id = id, exec_id
        self.paths = stdio_paths
        self.terminal = terminal
        self.spec = spec
        self.stdio = None
        self.pid = 0
        self.status = CREATED
        self.exit_status = 0
        self.exited_at_ns = 0
        self.waiters: list[Deferred] = []
        self.exiting = False
        self.starting = False
        self.held_exit = None

    def state(self, bundle: str) -> m.StateResponse:
        stdin, stdout, stderr = self.paths
        return m.StateResponse(
            id=self.exec_id or self.id, bundle=bundle, pid=self.pid, status=_STATUS[self.status],
            stdin=stdin, stdout=stdout, stderr=stderr, terminal=self.terminal,
            exit_status=self.exit_status, exited_at=timestamp(self.exited_at_ns),
            exec_id=self.exec_id)


class Task:
    """One container served by the shim: its bundle, runtime, processes and cgroup."""

    def __init__(self, id: str, bundle: str):
        self.id, self.bundle = id, bundle
        self.backend = None
        self.init: Process | None = None
        self.execs: dict[str, Process] = {}
        self.mounts: list[str] = []
        self.cgroup_paths: dict[str, str] = {}
        self.oom = None
        self.oom_kills = 0                 # the cgroup's OOM kills when the task was created
        self.oom_sent = False              # a /tasks/oom went out for this task


class TaskService:
    """The task API of one shim; ``services()`` gives what the ttrpc server registers.

    ``id`` and ``bundle`` are those of the task the shim was started for
    (a request with an empty id is about it); ``mark_bundle(bundle)`` is
    called for the bundle of every task created, to note there where the
    shim serves (its ``address`` and ``shim.pid`` files).
    """

    def __init__(self, loop, id: str, namespace: str, bundle: str, *, children, backend_for,
                 sock_dir: str, publisher=None, on_exit=None, log=None, mark_bundle=None):
        self.loop = loop
        self.id = id
        self.namespace = namespace
        self.bundle = bundle
        self.children = children          # runtimes.Children
        self._backend_for = backend_for   # fn(options dict) -> backend
        self.sock_dir = sock_dir
        self.publisher = publisher
        self._on_exit = on_exit
        self._mark_bundle = mark_bundle
        self.log = log or (lambda _text: None)
        self.tasks: dict[str, Task] = {}   # the tasks created and not deleted, by id
        self.creating: set[str] = set()    # ids whose Create is in flight
        self.by_pid: dict[int, Process] = {}
        self.early: dict[int, int] = {}    # exits reaped before we knew the pid
        self.exit_timer = None
        loop.on_child_exit = self._child_exited

    # -- wiring
    def services(self) -> dict:
        """{service: {method: (request class, handler)}} for :class:`~.server.Server`."""
        methods = {
            "State": (m.StateRequest, self.State), "Create": (m.CreateTaskRequest, self.Create),
            "Start": (m.StartRequest, self.Start), "Delete": (m.DeleteRequest, self.Delete),
            "Pids": (m.PidsRequest, self.Pids), "Pause": (m.PauseRequest, self.Pause),
            "Resume": (m.ResumeRequest, self.Resume),
            "Checkpoint": (m.CheckpointTaskRequest, self.Checkpoint),
            "Kill": (m.KillRequest, self.Kill), "Exec": (m.ExecProcessRequest, self.Exec),
            "ResizePty": (m.ResizePtyRequest, self.ResizePty),
            "CloseIO": (m.CloseIORequest, self.CloseIO),
            "Update": (m.UpdateTaskRequest, self.Update), "Wait": (m.WaitRequest, self.Wait),
            "Stats": (m.StatsRequest, self.Stats), "Connect": (m.ConnectRequest, self.Connect),
            "Shutdown": (m.ShutdownRequest, self.Shutdown),
        }
        return {SERVICE: methods}

    def _publish(self, topic: str, event) -> None:
        if self.publisher is not None:
            self.publisher.publish(topic, event)

    def serving(self) -> bool:
        """Whether any task is created (or being created) and not deleted."""
        return bool(self.tasks or self.creating)

    # -- lookups
    def _task(self, id: str) -> Task:
        t = self.tasks.get(id or self.id)
        if t is None or t.init is None or t.init.status == DELETED:
            raise errors.NotFound(f"task {id or self.id}: not found")
        return t

    def _process(self, id: str, exec_id: str = "") -> tuple[Task, Process]:
        t = self._task(id)
        if not exec_id:
            return t, t.init
        p = t.execs.get(exec_id)
        if p is None:
            raise errors.NotFound(f"exec {exec_id} of task {t.id}: not found")
        return t, p

    # -- Create
    def Create(self, req):
        id = req.id or self.id
        if req.checkpoint or req.parent_checkpoint:
            raise errors.NotImplementedYet(
                f"task {id}: restoring a checkpoint is not supported by pallet-shim")
        if id in self.creating or id in self.tasks:
            raise errors.AlreadyExists(f"task {id}: already exists")
        bundle = req.bundle or (self.bundle if id == self.id else "")
        if not bundle:
            raise errors.InvalidArgument(f"task {id}: no bundle given")
        t = Task(id, bundle)
        options = runtime_options(req.options)
        if not options:
            options = read_json(os.path.join(bundle, OPTIONS_FILE)) or {}
        t.backend = self._backend_for(options)
        try:
            write_json_atomic(os.path.join(bundle, OPTIONS_FILE), options, fsync=False)
        except OSError as e:
            self.log(f"record runtime options of {id}: {e}")
        proc = Process(id, "", (req.stdin, req.stdout, req.stderr), req.terminal)
        mounts = mount_rootfs(req.rootfs, os.path.join(bundle, "rootfs"))
        try:
            proc.stdio = stdio_mod.open_stdio(self.loop, req.terminal, req.stdin, req.stdout,
                                              req.stderr, self.sock_dir, self.log)
        except BaseException:
            unmount_all(mounts)
            raise
        self.creating.add(id)
        if self.exit_timer is not None:  # a task again: no end for want of one
            self.loop.cancel(self.exit_timer)
            self.exit_timer = None
        d = t.backend.create(id, bundle, proc.stdio.fds(),
                             getattr(proc.stdio, "socket_path", None),
                             no_pivot=bool(options.get("no_pivot_root")))

        def created(pid):
            self.creating.discard(id)
            proc.stdio.close_child()
            proc.pid = int(pid)
            t.init = proc
            t.mounts = mounts
            self.tasks[id] = t  # before its exit can be looked up
            if self._mark_bundle is not None:
                self._mark_bundle(bundle)
            self._register(proc)
            t.cgroup_paths = cgroups.paths_of(proc.pid)
            t.oom_kills, t.oom_sent = cgroups.oom_kills(t.cgroup_paths), False
            self._watch_oom(t)
            self._publish("/tasks/create", m.TaskCreate(
                container_id=id, bundle=bundle, rootfs=list(req.rootfs), pid=proc.pid,
                io=m.TaskIO(stdin=req.stdin, stdout=req.stdout, stderr=req.stderr,
                            terminal=req.terminal)))
            return m.CreateTaskResponse(pid=proc.pid)

        def failed(dd):
            if dd.error is not None:
                self.creating.discard(id)
                proc.stdio.close_child()
                proc.stdio.close()
                unmount_all(mounts)
                self._schedule_exit()
        d.add_callback(failed)
        return d.then(created)

    def _watch_oom(self, t: Task) -> None:
        mem = t.cgroup_paths.get("memory")
        if not mem:
            return
        try:
            t.oom = cgroups.OOMWatch(self.loop, mem, lambda: self._oom(t))
        except OSError as e:
            self.log(f"watch oom of {mem}: {e}")

    def _oom(self, t: Task) -> None:
        self.log(f"task {t.id}: out of memory")
        t.oom_sent = True
        self._publish("/tasks/oom", m.TaskOOM(container_id=t.id))

    def _oom_before_exit(self, t: Task) -> None:
        """Send the OOM event of an OOM kill not reported yet, before the exit it
        caused (containerd's clients take OOMKilled from the order of the two)."""
        if t.oom is not None:
            t.oom.poll()
        if not t.oom_sent and cgroups.oom_kills(t.cgroup_paths) > t.oom_kills:
            self._oom(t)

    # -- Start, Exec
    def Start(self, req):
        t, p = self._process(req.id, req.exec_id)
        if p.status != CREATED:
            raise errors.FailedPrecondition(
                f"process {p.exec_id or p.id}: cannot start a {p.status} process")
        if not p.exec_id:
            # an exit that comes before the start has been answered waits for it, so
            # that containerd sees /tasks/start before /tasks/exit (as runc's shim does)
            p.starting = True

            def started(_):
                if p.status == CREATED:
                    p.status = RUNNING
                self._publish("/tasks/start", m.TaskStart(container_id=t.id, pid=p.pid))
                return m.StartResponse(pid=p.pid)

            def settle(_d):
                p.starting = False
                if p.held_exit is not None:
                    code, p.held_exit = p.held_exit, None
                    self._exited(p, code)
            d = t.backend.start(t.id).then(started)
            d.add_callback(settle)
            return d
        if t.init.status not in (RUNNING,):
            raise errors.FailedPrecondition(f"task {t.id}: cannot exec in a {t.init.status} "
                                            "task")
        p.stdio = stdio_mod.open_stdio(self.loop, p.terminal, *p.paths, self.sock_dir, self.log)
        p.status = RUNNING  # no second Start while the helper works
        d = t.backend.exec(t.id, p.spec, p.stdio.fds(), getattr(p.stdio, "socket_path", None))

        def execd(pid):
            p.stdio.close_child()
            p.pid = int(pid)
            # started before exited, even for a process that ended at once
            self._publish("/tasks/exec-started", m.TaskExecStarted(
                container_id=t.id, exec_id=p.exec_id, pid=p.pid))
            self._register(p)
            return m.StartResponse(pid=p.pid)

        def failed(dd):
            if dd.error is not None:
                p.stdio.close_child()
                p.stdio.close()
                p.stdio = None
                p.status = CREATED
        d.add_callback(failed)
        return d.then(execd)

    def Exec(self, req):
        t, init = self._process(req.id)
        if not req.exec_id:
            raise errors.InvalidArgument("exec id must not be empty: invalid argument")
        if req.exec_id in t.execs:
            raise errors.AlreadyExists(f"id {req.exec_id}: already exists")
        if init.status not in (RUNNING, PAUSED, CREATED):
            raise errors.FailedPrecondition(f"task {t.id}: cannot exec in a stopped task")
        spec = req.spec
        if spec is None or not spec.value:
            raise errors.InvalidArgument(f"exec {req.exec_id}: no process spec given")
        try:
            process = json.loads(spec.value)
        except ValueError as e:
            raise errors.InvalidArgument(f"exec {req.exec_id}: process spec is not json "
                                         f"({e})") from None
        if not isinstance(process, dict) or not process.get("args"):
            raise errors.InvalidArgument(f"exec {req.exec_id}: args must not be empty")
        process["terminal"] = bool(req.terminal)
        t.execs[req.exec_id] = Process(t.id, req.exec_id, (req.stdin, req.stdout, req.stderr),
                                       req.terminal, process)
        self._publish("/tasks/exec-added", m.TaskExecAdded(container_id=t.id,
                                                             exec_id=req.exec_id))
        return Empty()

    # -- signals
    def Kill(self, req):
        t, p = self._process(req.id, req.exec_id)
        if p.status in (STOPPED, DELETED) or p.exiting:
            raise errors.NotFound(f"process {p.exec_id or p.id}: process already finished")
        sig = int(req.signal) or signal.SIGTERM
        if p.exec_id:
            if not p.pid:
                raise errors.FailedPrecondition(f"exec {p.exec_id}: not started")
            try:
                os.kill(p.pid, sig)
            except ProcessLookupError:
                raise errors.NotFound(f"process {p.exec_id}: process already finished") from None
            return Empty()

        def refused(e):
            if p.status in (STOPPED, DELETED) or p.exiting:
                return errors.NotFound(f"process {p.id}: process already finished")
            return e
        d = t.backend.kill(t.id, sig, bool(req.all))
        out = Deferred()
        d.add_callback(lambda x: out.fail(refused(x.error)) if x.error is not None
                       else out.resolve(Empty()))
        return out

    def Wait(self, req):
        _t, p = self._process(req.id, req.exec_id)
        if p.status in (STOPPED, DELETED):
            return m.WaitResponse(exit_status=p.exit_status, exited_at=timestamp(p.exited_at_ns))
        d = Deferred()
        p.waiters.append(d)
        return d

    # -- Delete
    def Delete(self, req):
        t, p = self._process(req.id, req.exec_id)
        if p.exec_id:
            if p.status == RUNNING:
                raise errors.FailedPrecondition(f"exec {p.exec_id}: cannot delete a running "
                                                "process")
            t.execs.pop(p.exec_id, None)
            p.status = DELETED
            if p.stdio is not None:
                p.stdio.close()
            return m.DeleteResponse(pid=p.pid, exit_status=p.exit_status,
                                    exited_at=timestamp(p.exited_at_ns))
        if p.status in (RUNNING, PAUSED):
            raise errors.FailedPrecondition(f"task {p.id}: cannot delete a running process")
        was_created = p.status == CREATED
        d = t.backend.delete(t.id, force=was_created)
        out = Deferred()

        def after_delete(dd):
            if dd.error is not None and not isinstance(dd.error, errors.NotFound):
                # the runtime's state is gone or broken: still let the task go
                self.log(f"delete {t.id}: {dd.error}")
            if was_created and p.status not in (STOPPED, DELETED):
                # the forced delete killed the process waiting to start: wait for its exit
                p.waiters.append(Deferred())
                handle = self.loop.call_later(10, lambda: self._exited(p, 128 + signal.SIGKILL))
                p.waiters[-1].add_callback(lambda _x: (self.loop.cancel(handle), finish()))
            else:
                finish()

        def finish():
            unmount_all(t.mounts)
            t.mounts = []
            if p.stdio is not None:
                p.stdio.close()
            if t.oom is not None:
                t.oom.close()
                t.oom = None
            for e in list(t.execs.values()):
                if e.stdio is not None:
                    e.stdio.close()
            p.status = DELETED
            if self.tasks.get(t.id) is t:
                del self.tasks[t.id]
            self._publish("/tasks/delete", m.TaskDelete(
                container_id=t.id, id=t.id, pid=p.pid, exit_status=p.exit_status,
                exited_at=timestamp(p.exited_at_ns)))
            self._schedule_exit()
            out.resolve(m.DeleteResponse(pid=p.pid, exit_status=p.exit_status,
                                         exited_at=timestamp(p.exited_at_ns)))
        d.add_callback(after_delete)
        return out

    def _schedule_exit(self) -> None:
        """With no task left, end after a while even if no Shutdown comes."""
        if self.serving() or self._on_exit is None or self.exit_timer is not None:
            return
        self.exit_timer = self.loop.call_later(EXIT_AFTER_DELETE, self._exit_if_idle)

    def _exit_if_idle(self) -> None:
        self.exit_timer = None
        if not self.serving() and self._on_exit is not None:
            self.log("no task left and no shutdown came: exiting")
            self._on_exit()

    # -- state
    def State(self, req):
        t, p = self._process(req.id, req.exec_id)
        return p.state(t.bundle)

    def Pids(self, req):
        t, init = self._process(req.id)
        if init.status in (STOPPED, DELETED):
            return m.PidsResponse()
        by_pid = {p.pid: p.exec_id for p in t.execs.values()
                  if p.pid and p.status == RUNNING}
        pids = cgroups.pids(t.cgroup_paths, init.pid)
        if not t.cgroup_paths:  # no cgroup to list: PID 1 and the exec processes we know
            pids = sorted(set(pids) | set(by_pid))
        out = []
        for pid in pids:
            info = None
            if pid in by_pid:
                info = Any(type_url="containerd.runc.v1.ProcessDetails",
                           value=m.ProcessDetails(exec_id=by_pid[pid]).encode())
            out.append(m.ProcessInfo(pid=pid, info=info))
        return m.PidsResponse(processes=out)

    def Stats(self, req):
        t = self._task(req.id)
        if not t.cgroup_paths:
            raise errors.FailedPrecondition(f"task {t.id}: no cgroup of its own to read "
                                            "metrics from")
        return m.StatsResponse(stats=Any(type_url=m.METRICS_TYPE,
                                         value=cgroups.metrics(t.cgroup_paths).encode()))

    def Connect(self, req):
        t = self.tasks.get(req.id or self.id)
        init = t.init if t is not None else None
        pid = init.pid if init is not None and init.status != DELETED else 0
        return m.ConnectResponse(shim_pid=os.getpid(), task_pid=pid, version=VERSION)

    # -- pause, resume, update, io
    def Pause(self, req):
        t, p = self._process(req.id)
        if p.status != RUNNING:
            raise errors.FailedPrecondition(f"task {p.id}: cannot pause a {p.status} task")

        def paused(_):
            if p.status == RUNNING:
                p.status = PAUSED
            self._publish("/tasks/paused", m.TaskPaused(container_id=t.id))
            return Empty()
        return t.backend.pause(t.id).then(paused)

    def Resume(self, req):
        t, p = self._process(req.id)
        if p.status != PAUSED:
            raise errors.FailedPrecondition(f"task {p.id}: cannot resume a {p.status} task")

        def resumed(_):
            if p.status == PAUSED:
                p.status = RUNNING
            self._publish("/tasks/resumed", m.TaskResumed(container_id=t.id))
            return Empty()
        return t.backend.resume(t.id).then(resumed)

    def Update(self, req):
        t, p = self._process(req.id)
        if p.status in (STOPPED, DELETED):
            raise errors.FailedPrecondition(f"task {p.id}: cannot update a stopped task")
        if req.resources is None or not req.resources.value:
            raise errors.InvalidArgument(f"task {p.id}: no resources given")
        try:
            resources = json.loads(req.resources.value)
        except ValueError as e:
            raise errors.InvalidArgument(f"task {p.id}: resources are not json ({e})") from None
        if not isinstance(resources, dict):
            raise errors.InvalidArgument(f"task {p.id}: resources must be a json object")
        if getattr(t.backend, "binary", None):
            return t.backend.update(t.id, resources).then(lambda _: Empty())
        cgroups.update(t.cgroup_paths, resources)
        return Empty()

    def ResizePty(self, req):
        _t, p = self._process(req.id, req.exec_id)
        if p.stdio is not None and p.stdio.terminal:
            p.stdio.resize(int(req.width), int(req.height))
        return Empty()

    def CloseIO(self, req):
        _t, p = self._process(req.id, req.exec_id)
        if req.stdin and p.stdio is not None:
            p.stdio.close_stdin()
        return Empty()

    def Checkpoint(self, req):
        raise errors.NotImplementedYet("checkpoint is not supported by pallet-shim")

    def Shutdown(self, req):
        if self.serving() and not req.now:
            return Empty()  # a task is still served: the shim stays, as containerd expects
        if self._on_exit is None:
            return Empty()
        return AfterReply(Empty(), self._on_exit)

    # -- exits
    def _register(self, p: Process) -> None:
        self.by_pid[p.pid] = p
        status = self.early.pop(p.pid, None)
        if status is not None:
            self._exited_status(p, status)

    def _child_exited(self, pid: int, status: int) -> None:
        if self.children.claim(pid, status):
            return
        p = self.by_pid.get(pid)
        if p is None:
            # not ours yet (a helper has not reported the pid), or an orphan
            self.early[pid] = status
            while len(self.early) > 256:
                self.early.pop(next(iter(self.early)))
            return
        self._exited_status(p, status)

    def _exited_status(self, p: Process, status: int) -> None:
        self.by_pid.pop(p.pid, None)
        code = exit_code(status)
        if p.exiting or p.status in (STOPPED, DELETED):
            return
        p.exiting = True
        if p.stdio is not None:
            p.stdio.on_exit(lambda: self._exited(p, code))
        else:
            self._exited(p, code)

    def _exited(self, p: Process, code: int) -> None:
        if p.status in (STOPPED, DELETED):
            return
        if p.starting:
            p.held_exit = code
            return
        p.exit_status = code
        p.exited_at_ns = time.time_ns()
        p.status = STOPPED
        p.exiting = False
        t = self.tasks.get(p.id)
        if not p.exec_id:
            if t is not None:
                self._oom_before_exit(t)
                try:
                    write_json_atomic(os.path.join(t.bundle, EXIT_FILE),
                                      {"pid": p.pid, "exit_status": code,
                                       "exited_at_ns": p.exited_at_ns})
                except OSError as e:
                    self.log(f"record exit status of {p.id}: {e}")
            if p.stdio is not None:
                p.stdio.close()
            self.log(f"task {p.id} (pid {p.pid}) exited with status {code}")
        elif p.stdio is not None:
            p.stdio.close()
        waiters, p.waiters = p.waiters, []
        response = m.WaitResponse(exit_status=code, exited_at=timestamp(p.exited_at_ns))
        for d in waiters:
            d.resolve(response)
        self._publish("/tasks/exit", m.TaskExit(
            container_id=p.id, id=p.exec_id or p.id, pid=p.pid, exit_status=code,
            exited_at=timestamp(p.exited_at_ns)))
