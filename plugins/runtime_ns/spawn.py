"""Forking a container process (create) or a process joining one (exec).

The parent side of the protocol described in process.py: prepare every fd
and namespace before fork, fork (in the container's PID namespace when it
can be entered from here, else through the intermediate), then answer the
child's requests -- write the user namespace maps, run the createRuntime
hooks -- until it says "ready" or fails.  Every wait has a deadline.
"""
from __future__ import annotations

import os
import select
import time

from pallet.core.errors import (AlreadyExists, FailedPrecondition, InvalidArgument, NotFound,
                                PalletError)

from pallet.oci import jsonlite as json
from pallet.plugins.runtime_ns.errtext import describe

#: how long create waits for the container process to report "ready"
CREATE_TIMEOUT = 60.0

_ERRORS = {cls.__name__: cls for cls in (InvalidArgument, NotFound, AlreadyExists,
                                           FailedPrecondition, PalletError)}


def _no_log(level, msg, caller=None, fields=()) -> None:
    pass

#: the order a joining process enters a container's namespaces: the user one
#: first (it owns the others), the mount one last, since it moves root and cwd
#: (setns(2)); pid is done at fork
JOIN_ORDER = ("user", "cgroup", "ipc", "uts", "network", "time", "mount")


def spawn(spec, ns, stdio, terminal_socket, preserve_fds, *, fifo_fd=-1, on_hooks=None,
          log=None, **child) -> int:
    """Fork the container process (or, without ``fifo_fd``, a process joining
    a container) and serve it until "ready"; its host pid.

    ``ns`` is a ``Namespaces`` (see below); ``on_hooks(pid)`` runs the
    createRuntime hooks when the child asks for them; ``log(level, msg)``
    receives the child's warnings and runc's debug lines.  A failure is
    worded as runc words it: "unable to start container process: ", then for
    the set-up of a new container "error during container init: ".
    """
    from pallet.plugins.runtime_ns import process
    if child.get("seccomp") is not None:
        # the child installs it after pivot_root, where nothing can be imported
        from pallet.plugins.runtime_ns import seccomp  # noqa: F401
    proc = spec.get("process") or {}
    opened: list[int] = []
    console = None
    pids: list[int] = []     # every process forked so far (intermediate, container)
    pipe_r = pipe_w = sync_r = sync_w = -1
    try:
        fds = []
        for fd in stdio:
            if fd is None:
                fd = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
                opened.append(fd)
            fds.append(fd)
        if proc.get("terminal"):
            if not terminal_socket:
                raise InvalidArgument("cannot allocate tty if runc will detach without "
                                      "setting console socket")
            console = _connect(terminal_socket)
        log = log or _no_log
        sources = _bind_sources(spec, child.get("bundle") or "") \
            if ns.user and ns.user[0] == "new" else []
        if sources:
            import socket
            src_parent, src_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            opened += [src_parent.detach(), src_child.detach()]
            child["mount_sock"] = opened[-1]
        pipe_r, pipe_w = os.pipe2(os.O_CLOEXEC)
        sync_r, sync_w = os.pipe2(os.O_CLOEXEC)
        cfg = process.ChildConfig(
            spec=spec, pipe_w=pipe_w, sync_r=sync_r, fifo_fd=fifo_fd, stdio=tuple(fds),
            console=console, preserve_fds=preserve_fds, ns_join=ns.joins, ns_new=ns.new,
            intermediate=ns.intermediate, user_ns=ns.user, pid_ns=ns.pid if ns.intermediate else None,
            time_offsets=ns.time_offsets, **child)
        me = os.getpid()
        log("debug", f"nsexec[{me}]: => nsexec container setup")
        log("debug", f"nsexec-0[{me}]: ~> nsexec stage-0")
        pid = fork_in_pidns(None if ns.intermediate else ns.pid, cfg)
        pids.append(pid)
        os.close(pipe_w)
        pipe_w = -1
        os.close(sync_r)
        sync_r = -1
        chan = _Channel(pipe_r)
        maps_pid = pid
        while True:
            msg = chan.next(pids[-1])
            kind = msg.get("type")
            if kind == "ready":
                log("debug", f"nsexec-0[{me}]: <~ nsexec stage-0")
                return pids[-1]
            if kind == "log":
                log(msg.get("level", "debug"), msg.get("msg", ""))
                continue
            if kind == "error":
                cls = _ERRORS.get(msg.get("kind"), PalletError)
                during = "error during container init: " if msg.get("init") and fifo_fd >= 0 \
                    else ""
                text = msg.get("message", "unknown error").replace("{pid}", str(pids[-1]))
                raise cls("unable to start container process: " + during + text)
            if kind == "exited":
                pids.pop()  # reaped already: never signal a pid that may be reused
                raise PalletError("unable to start container process: " + msg["message"])
            if kind == "userns":
                _answer(sync_w, lambda: write_id_maps(maps_pid, spec))
            elif kind == "pid":
                # the intermediate is done: collect it, the container process
                # is reparented to us (a subreaper) or to init
                log("debug", f"nsexec-0[{me}]: forward stage-1 ({pids[0]}) and stage-2 "
                             f"({msg['pid']}) pids to runc")
                _reap(pids[0])
                pids[0] = -pids[0]
                pids.append(int(msg["pid"]))
            elif kind == "hooks":
                _answer(sync_w, lambda: on_hooks(pids[-1]) if on_hooks else None, fifo_fd >= 0)
            elif kind == "mountsources":
                try:
                    _answer(sync_w, lambda: send_mount_sources(pids[-1], sources, opened[-2]),
                            fifo_fd >= 0)
                except MountSourceError as e:
                    # runc's stage 0 dies naming the source, its stage 1 on the
                    # socket that then closes, and runc reports the pipe's EOF
                    log("fatal", f"nsexec-0[{me}]: failed to open mount source {e.source}: "
                                 f"{os.strerror(e.errno)}")
                    log("fatal", f"nsexec-1[{abs(pids[0])}]: failed to receive fd from unix "
                                 f"socket {opened[-1]}: Invalid argument")
                    raise PalletError("unable to start container process: can't get final "
                                      "child's PID from pipe: EOF") from None
            else:
                raise PalletError(f"unable to start container process: unexpected message {kind!r}")
    except BaseException:
        for p in reversed(pids):
            if p > 0:
                _kill_and_reap(p)
        raise
    finally:
        for fd in opened:
            os.close(fd)
        for fd in (pipe_r, pipe_w, sync_r, sync_w):
            if fd >= 0:
                os.close(fd)
        if console is not None:
            console.close()


def _answer(sync_w: int, work, init: bool = False) -> None:
    """Do ``work`` for the child and tell it the outcome; re-raise a failure
    (worded as a failure of the container's set-up, as runc words a hook's)."""
    try:
        work()
    except BaseException as e:
        try:
            os.write(sync_w, json.dumps({"ok": False, "error": describe(e)}).encode() + b"\n")
        except OSError:
            pass
        if isinstance(e, PalletError):
            raise
        during = "error during container init: " if init else ""
        raise PalletError(f"unable to start container process: {during}{describe(e)}") from None
    os.write(sync_w, b'{"ok": true}\n')


def _bind_sources(spec: dict, bundle: str) -> list[str]:
    """The host paths the spec bind-mounts (relative ones from the bundle)."""
    from pallet.linux.syscalls import MS_BIND, parse_options
    out = []
    for m in spec.get("mounts") or ():
        flags, _prop, _data = parse_options(m.get("options") or ())
        if m.get("type") == "bind" or flags & MS_BIND:
            source = m.get("source") or ""
            out.append(source if os.path.isabs(source) else os.path.join(bundle, source))
    return out


def send_mount_sources(pid: int, sources: list[str], sock_fd: int) -> None:
    """runc's send_mountsources: open every bind source as the host's root, but
    from the container's new mount namespace (what it will mount from), and
    pass the descriptors over ``sock_fd`` -- from a child of ours, since a
    process with threads may not change its mount namespace (setns(2)).

    A source that cannot be opened raises :class:`MountSourceError`."""
    import socket
    r, w = os.pipe2(os.O_CLOEXEC)
    helper = os.fork()
    if helper == 0:
        source = ""
        try:
            from pallet.plugins.runtime_ns import linux
            linux.setns(os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC),
                        linux.CLONE_NEWNS, "container mount namespace")
            fds = []
            for source in sources:
                fds.append(os.open(source, os.O_PATH | os.O_CLOEXEC))
            sock = socket.socket(fileno=os.dup(sock_fd))
            sock.sendmsg([json.dumps(sources).encode()],
                         [(socket.SOL_SOCKET, socket.SCM_RIGHTS, bytes(_fd_array(fds)))])
            os._exit(0)
        except OSError as e:
            os.write(w, json.dumps({"source": source, "errno": e.errno or 0,
                                    "text": describe(e)}).encode())
            os._exit(1)
    os.close(w)
    failed = os.read(r, 65536).decode(errors="replace")
    os.close(r)
    _reap(helper)
    if failed:
        doc = json.loads(failed)
        raise MountSourceError(doc["source"], doc["errno"], doc["text"])


class MountSourceError(PalletError):
    """A bind source runc's nsexec could not open (user namespaces)."""

    def __init__(self, source: str, errno: int, text: str):
        super().__init__(f"failed to open mount source: {text}")
        self.source, self.errno = source, errno


def _fd_array(fds):
    import array
    return array.array("i", fds)


def write_id_maps(pid: int, spec: dict) -> None:
    """/proc/<pid>/uid_map and gid_map from linux.uidMappings/gidMappings
    (user_namespaces(7): one write each, by a process with CAP_SETUID and
    CAP_SETGID in the parent namespace, which we are)."""
    lnx = spec.get("linux") or {}
    for name, key in (("uid_map", "uidMappings"), ("gid_map", "gidMappings")):
        lines = "".join(f"{m['containerID']} {m['hostID']} {m['size']}\n" for m in lnx.get(key) or ())
        path = f"/proc/{pid}/{name}"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, lines.encode())
            finally:
                os.close(fd)
        except OSError as e:
            raise PalletError(f"write {name} of the user namespace ({lines.strip()!r}): "
                              f"{os.strerror(e.errno).lower()}") from None


class Namespaces:
    """What a spawn does with namespaces, opened before fork.

    ``pid``: None (stay in ours), -1 (a new one) or an fd to join;
    ``joins``: [(fd, flag, kind)] entered by setns; ``new``: clone flags to
    unshare (pid, user and time excluded); ``user``: None, ("new", None) or
    ("join", fd); ``time_offsets``: a new time namespace's offsets (or None).
    With a user namespace or a new time namespace the container is spawned
    through the intermediate process.
    """

    def __init__(self):
        self.pid = None
        self.joins: list = []
        self.new = 0
        self.user = None
        self.time_offsets = None

    @property
    def intermediate(self) -> bool:
        return self.user is not None or self.time_offsets is not None


def namespaces_of(spec: dict, opened: list) -> Namespaces:
    """The namespaces of ``linux.namespaces`` for create."""
    from pallet.plugins.runtime_ns import linux
    ns = Namespaces()
    seen = set()
    for entry in (spec.get("linux") or {}).get("namespaces") or ():
        kind = entry.get("type")
        if kind not in linux.NAMESPACES:
            raise InvalidArgument(f"namespace type {kind!r} is not supported")
        if kind in seen:
            raise InvalidArgument(f"duplicate namespace {kind}")
        seen.add(kind)
        flag = linux.NAMESPACES[kind][0]
        path = entry.get("path")
        fd = None
        if path:
            try:
                os.lstat(path)  # runc looks before it starts anything
            except OSError as e:
                raise InvalidArgument(f"unable to create new parent process: namespace path: "
                                      f"lstat {path}: {os.strerror(e.errno).lower()}") from None
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as e:
                raise InvalidArgument(f"open {kind} namespace {path}: "
                                      f"{os.strerror(e.errno).lower()}") from None
            opened.append(fd)
        if kind == "pid":
            ns.pid = fd if fd is not None else -1
        elif kind == "user":
            ns.user = ("join", fd) if fd is not None else ("new", None)
        elif kind == "time" and fd is None:
            if not os.path.exists("/proc/self/ns/time"):
                raise InvalidArgument("time namespaces are not supported by this kernel")
            ns.time_offsets = (spec.get("linux") or {}).get("timeOffsets") or {}
        elif fd is not None:
            ns.joins.append((fd, flag, kind))
        else:
            ns.new |= flag
    if "mount" not in seen:
        raise InvalidArgument("the mount namespace is required")
    order = {k: i for i, k in enumerate(JOIN_ORDER)}
    ns.joins.sort(key=lambda j: order.get(j[2], 0))
    return ns


def namespaces_of_container(pid: int, kinds, opened: list) -> Namespaces:
    """The namespaces of a container's PID 1, opened for setns (exec)."""
    from pallet.plugins.runtime_ns import linux
    ns = Namespaces()
    for kind in ("pid",) + JOIN_ORDER:
        if kind not in kinds:
            continue
        flag, name = linux.NAMESPACES[kind]
        path = f"/proc/{pid}/ns/{name}"
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            raise PalletError(f"open {path}: {os.strerror(e.errno).lower()}") from None
        opened.append(fd)
        if kind == "pid":
            ns.pid = fd
        else:
            ns.joins.append((fd, flag, kind))
    return ns


def fork_in_pidns(pid_ns, cfg) -> int:
    """Fork the container process; with ``pid_ns`` it is born in that PID
    namespace (-1: a new one), the calling thread's own being restored at once.

    All signals are blocked across the fork so that none runs a handler of
    the caller in the child before it resets them.
    """
    import _signal as signal  # the C module: no enum conversions of every signal

    from pallet.plugins.runtime_ns import linux, process
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    own = None
    try:
        if pid_ns is not None:
            own = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
            if pid_ns == -1:
                linux.unshare(linux.CLONE_NEWPID)
            else:
                linux.setns(pid_ns, linux.CLONE_NEWPID, "pid namespace")
        try:
            pid = os.fork()
            if pid == 0:
                process.child_main(cfg)  # never returns
        finally:
            if own is not None:
                linux.setns(own, linux.CLONE_NEWPID, "own pid namespace")
        return pid
    except OSError as e:
        raise PalletError(f"fork container process: {describe(e)}") from None
    finally:
        if own is not None:
            os.close(own)
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)


class _Channel:
    """JSON lines from the child, each within the create deadline."""

    def __init__(self, fd: int):
        self.fd = fd
        self.buf = b""
        self.deadline = time.monotonic() + CREATE_TIMEOUT

    def next(self, pid: int) -> dict:
        while b"\n" not in self.buf:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise PalletError("unable to start container process: timeout waiting for the "
                                  "container process")
            ready, _, _ = select.select([self.fd], [], [], left)
            if not ready:
                continue
            try:
                chunk = os.read(self.fd, 65536)
            except InterruptedError:
                continue
            if not chunk:
                return {"type": "exited",
                        "message": f"container process exited before it was ready ({_exit_desc(pid)})"}
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        try:
            return json.loads(line)
        except ValueError:
            return {"type": "error", "kind": "PalletError", "message": "garbled message from "
                                                                      "container process"}


def _exit_desc(pid: int) -> str:
    try:
        got, status = os.waitpid(pid, 0)
    except ChildProcessError:
        return "exit status unknown"
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _kill_and_reap(pid: int) -> None:
    try:
        os.kill(pid, 9)
    except ProcessLookupError:
        pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:  # reaped already (by us, or by the caller's reaper), or not ours
        pass


def _connect(path: str):
    import socket
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.connect(path)
    except OSError as e:
        sock.close()
        raise InvalidArgument(f"connect to console socket {path}: {os.strerror(e.errno).lower()}") from None
    return sock
