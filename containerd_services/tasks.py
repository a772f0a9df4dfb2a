"""Tasks: one shim per container, or per group of containers, spoken to over
ttrpc (containerd's shim v2).

Create writes the bundle (``config.json`` from the container's spec, an
empty ``rootfs/``), starts the container's shim (:mod:`.shims`: pallet-shim
through the zygote, or the binary its runtime name resolves to) and
forwards the call; every later call goes to that shim.  The containers of
one Kubernetes pod share a shim, as with containerd: their specs carry the
pod's id (``io.kubernetes.cri.sandbox-id``), and the shim's ``start`` verb
(or pallet's zygote) answers with the address of the pod's running shim,
which then serves several tasks.  Each task keeps its own connection to it
(as containerd's do); a Delete ends the shim only when it was its last task
(the shim ignores the Shutdown otherwise), and a shim that dies takes every
task it served with it.  The shim's address and pid are kept in every
bundle (``address``, ``shim.pid``), so a restarted pallet-containerd finds
every running shim again by scanning the bundles (:meth:`TaskManager.restore`),
every task of a shared one, and learns from it the exit status of a task
that ended meanwhile.

Task events (``/tasks/exit``, ``/tasks/oom``...) come from the shims, which
forward them to ``<address>.ttrpc`` as containerd's shims do, in the order
they happen; only without that endpoint (a socket path too long) does a
watcher thread per task wait on its shim and publish its exit.
When a shim's connection drops and the shim is gone (killed), the task is
cleaned up as containerd does (the shim's ``delete`` verb kills what is
left of the container and unmounts its rootfs) and stays listed as a
stopped task whose exit status says how it ended, with calls that need the
shim failing with "shim exited unexpectedly", until it is deleted.
"""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
import threading
import time

from google.protobuf import empty_pb2

from pallet.core import errors
from pallet.core.files import write_atomic
from pallet.linux.cgroupfs import warm_migration
from pallet.proto.containerd.events import task_pb2 as ev
from pallet.proto.containerd.services.tasks.v1 import tasks_pb2
from pallet.proto.containerd.task.v2 import shim_pb2
from pallet.proto.containerd.types import metrics_pb2
from pallet.proto.containerd.types.task import task_pb2

from pallet.containerd_services import convert, shims

log = logging.getLogger("pallet.containerd.tasks")

SHIM_SERVICE = "containerd.task.v2.Task"
RUNTIME_DIR = "io.containerd.runtime.v2.task"
#: how long a plain shim call may take (Wait has none)
CALL_TIMEOUT = 30.0
#: how long a caller waits for the clean-up of a shim that died
DEAD_TIMEOUT = 60.0
SIGKILL = 9


class Task:
    """A task known to pallet-containerd: where its shim is and a client to it."""

    def __init__(self, namespace: str, id: str, bundle: str, address: str):
        self.namespace, self.id, self.bundle, self.address = namespace, id, bundle, address
        self.client = None
        self.pid = 0
        self.lock = threading.Lock()
        self.closing = False          # we shut the shim down ourselves
        self.creating = False         # Create not answered yet: its caller handles a loss
        self.dead = False             # the shim died; the task is stopped for good
        self.dead_reason = ""
        self.exit_status = 0
        self.exited_at_ns = 0
        self.cleaned = threading.Event()   # set once a dead shim has been cleaned up
        self.exit_published = False
        self.shim_pid = 0             # the shim's pid, when its bundle does not say

    def dead_error(self) -> errors.PalletError:
        return errors.FailedPrecondition(f"task {self.id}: shim exited unexpectedly "
                                         f"({self.dead_reason}): failed precondition")


class TaskManager:
    """The service layer behind the Tasks gRPC service."""

    def __init__(self, paths, containers, exchange, address: str, *, snapshots=None,
                 shim_debug: bool = False, shim_table: shims.ShimTable | None = None):
        self.paths = paths
        self.containers = containers          # containers.ContainerStore
        self.exchange = exchange              # events.Exchange
        self.address = address                # our gRPC address, handed to each shim
        self.snapshots = snapshots            # callable(ns, snapshotter, key) -> mounts, or None
        self.shim_debug = shim_debug
        self.shim_table = shim_table or shims.ShimTable()
        #: no endpoint for the shims' events: wait on each shim for its exit
        self.watch_exits = False
        self._tasks: dict[tuple[str, str], Task] = {}
        self._lock = threading.Lock()
        self._creating: set[tuple[str, str]] = set()
        self._closed = False

    # ---- shims ----------------------------------------------------------------
    def _connect(self, task: Task):
        from pallet.ttrpc import protocol as ttrpc

        return ttrpc.Client(task.address, connect_timeout=5,
                            on_close=lambda: self._connection_lost(task))

    def _client(self, task: Task):
        client = task.client
        if client is None or client.closed:
            with task.lock:
                if task.client is None or task.client.closed:
                    task.client = self._connect(task)
                client = task.client
        return client

    def _call(self, task: Task, method: str, req, resp_cls, timeout=CALL_TIMEOUT):
        if task.dead:
            raise task.dead_error()
        try:
            return self._client(task).call(SHIM_SERVICE, method, req, resp_cls, timeout=timeout)
        except errors.Unavailable as e:
            if not self._shim_gone(task):
                raise
            self._shim_died(task, f"{e.message}")
            raise task.dead_error() from None

    def _get(self, ns: str, id: str) -> Task:
        with self._lock:
            task = self._tasks.get((ns, id))
        if task is None:
            raise errors.NotFound(f"no running task found: task {id} not found")
        return task

    def _write_bundle(self, ns: str, id: str, spec: bytes) -> str:
        """The bundle with ``config.json``: the spec's bytes as the client sent
        them (containerd too writes them without decoding them)."""
        bundle = self.paths.bundle_dir(ns, id)
        if os.path.exists(os.path.join(bundle, "address")):
            raise errors.AlreadyExists(f"task {id}: already exists")
        os.makedirs(os.path.join(bundle, "rootfs"), exist_ok=True)
        # no fsync: the bundle lives in the state directory (a tmpfs, /run, by
        # default), which a reboot empties anyway; containerd does not sync it either
        write_atomic(os.path.join(bundle, "config.json"), spec, fsync=False)
        return bundle

    def _cleanup_bundle(self, bundle: str) -> None:
        rootfs = os.path.join(bundle, "rootfs")
        if os.path.ismount(rootfs):
            subprocess.run(["umount", "-l", rootfs], stderr=subprocess.DEVNULL)
        shutil.rmtree(bundle, ignore_errors=True)

    def _shutdown_shim(self, task: Task) -> None:
        task.closing = True
        try:
            self._client(task).call(SHIM_SERVICE, "Shutdown", shim_pb2.ShutdownRequest(
                id=task.id), empty_pb2.Empty, timeout=5)
        except errors.PalletError:
            pass  # the shim may exit before it answers
        if task.client is not None:
            task.client.close()

    # ---- dead shims ----------------------------------------------------------
    def _shim_pid(self, task: Task) -> int:
        try:
            with open(os.path.join(task.bundle, "shim.pid")) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return task.shim_pid

    def _learn_shim_pid(self, task: Task) -> None:
        """Ask the shim its pid when the bundle does not hold it: a shim that
        took the task into its group (containerd's runc shim) writes only the
        ``address`` there, and the pid tells later whether the shim is alive."""
        if self._shim_pid(task):
            return
        try:
            r = self._client(task).call(SHIM_SERVICE, "Connect", shim_pb2.ConnectRequest(
                id=task.id), shim_pb2.ConnectResponse, timeout=5)
        except errors.PalletError as e:
            log.debug("pid of the shim of %s/%s: %s", task.namespace, task.id, e)
            return
        task.shim_pid = r.shim_pid
        try:
            write_atomic(os.path.join(task.bundle, "shim.pid"), str(r.shim_pid).encode())
        except OSError as e:
            log.debug("record the pid of the shim of %s/%s: %s", task.namespace, task.id, e)

    def _shim_alive(self, task: Task) -> bool:
        pid = self._shim_pid(task)
        if not pid:
            return False
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
        except (OSError, IndexError):
            return False
        return state not in (b"Z", b"X")

    def _shim_gone(self, task: Task, wait: float = 1.0) -> bool:
        """Whether the shim is dead (a killed process closes its sockets a moment
        before it shows as a zombie: give it that moment)."""
        deadline = time.monotonic() + wait
        while self._shim_alive(task):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def _connection_lost(self, task: Task) -> None:
        if task.closing or task.creating or task.dead or self._closed:
            return
        threading.Thread(target=self._check_shim, args=(task,), daemon=True,
                         name=f"shim-{task.id[:12]}").start()

    def _check_shim(self, task: Task) -> None:
        if self._shim_gone(task):
            self._shim_died(task, "its connection closed")
            return
        log.warning("task %s/%s: connection to its shim dropped; the shim lives on",
                    task.namespace, task.id)

    def _shim_died(self, task: Task, reason: str) -> None:
        """Clean up after a shim that is gone (once), and keep the task as stopped."""
        with task.lock:
            if task.dead:
                first = False
            else:
                task.dead, task.dead_reason, first = True, reason, True
        if not first:
            task.cleaned.wait(DEAD_TIMEOUT)
            return
        log.warning("shim of task %s/%s died (%s): cleaning up", task.namespace, task.id,
                    reason)
        if not self._shim_alive(task):  # (a live shim may just have lost this one task)
            self._siblings_died(task)
        status, exited = 128 + SIGKILL, time.time_ns()
        try:
            pid, status, exited = shims.delete(task.namespace, task.id, task.bundle,
                                               self.address, self.paths)
            task.pid = task.pid or pid
        except errors.PalletError as e:
            log.error("clean up after the shim of %s/%s: %s", task.namespace, task.id, e)
        task.exit_status, task.exited_at_ns = status, exited or time.time_ns()
        task.cleaned.set()
        self._publish_exit(task)

    def _siblings_died(self, task: Task) -> None:
        """The other tasks of a dead shared shim die with it (each connection
        notices on its own too; this covers one that is not connected)."""
        with self._lock:
            siblings = [t for t in self._tasks.values()
                        if t is not task and t.address == task.address and not t.dead]
        for t in siblings:
            threading.Thread(target=self._check_shim, args=(t,), daemon=True,
                             name=f"shim-{t.id[:12]}").start()

    def _publish_exit(self, task: Task, status: int | None = None, exited_at=None) -> None:
        if task.exit_published:
            return
        task.exit_published = True
        self.exchange.publish(task.namespace, "/tasks/exit", ev.TaskExit(
            container_id=task.id, id=task.id, pid=task.pid,
            exit_status=task.exit_status if status is None else status,
            exited_at=exited_at if exited_at is not None else convert.ts(task.exited_at_ns)))

    # ---- watcher --------------------------------------------------------------
    def _watch(self, task: Task) -> None:
        if not self.watch_exits:
            return

        def run():
            try:
                r = self._call(task, "Wait", shim_pb2.WaitRequest(id=task.id),
                               shim_pb2.WaitResponse, timeout=None)
            except errors.PalletError as e:
                log.debug("wait on task %s/%s ended: %s", task.namespace, task.id, e)
                return
            self._publish_exit(task, r.exit_status, r.exited_at)
        threading.Thread(target=run, daemon=True, name=f"wait-{task.id[:12]}").start()

    # ---- operations -----------------------------------------------------------
    def create(self, ns: str, req: tasks_pb2.CreateTaskRequest) -> int:
        if req.checkpoint.digest:
            raise errors.NotImplementedYet("creating a task from a checkpoint is not supported")
        container = self.containers.get(ns, req.container_id)
        spec = container.spec.value or b"{}"
        runtime = req.runtime_path or container.runtime.name
        binary = self.shim_table.resolve(runtime)
        options = req.options if req.HasField("options") and req.options.type_url else None
        if options is None and container.runtime.HasField("options") and \
                container.runtime.options.type_url:
            options = container.runtime.options
        key = (ns, req.container_id)
        with self._lock:
            if key in self._tasks or key in self._creating:
                raise errors.AlreadyExists(f"task {req.container_id}: already exists")
            self._creating.add(key)
        # the runtime will move the container's first process into its cgroups
        # at the end of what follows: the kernel's wait for a move (see
        # warm_migration) runs meanwhile, here rather than in the runtime,
        # where the cgroups it makes right away would wait for it
        warm_migration()
        bundle = None
        task = None
        try:
            rootfs = list(req.rootfs)
            if not rootfs and container.snapshot_key and self.snapshots is not None:
                rootfs = [m for m in self.snapshots(ns, container.snapshotter,
                                                    container.snapshot_key)]
            bundle = self._write_bundle(ns, req.container_id, spec)
            shims.record(bundle, runtime, binary)
            create = shim_pb2.CreateTaskRequest(
                id=req.container_id, bundle=bundle, rootfs=rootfs, terminal=req.terminal,
                stdin=req.stdin, stdout=req.stdout, stderr=req.stderr, options=options)
            for attempt in (1, 2):
                address = shims.start(ns, req.container_id, bundle, self.address, self.paths,
                                      binary, options.SerializeToString() if options else b"",
                                      debug=self.shim_debug)
                task = Task(ns, req.container_id, bundle, address)
                task.creating = True
                try:
                    r = self._client(task).call(SHIM_SERVICE, "Create", create,
                                                shim_pb2.CreateTaskResponse, timeout=CALL_TIMEOUT)
                    break
                except errors.Unavailable:
                    # a pod's shim may end (its last task deleted) between the start
                    # verb handing out its address and this call: start it anew, once
                    if attempt == 2 or not self._shim_gone(task):
                        raise
            task.pid = r.pid
            self._learn_shim_pid(task)
        except BaseException:
            if task is not None:
                self._shutdown_shim(task)
            if bundle is not None:
                self._cleanup_bundle(bundle)
            with self._lock:
                self._creating.discard(key)
            raise
        with self._lock:
            self._creating.discard(key)
            self._tasks[key] = task
        task.creating = False
        if task.client is not None and task.client.closed:
            self._connection_lost(task)   # lost while Create was being answered
        self.exchange.publish(ns, "/tasks/create", ev.TaskCreate(
            container_id=task.id, bundle=bundle, rootfs=rootfs, pid=task.pid,
            io=ev.TaskIO(stdin=req.stdin, stdout=req.stdout, stderr=req.stderr,
                         terminal=req.terminal)))
        self._watch(task)
        return task.pid

    def start(self, ns: str, id: str, exec_id: str = "") -> int:
        task = self._get(ns, id)
        r = self._call(task, "Start", shim_pb2.StartRequest(id=id, exec_id=exec_id),
                       shim_pb2.StartResponse)
        if exec_id:
            self.exchange.publish(ns, "/tasks/exec-started", ev.TaskExecStarted(
                container_id=id, exec_id=exec_id, pid=r.pid))
        else:
            self.exchange.publish(ns, "/tasks/start", ev.TaskStart(container_id=id, pid=r.pid))
        return r.pid

    def delete(self, ns: str, id: str) -> tasks_pb2.DeleteResponse:
        task = self._get(ns, id)
        if task.dead:
            task.cleaned.wait(DEAD_TIMEOUT)
            pid, status, exited = task.pid, task.exit_status, convert.ts(task.exited_at_ns)
        else:
            r = self._call(task, "Delete", shim_pb2.DeleteRequest(id=id), shim_pb2.DeleteResponse)
            pid, status, exited = r.pid, r.exit_status, r.exited_at
            self._shutdown_shim(task)
        with self._lock:
            self._tasks.pop((ns, id), None)
        self._cleanup_bundle(task.bundle)
        self.exchange.publish(ns, "/tasks/delete", ev.TaskDelete(
            container_id=id, id=id, pid=pid, exit_status=status, exited_at=exited))
        return tasks_pb2.DeleteResponse(id=id, pid=pid, exit_status=status, exited_at=exited)

    def delete_process(self, ns: str, id: str, exec_id: str) -> tasks_pb2.DeleteResponse:
        task = self._get(ns, id)
        r = self._call(task, "Delete", shim_pb2.DeleteRequest(id=id, exec_id=exec_id),
                       shim_pb2.DeleteResponse)
        return tasks_pb2.DeleteResponse(id=exec_id, pid=r.pid, exit_status=r.exit_status,
                                        exited_at=r.exited_at)

    def _dead_process(self, task: Task) -> task_pb2.Process:
        task.cleaned.wait(DEAD_TIMEOUT)
        return task_pb2.Process(container_id=task.id, id=task.id, pid=task.pid,
                                status=task_pb2.STOPPED, exit_status=task.exit_status,
                                exited_at=convert.ts(task.exited_at_ns))

    def get(self, ns: str, id: str, exec_id: str = "") -> task_pb2.Process:
        task = self._get(ns, id)
        if task.dead and not exec_id:
            return self._dead_process(task)
        try:
            r = self._call(task, "State", shim_pb2.StateRequest(id=id, exec_id=exec_id),
                           shim_pb2.StateResponse)
        except errors.FailedPrecondition:
            if task.dead and not exec_id:
                return self._dead_process(task)
            raise
        return task_pb2.Process(container_id=id, id=exec_id or id, pid=r.pid, status=r.status,
                                stdin=r.stdin, stdout=r.stdout, stderr=r.stderr,
                                terminal=r.terminal, exit_status=r.exit_status,
                                exited_at=r.exited_at)

    def list(self, ns: str) -> list[task_pb2.Process]:
        with self._lock:
            ids = sorted(i for n, i in self._tasks if n == ns)
        out = []
        for id in ids:
            try:
                out.append(self.get(ns, id))
            except errors.PalletError as e:
                log.debug("state of task %s/%s: %s", ns, id, e)
        return out

    def kill(self, ns: str, id: str, signal: int, all: bool = False, exec_id: str = "") -> None:
        task = self._get(ns, id)
        if task.dead and not exec_id:
            raise errors.NotFound(f"process already finished: task {id}: not found")
        self._call(task, "Kill", shim_pb2.KillRequest(id=id, exec_id=exec_id, signal=signal,
                                                      all=all), empty_pb2.Empty)

    def pids(self, ns: str, id: str) -> list[task_pb2.ProcessInfo]:
        task = self._get(ns, id)
        if task.dead:
            return []
        r = self._call(task, "Pids", shim_pb2.PidsRequest(id=id), shim_pb2.PidsResponse)
        return list(r.processes)

    def wait(self, ns: str, id: str, exec_id: str = "") -> shim_pb2.WaitResponse:
        task = self._get(ns, id)
        if not task.dead:
            try:
                return self._call(task, "Wait", shim_pb2.WaitRequest(id=id, exec_id=exec_id),
                                  shim_pb2.WaitResponse, timeout=None)
            except errors.FailedPrecondition:
                if not task.dead or exec_id:
                    raise
        if exec_id:
            raise task.dead_error()
        p = self._dead_process(task)
        return shim_pb2.WaitResponse(exit_status=p.exit_status, exited_at=p.exited_at)

    def exec(self, ns: str, req: tasks_pb2.ExecProcessRequest) -> None:
        task = self._get(ns, req.container_id)
        self._call(task, "Exec", shim_pb2.ExecProcessRequest(
            id=req.container_id, exec_id=req.exec_id, terminal=req.terminal, stdin=req.stdin,
            stdout=req.stdout, stderr=req.stderr, spec=req.spec), empty_pb2.Empty)
        self.exchange.publish(ns, "/tasks/exec-added", ev.TaskExecAdded(
            container_id=req.container_id, exec_id=req.exec_id))

    def resize_pty(self, ns: str, req: tasks_pb2.ResizePtyRequest) -> None:
        task = self._get(ns, req.container_id)
        self._call(task, "ResizePty", shim_pb2.ResizePtyRequest(
            id=req.container_id, exec_id=req.exec_id, width=req.width, height=req.height),
            empty_pb2.Empty)

    def close_io(self, ns: str, req: tasks_pb2.CloseIORequest) -> None:
        task = self._get(ns, req.container_id)
        self._call(task, "CloseIO", shim_pb2.CloseIORequest(
            id=req.container_id, exec_id=req.exec_id, stdin=req.stdin), empty_pb2.Empty)

    def pause(self, ns: str, id: str) -> None:
        self._call(self._get(ns, id), "Pause", shim_pb2.PauseRequest(id=id), empty_pb2.Empty)
        self.exchange.publish(ns, "/tasks/paused", ev.TaskPaused(container_id=id))

    def resume(self, ns: str, id: str) -> None:
        self._call(self._get(ns, id), "Resume", shim_pb2.ResumeRequest(id=id), empty_pb2.Empty)
        self.exchange.publish(ns, "/tasks/resumed", ev.TaskResumed(container_id=id))

    def update(self, ns: str, req: tasks_pb2.UpdateTaskRequest) -> None:
        self._call(self._get(ns, req.container_id), "Update", shim_pb2.UpdateTaskRequest(
            id=req.container_id, resources=req.resources, annotations=dict(req.annotations)),
            empty_pb2.Empty)

    def metrics(self, ns: str, ids=None) -> list:
        """types.Metric of every task of ``ns`` (or those of ``ids``) that has any."""
        with self._lock:
            tasks = sorted((t for (n, _), t in self._tasks.items() if n == ns),
                           key=lambda t: t.id)
        out = []
        for task in tasks:
            if ids is not None and task.id not in ids:
                continue
            if task.dead:
                continue
            try:
                r = self._call(task, "Stats", shim_pb2.StatsRequest(id=task.id),
                               shim_pb2.StatsResponse)
            except errors.PalletError as e:
                if ids is not None:
                    raise
                log.debug("metrics of %s/%s: %s", ns, task.id, e)
                continue
            out.append(metrics_pb2.Metric(timestamp=convert.now_ts(), id=task.id, data=r.stats))
        return out

    def has_tasks(self, ns: str) -> bool:
        with self._lock:
            return any(n == ns for n, _ in self._tasks)

    # ---- restart ----------------------------------------------------------------
    def restore(self) -> list[str]:
        """Reconnect to the shim of every bundle left by an earlier run.

        A bundle whose shim answers is a task again: running ones are
        watched, and one that exited meanwhile reports its exit status (and
        its ``/tasks/exit`` is published now).  A bundle whose shim is gone
        is cleaned up through the shim's ``delete`` verb and, if its
        container still exists, kept as a stopped task.  Returns the
        ``ns/id`` of the tasks restored.
        """
        top = os.path.join(self.paths.containerd_state, RUNTIME_DIR)
        restored = []
        try:
            namespaces = sorted(os.listdir(top))
        except FileNotFoundError:
            return restored
        for ns in namespaces:
            try:
                ids = sorted(os.listdir(os.path.join(top, ns)))
            except NotADirectoryError:
                continue
            for id in ids:
                bundle = os.path.join(top, ns, id)
                try:
                    if self._restore_one(ns, id, bundle):
                        restored.append(f"{ns}/{id}")
                except Exception:  # noqa: BLE001 - one bad bundle must not stop the others
                    log.exception("restore task %s/%s", ns, id)
        return restored

    def _restore_one(self, ns: str, id: str, bundle: str) -> bool:
        try:
            with open(os.path.join(bundle, "address")) as f:
                address = f.read().strip()
        except OSError:
            address = ""
        task = Task(ns, id, bundle, address)
        if address and not self._shim_pid(task):
            self._learn_shim_pid(task)
        if address and self._shim_alive(task):
            try:
                st = self._client(task).call(SHIM_SERVICE, "State", shim_pb2.StateRequest(id=id),
                                             shim_pb2.StateResponse, timeout=5)
            except errors.PalletError as e:
                log.info("shim of task %s/%s does not answer (%s)", ns, id, e)
            else:
                task.pid = st.pid
                with self._lock:
                    self._tasks[(ns, id)] = task
                if st.status == task_pb2.STOPPED:
                    task.exit_status = st.exit_status
                    self._publish_exit(task, st.exit_status, st.exited_at)
                else:
                    self._watch(task)
                return True
        try:
            self.containers.get(ns, id)
        except errors.NotFound:
            try:
                shims.delete(ns, id, bundle, self.address, self.paths)
            except errors.PalletError as e:
                log.warning("clean up task %s/%s: %s", ns, id, e)
            self._cleanup_bundle(bundle)
            return False
        if not os.path.exists(os.path.join(bundle, "config.json")):
            self._cleanup_bundle(bundle)
            return False
        with self._lock:
            self._tasks[(ns, id)] = task
        self._shim_died(task, "found dead at start-up")
        return True

    def close(self) -> None:
        """Drop the connections to the shims (the shims and containers live on)."""
        self._closed = True
        with self._lock:
            tasks = list(self._tasks.values())
        for t in tasks:
            t.closing = True
            if t.client is not None:
                t.client.close()
