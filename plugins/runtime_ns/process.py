"""The container process: everything between fork() and execve().

``child_main`` runs in the process ``NsRuntime.create`` forks.  Without a
user or time namespace that process is already PID 1 of the container's new
PID namespace (the parent unshared CLONE_NEWPID for its own thread just
around the fork).  With one, the forked process is an intermediate
(``intermediate_main``, runc's nsexec stage 1): it joins the namespaces
given by path, makes the user namespace (the parent writes its uid and gid
maps), then the PID and time namespaces, forks the container process into
them, tells the parent its pid and exits -- so that those namespaces are
owned by the container's user namespace, and /proc can be mounted in it.

The container process's steps follow runc's ``standard_init_linux.go``:

    non-dumpable, signals reset, the environment checked, join cgroups,
    join or make namespaces, stdio, loopback up, rootfs + mounts + devices,
    [createRuntime and prestart hooks by the parent, createContainer hooks],
    pivot_root, the cwd made, console, hostname, sysctls, read-only and
    masked paths, read-only root, rlimits, no_new_privs, [seccomp without
    no_new_privs], stdio owned by the user, user and capabilities (unknown
    ones skipped with a warning), cwd, executable lookup, [seccomp with
    no_new_privs], "ready" to the parent, wait on exec.fifo until start,
    [startContainer hooks, already under seccomp], close fds, exec (or the
    builtin init).  An execve that fails after start is reported as runc's
    init reports it: "exec <path>: <error>" on the container's stderr, 1.

Protocol with the parent: the child writes JSON lines on ``pipe_w``:
``{"type": "ready"}`` once the process only waits for ``start``,
``{"type": "error", "kind": <pallet.core.errors class name>, "message": ...,
"init": <an error of the container's set-up rather than of its program>}``,
``{"type": "log", "level": ..., "msg": ...}`` (runc's warnings and debug
lines, for the runtime's log), and, when it needs the parent, ``{"type": "userns"}`` (write my maps) or
``{"type": "hooks"}`` (run createRuntime hooks), waiting then for one line
on ``sync_r`` (``{"ok": true}``); the intermediate sends ``{"type": "pid",
"pid": N}``.  The pipes are close-on-exec and closed before the wait, so
EOF without "ready" means the process died, which the parent reports too.

Nothing here may import lazily: after pivot_root the host's Python library
is out of reach.  The modules below are imported by runtime.py before fork,
and ``seccomp`` by spawn.py when there is a program to install.
"""
from __future__ import annotations

import _signal as signal  # the C module: signal.py would import enum
import fcntl
import os
import resource
import select
import stat
import struct

from pallet.oci import jsonlite as json
from pallet.plugins.runtime_ns import cgroups, hooks, linux
from pallet.plugins.runtime_ns.mounts import (
    MountError,
    RootfsBuilder,
    masked_paths,
    readonly_paths,
    readonly_root)

_TIOCSCTTY = 0x540E
_SOL_SOCKET = 1
_SCM_RIGHTS = 1


class ChildError(Exception):
    """A failure to report to the parent as ``kind`` (a core error class name);
    ``init``: an error of the set-up (runc: "error during container init")
    rather than one about the program to run."""

    def __init__(self, message: str, kind: str = "PalletError", init: bool = True):
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.init = init


class ChildConfig:
    """Everything the child needs, prepared by the parent before fork."""

    def __init__(self, **kw):
        self.spec: dict = kw["spec"]
        self.id: str = kw.get("id", "")
        self.bundle: str = kw.get("bundle", "")
        self.rootfs: str = kw.get("rootfs", "")
        self.pipe_w: int = kw["pipe_w"]
        self.sync_r: int = kw.get("sync_r", -1)
        self.fifo_fd: int = kw.get("fifo_fd", -1)    # O_PATH exec.fifo; -1: exec, no start
        self.stdio: tuple = kw["stdio"]                  # three fds
        self.console = kw.get("console")                 # connected socket object or None
        self.no_pivot: bool = kw.get("no_pivot", False)
        self.preserve_fds: int = kw.get("preserve_fds", 0)
        self.ns_join: list = kw.get("ns_join", [])       # (fd, flag, type), pid excluded
        self.ns_new: int = kw.get("ns_new", 0)           # clone flags, CLONE_NEWPID excluded
        self.cgroup_paths: dict = kw.get("cgroup_paths") or {}
        self.init = kw.get("init")                       # object with run(argv, env), or None
        self.seccomp: bytes | None = kw.get("seccomp")   # compiled BPF program
        self.seccomp_flags: int = kw.get("seccomp_flags", 0)
        # intermediate mode (user or time namespace): what the intermediate does
        self.intermediate: bool = kw.get("intermediate", False)
        self.user_ns: tuple | None = kw.get("user_ns")   # ("new", None) or ("join", fd)
        self.pid_ns: int | None = kw.get("pid_ns")       # None, -1 (new) or an fd to join
        self.time_offsets: dict | None = kw.get("time_offsets")  # new time namespace
        self.mount_sock: int = kw.get("mount_sock", -1)  # receives the bind sources (userns)
        self.outer_done = False


def send(fd: int, **msg) -> None:
    os.write(fd, json.dumps(msg).encode() + b"\n")


def _ask_parent(cfg: ChildConfig, **msg) -> None:
    """Send ``msg`` and wait for the parent's answer on sync_r."""
    send(cfg.pipe_w, **msg)
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = os.read(cfg.sync_r, 4096)
        if not chunk:
            raise ChildError("the runtime went away")
        buf += chunk
    answer = json.loads(buf)
    if not answer.get("ok"):
        raise ChildError(answer.get("error") or "refused by the runtime")


def child_main(cfg: ChildConfig):
    """Run the container process (create) or a process joining it (exec);
    never returns."""
    code = 1
    try:
        if cfg.intermediate:
            code = _intermediate(cfg)
        elif cfg.fifo_fd >= 0:
            _init(cfg)
        else:
            _exec_in(cfg)
    except ChildError as e:
        _report(cfg, e.kind, e.message, e.init)
    except (MountError, hooks.HookError) as e:
        _report(cfg, "PalletError", str(e))
    except OSError as e:
        _report(cfg, "PalletError", linux.describe(e))
    except BaseException as e:  # a bug must still reach the parent, not vanish
        _report(cfg, "PalletError", f"internal error: {type(e).__name__}: {e}")
    finally:
        os._exit(code)


def _report(cfg: ChildConfig, kind: str, message: str, init: bool = True) -> None:
    """To the parent while it listens; after "ready" only the container's
    stderr is left to tell (as runc's init does)."""
    try:
        if cfg.pipe_w >= 0:
            send(cfg.pipe_w, type="error", kind=kind, message=message, init=init)
        else:
            os.write(2, f"{message}\n".encode())
    except OSError:
        pass


def _log(cfg: ChildConfig, level: str, msg: str) -> None:
    """A line for the runtime's log (runc's init logs through a pipe the same way)."""
    if cfg.pipe_w >= 0:
        send(cfg.pipe_w, type="log", level=level, msg=msg)


def _intermediate(cfg: ChildConfig) -> int:
    """runc's nsexec stage 1: user namespace, then PID and time namespaces
    owned by it, then the container process forked into them."""
    _enter_outer(cfg, cfg.spec.get("process") or {})
    for fd, flag, kind in cfg.ns_join:
        linux.setns(fd, flag, f"{kind} namespace")
    cfg.ns_join = []
    if cfg.user_ns is not None:
        how, fd = cfg.user_ns
        if how == "join":
            linux.setns(fd, linux.CLONE_NEWUSER, "user namespace")
        else:
            linux.unshare(linux.CLONE_NEWUSER)
            _ask_parent(cfg, type="userns")
        _become_root_in_userns()
    if cfg.pid_ns is not None:
        if cfg.pid_ns == -1:
            linux.unshare(linux.CLONE_NEWPID)
        else:
            linux.setns(cfg.pid_ns, linux.CLONE_NEWPID, "pid namespace")
    if cfg.time_offsets is not None:
        linux.unshare(linux.CLONE_NEWTIME)
        _write_time_offsets(cfg.time_offsets)
    cfg.intermediate = False
    pid = os.fork()
    if pid == 0:
        child_main(cfg)  # never returns
    send(cfg.pipe_w, type="pid", pid=pid)
    return 0


def _become_root_in_userns() -> None:
    """uid/gid 0 of the new user namespace when it is mapped (the maps are
    written by now), so that files made during set-up belong to the
    container's root."""
    try:
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
    except OSError:
        pass  # 0 not mapped: stay the overflow id, with the namespace's capabilities


def _write_time_offsets(offsets: dict) -> None:
    lines = []
    for clock in ("monotonic", "boottime"):
        off = offsets.get(clock)
        if off:
            lines.append(f"{clock} {off.get('secs', 0)} {off.get('nanosecs', 0)}\n")
    if lines:
        _write_file("/proc/self/timens_offsets", "".join(lines))


def _init(cfg: ChildConfig) -> None:
    """The container's first process: from the caller's world into the container."""
    proc = cfg.spec.get("process") or {}
    env = _environment(proc)
    _enter(cfg, proc)
    me = os.getpid()
    _log(cfg, "debug", f"nsexec-2[{me}]: ~> nsexec stage-2")
    _log(cfg, "debug", f"nsexec-2[{me}]: <= nsexec container setup")
    _log(cfg, "debug", "child process in init()")
    if cfg.ns_new & linux.CLONE_NEWNET:
        linux.loopback_up()
    builder = _setup_rootfs(cfg)
    hks = cfg.spec.get("hooks") or {}
    if hks.get("prestart") or hks.get("createRuntime"):
        _ask_parent(cfg, type="hooks")
    if hks.get("createContainer"):
        # from the rootfs, with the spec's environment (runc's init runs it so)
        os.chdir(cfg.rootfs)
        hooks.run_all(cfg.spec, "createContainer", _hook_state(cfg, "creating"), env)
    _pivot(cfg, builder)
    _make_cwd(proc.get("cwd") or "/")
    if proc.get("terminal"):
        _setup_console(cfg, proc)
    _setup_system(cfg.spec, builder)
    args = _prepare_process(cfg, proc, env)
    _log(cfg, "debug", "init: closing the pipe to signal completion")
    _ready(cfg)
    # from here on only start (or a kill) moves us
    _wait_for_start(cfg.fifo_fd)
    if hks.get("startContainer"):
        try:
            hooks.run_all(cfg.spec, "startContainer", _hook_state(cfg, "created"), env)
        except hooks.HookError as e:
            os.write(2, f"{e}\n".encode())
            os._exit(1)
    _close_fds(cfg.preserve_fds)
    if cfg.init is not None:
        # the init stays this process: no execve drops the mark of memory
        # the kernel may merge that it may have inherited (from pallet-shim);
        # (loaded by create with the init, before pivot_root)
        from pallet.linux import ksm
        ksm.unmark_all()
        # signals stay blocked: the init takes them over with sigtimedwait
        cfg.init.run(list(args[1:]), env)
        os._exit(1)  # run() does not return
    signal.pthread_sigmask(signal.SIG_SETMASK, ())
    _exec(args, env)


def _hook_state(cfg: ChildConfig, status: str) -> bytes:
    return hooks.state_json(cfg.spec, cfg.id, status, os.getpid(), cfg.bundle)


def _install_seccomp(cfg: ChildConfig) -> None:
    # loaded by spawn before fork when there is a program (an import here would
    # find no library after pivot_root); most containers have none
    from pallet.plugins.runtime_ns import seccomp
    try:
        seccomp.install(cfg.seccomp, cfg.seccomp_flags)
    except OSError as e:
        raise ChildError(f"error loading seccomp filter: {linux.describe(e)}") from None


def _exec_in(cfg: ChildConfig) -> None:
    """A new process in a running container (runc exec, setns_init_linux.go):
    it joins the container's cgroups and namespaces (the PID one at fork, the
    mount one last, which also moves root and cwd to the container's root),
    then is set up like the container's first process, and runs at once."""
    proc = cfg.spec.get("process") or {}
    env = _environment(proc)
    _enter(cfg, proc)
    if proc.get("terminal"):
        _setup_console(cfg, proc)
    _apply_apparmor(proc.get("apparmorProfile"))
    args = _prepare_process(cfg, proc, env)
    _ready(cfg)
    _close_fds(cfg.preserve_fds)
    signal.pthread_sigmask(signal.SIG_SETMASK, ())
    _exec(args, env)


def _enter_outer(cfg: ChildConfig, proc: dict) -> None:
    """What is done with the host's credentials: non-dumpable, clean signal
    state, cgroups, OOM score."""
    if cfg.outer_done:
        return
    # no ptrace, no /proc/<pid>/mem from the container while we sit in its
    # namespaces with the host's view (CVE-2016-9962, runc sets it the same way)
    linux.prctl(linux.PR_SET_DUMPABLE, 0)
    _reset_signal_handlers()
    if cfg.cgroup_paths:
        try:
            cgroups.join_self(cfg.cgroup_paths)
        except cgroups.CgroupError as e:
            # runc's parent writes the host pid, which the parent puts in here
            why = str(e).split(": ", 1)[-1] if str(e).startswith("failed to write") else str(e)
            raise ChildError("error adding pid {pid} to cgroups: failed to write {pid}: " + why,
                             init=False) from None
    if proc.get("oomScoreAdj") is not None:
        try:
            fd = os.open("/proc/self/oom_score_adj", os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, str(proc["oomScoreAdj"]).encode())
            finally:
                os.close(fd)
        except OSError as e:
            # runc's nsexec writes it, dies with this line, and runc then
            # finds the pipe closed
            _log(cfg, "fatal", f"nsexec[{os.getpid()}]: failed to update /proc/self/oom_score_adj: "
                               f"{os.strerror(e.errno)}")
            raise ChildError("can't get final child's PID from pipe: EOF", init=False) from None
    cfg.outer_done = True


#: the names runc's nsexec gives the namespaces it joins
_NSEXEC_NAMES = {"network": "net", "mount": "mnt"}


def _enter(cfg: ChildConfig, proc: dict) -> None:
    """Non-dumpable, clean signal state, cgroups, namespaces, session, stdio."""
    _enter_outer(cfg, proc)
    for fd, flag, kind in cfg.ns_join:
        try:
            linux.setns(fd, flag, f"{kind} namespace")
        except OSError as e:
            if cfg.fifo_fd < 0:
                raise
            # runc's nsexec: its stage 1 fails, its stage 0 then, and runc
            # finds the pipe closed
            _log(cfg, "fatal", f"nsexec-1[{os.getpid()}]: failed to setns into "
                               f"{_NSEXEC_NAMES.get(kind, kind)} namespace: "
                               f"{os.strerror(e.errno)}")
            _log(cfg, "fatal", f"nsexec-0[{os.getppid()}]: failed to sync with stage-1: "
                               f"next state: Invalid argument")
            raise ChildError("can't get final child's PID from pipe: EOF", init=False) from None
    if cfg.ns_new:
        linux.unshare(cfg.ns_new)
    os.setsid()
    _setup_stdio(cfg)


def _apply_apparmor(profile: str | None) -> None:
    """aa_change_onexec, as runc does it: "exec <profile>" into the process's
    AppArmor attribute, for the next execve (an error without AppArmor)."""
    if not profile:
        return
    path = "/proc/self/attr/apparmor/exec"
    if not os.path.exists(path):
        path = "/proc/self/attr/exec"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, f"exec {profile}".encode())
        finally:
            os.close(fd)
    except OSError as e:
        raise ChildError(f"apparmor failed to apply profile: "
                         f"{'open' if e.filename else 'write'} {path}: "
                         f"{os.strerror(e.errno).lower()}") from None


def _setup_system(spec: dict, builder: RootfsBuilder) -> None:
    """runc's order: the delayed read-only mounts and the read-only root, then
    hostname, AppArmor, sysctls, read-only and masked paths."""
    lnx = spec.get("linux") or {}
    try:
        builder.finalize()
        if (spec.get("root") or {}).get("readonly"):
            readonly_root()
    except OSError as e:
        raise ChildError(f"error setting rootfs as readonly: {linux.describe(e)}") from None
    if spec.get("hostname"):
        # (validated: only in a UTS namespace of the container's own)
        try:
            linux.sethostname(spec["hostname"])
        except OSError as e:
            raise ChildError(linux.describe(e)) from None
    # domainname is runtime-spec 1.1's: runc 1.1 leaves it alone, and so do we
    try:
        _apply_apparmor((spec.get("process") or {}).get("apparmorProfile"))
    except ChildError as e:  # runc's init says which step (its exec does not)
        raise ChildError(f"unable to apply apparmor profile: {e.message}") from None
    for key, value in (lnx.get("sysctl") or {}).items():
        _write_file("/proc/sys/" + key.replace(".", "/"), value)
    try:
        readonly_paths(lnx.get("readonlyPaths"))
        masked_paths(lnx.get("maskedPaths"))
    except OSError as e:
        raise ChildError(f"error finalizing rootfs: {linux.describe(e)}") from None


def _prepare_process(cfg: ChildConfig, proc: dict, env: dict) -> list:
    """rlimits, no_new_privs, seccomp, the stdio's owner, user and capabilities,
    cwd, the executable found -- in runc's order; [path, argv...] to exec."""
    _set_rlimits(proc.get("rlimits"))
    nnp = bool(proc.get("noNewPrivileges"))
    if nnp:
        linux.prctl(linux.PR_SET_NO_NEW_PRIVS, 1)
    if cfg.seccomp is not None and not nnp:
        _install_seccomp(cfg)  # while we still have CAP_SYS_ADMIN (runc's order)
    _switch_user(cfg, proc, env)
    args = proc.get("args") or []
    if not args:
        raise ChildError("args must not be empty", "InvalidArgument")
    args = [_lookpath(args[0], env)] + list(args)
    try:
        os.listdir("/proc/self/fd")  # runc closes the fds it finds there: it needs /proc
    except OSError as e:
        raise ChildError(f"error closing exec fds: open /proc/self/fd: "
                         f"{os.strerror(e.errno).lower()}", init=False) from None
    if cfg.seccomp is not None and nnp:
        # as late as possible, yet before start: the startContainer hooks run
        # under it, as with runc
        _install_seccomp(cfg)
    return args


def _ready(cfg: ChildConfig) -> None:
    send(cfg.pipe_w, type="ready")
    os.close(cfg.pipe_w)
    cfg.pipe_w = -1
    if cfg.sync_r >= 0:
        os.close(cfg.sync_r)
        cfg.sync_r = -1



# --- steps ---------------------------------------------------------------------------

def _reset_signal_handlers() -> None:
    """Drop the caller's Python handlers and its wakeup fd (asyncio's self-pipe
    would otherwise receive our signals).  The mask stays as the parent set it
    (all blocked) until just before exec."""
    try:
        signal.set_wakeup_fd(-1)
    except (ValueError, OSError):
        pass
    for sig in _CATCHABLE:
        try:
            signal.signal(sig, signal.SIG_DFL)
        except (OSError, ValueError):
            pass


_CATCHABLE = tuple(s for s in signal.valid_signals()
                   if s not in (signal.SIGKILL, signal.SIGSTOP))


def _write_file(path: str, value: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except OSError as e:
        raise ChildError(f"open {path}: {os.strerror(e.errno).lower()}") from None
    try:
        os.write(fd, value.encode())
    except OSError as e:
        raise ChildError(f"write {path}: {os.strerror(e.errno).lower()}") from None
    finally:
        os.close(fd)


def _setup_stdio(cfg: ChildConfig) -> None:
    """Make the given fds 0, 1 and 2; copy them above the preserved range first
    so that no dup2 overwrites a source still to be used."""
    low = 3 + cfg.preserve_fds
    copies = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, low) for fd in cfg.stdio]
    for target, fd in enumerate(copies):
        os.dup2(fd, target)
    for fd in copies:
        os.close(fd)


def _mount_sources(cfg: ChildConfig) -> dict:
    """In a new user namespace: the bind sources, opened for us by the runtime
    (see spawn.send_mount_sources); source -> fd."""
    if cfg.mount_sock < 0:
        return {}
    # before pivot_root: the host's library is still there (and array, which
    # imports collections, costs pallet-runc 3 ms when loaded for every create)
    import array
    import socket
    _ask_parent(cfg, type="mountsources")
    fds = array.array("i")
    msg, anc, _flags, _addr = socket.socket(fileno=cfg.mount_sock).recvmsg(
        65536, socket.CMSG_SPACE(256 * fds.itemsize))
    for _level, _kind, data in anc:
        fds.frombytes(data[:len(data) - len(data) % fds.itemsize])
    return dict(zip(json.loads(msg), fds))


def _setup_rootfs(cfg: ChildConfig) -> RootfsBuilder:
    builder = RootfsBuilder(cfg.spec, cfg.bundle, cfg.rootfs, _mount_sources(cfg))
    try:
        builder.prepare()
    except OSError as e:
        raise ChildError(f"error preparing rootfs: {linux.describe(e)}") from None
    for m in cfg.spec.get("mounts") or ():
        try:
            builder.mount_one(m)
        except (OSError, MountError) as e:
            src = m.get("source") or m.get("type") or ""
            raise ChildError(f'error mounting "{src}" to rootfs at "{m.get("destination")}": '
                             f"{linux.describe(e)}") from None
    try:
        builder.create_devices()
    except (OSError, MountError) as e:
        raise ChildError(f"error creating device nodes: {linux.describe(e)}") from None
    return builder


def _pivot(cfg: ChildConfig, builder: RootfsBuilder) -> None:
    try:
        builder.pivot(cfg.no_pivot)
    except OSError as e:
        raise ChildError(f"error jailing process inside rootfs: {linux.describe(e)}") from None


def _setup_console(cfg: ChildConfig, proc: dict) -> None:
    """A pty from the container's own devpts; the master goes to the console
    socket (SCM_RIGHTS, as runc does), the slave becomes the controlling tty
    and stdio (its owner is set with the rest of the stdio, later)."""
    if cfg.console is None:
        raise ChildError("cannot allocate tty if runc will detach without setting console socket",
                         "InvalidArgument")
    master, slave = os.openpty()
    size = proc.get("consoleSize")
    if size:
        fcntl.ioctl(slave, 0x5414, struct.pack("HHHH", size.get("height", 0), size.get("width", 0), 0, 0))
    cfg.console.sendmsg([b"/dev/ptmx"], [(_SOL_SOCKET, _SCM_RIGHTS, struct.pack("i", master))])
    # a receiver hangs up once it has the pty (runc's, containerd's, ours): wait
    # a moment for that, so that what it sets on the pty (runc clears ONLCR)
    # is there before the program writes anything
    select.select([cfg.console], [], [], 0.1)
    cfg.console.close()
    os.close(master)
    if cfg.fifo_fd >= 0:
        _mount_console(slave)
    fcntl.ioctl(slave, _TIOCSCTTY, 0)
    for target in (0, 1, 2):
        os.dup2(slave, target)
    os.close(slave)


def _mount_console(slave: int) -> None:
    """/dev/console is the container's terminal: its pty slave bound there
    (runc's mountConsole), for programs that open /dev/console directly."""
    path = os.ttyname(slave)
    try:
        fd = os.open("/dev/console", os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        os.close(fd)
    except FileExistsError:
        pass
    except OSError as e:
        if e.errno == 40:  # ELOOP: a symlink planted at /dev/console: replace it
            os.unlink("/dev/console")
            os.close(os.open("/dev/console", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                             0o600))
        else:
            raise ChildError(f"create /dev/console: {os.strerror(e.errno).lower()}") from None
    try:
        linux.mount(path, "/dev/console", None, linux.MS_BIND)
    except OSError as e:
        raise ChildError(f"mount console: {linux.describe(e)}") from None


def _set_rlimits(rlimits) -> None:
    """process.rlimits, with runc's messages.  Without an RLIMIT_NOFILE the
    soft limit of open files is raised to the hard one, as a runc built with
    Go 1.19 or later hands it on (Go raises it at start)."""
    nofile = False
    for rl in rlimits or ():
        name = rl.get("type", "")
        which = getattr(resource, name, None)
        if not name.startswith("RLIMIT_") or which is None:
            raise ChildError(f"unknown rlimit type {name!r}", "InvalidArgument")
        nofile = nofile or which == resource.RLIMIT_NOFILE
        soft, hard = (_rlim(rl.get(k, 0)) for k in ("soft", "hard"))
        try:
            resource.setrlimit(which, (soft, hard))
        except (OSError, ValueError) as e:
            # Python checks soft <= hard itself (the kernel's EINVAL); raising
            # the hard limit is the kernel's EPERM
            why = os.strerror(e.errno).lower() if isinstance(e, OSError) and e.errno else \
                "invalid argument" if soft > hard and hard != resource.RLIM_INFINITY or \
                soft == resource.RLIM_INFINITY and hard != soft else "operation not permitted"
            raise ChildError(f"error setting rlimits for ready process: error setting rlimit "
                             f"type {which}: {why}") from None
    if not nofile:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _rlim(value) -> int:
    """A limit of config.json (a uint64) as setrlimit takes it: 2^64-1 is
    RLIM_INFINITY."""
    return resource.RLIM_INFINITY if value >= (1 << 64) - 1 or value == -1 else value


def _environment(proc: dict) -> dict:
    """process.env as runc's init sets it: each NAME=value in order, a later
    one replacing an earlier one in its place; runc's errors for the others."""
    env = {}
    for item in proc.get("env") or ():
        key, sep, value = item.partition("=")
        if not sep:
            raise ChildError(f"invalid environment variable: {_go_quote(item)}")
        if not key:
            raise ChildError(f"environment variable name can't be empty: {_go_quote(item)}")
        env[key] = value
    return env


def _go_quote(text: str) -> str:
    # Its own few lines rather than engine.build_gofmt's quote: this runs in
    # the container's init after pivot_root, where no module can be imported.
    out = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return f'"{out}"'


def _passwd_home(uid: int) -> str:
    """The home of ``uid`` in the container's /etc/passwd ("/" if it has none)."""
    try:
        with open("/etc/passwd", "rb") as f:
            for line in f.read().decode(errors="replace").splitlines():
                parts = line.split(":")
                if len(parts) >= 6 and parts[2] == str(uid):
                    return parts[5]
    except OSError:
        pass
    return "/"


def _fix_stdio_owner(uid: int) -> None:
    """runc's fixStdioPermissions: 0, 1 and 2 belong to the user (their group
    kept: gid 5 on a pty from devpts), except /dev/null; refusals are ignored."""
    try:
        null = os.stat("/dev/null").st_rdev
    except OSError as e:
        raise ChildError(f"stat /dev/null: {os.strerror(e.errno).lower()}") from None
    for fd in (0, 1, 2):
        try:
            st = os.fstat(fd)
        except OSError:
            continue
        if st.st_uid == uid or st.st_rdev == null:
            continue
        try:
            os.fchown(fd, uid, st.st_gid)
        except OSError as e:
            if e.errno not in (22, 1, 30):  # EINVAL, EPERM, EROFS
                raise ChildError(f"fchown fd {fd}: {os.strerror(e.errno).lower()}") from None


def _switch_user(cfg: ChildConfig, proc: dict, env: dict) -> None:
    """runc's finalizeNamespace: stdio's owner, bounding set, groups, user,
    HOME, cwd, then the capability sets (unknown names skipped, with runc's
    warning)."""
    user = proc.get("user") or {}
    uid, gid = user.get("uid", 0), user.get("gid", 0)
    # no capabilities object is no capability at all, as with runc
    caps = proc.get("capabilities") or {}
    cwd = proc.get("cwd") or "/"
    unknown = linux.unknown_capabilities(caps)
    if unknown:
        _log(cfg, "warning", "ignoring unknown or unavailable capabilities: "
                             f"[{' '.join(sorted(unknown))}]")
    linux.drop_bounding_set(caps)
    _fix_stdio_owner(uid)
    chdir_done = _chdir(cwd, late=False)
    # keep the permitted set across setuid; capset below trims it to the spec
    linux.prctl(linux.PR_SET_KEEPCAPS, 1)
    try:
        # runc keeps each group once (the kernel sorts them)
        os.setgroups(list(dict.fromkeys(user.get("additionalGids") or ())))
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
    except OSError as e:
        raise ChildError(f"setup user {uid}:{gid}: {os.strerror(e.errno).lower()}") from None
    if not env.get("HOME"):
        env["HOME"] = _passwd_home(uid)
    if not chdir_done:
        _chdir(cwd, late=True)
    linux.prctl(linux.PR_SET_KEEPCAPS, 0)
    if cfg.fifo_fd >= 0:
        # the container's first process only: an exec'd one keeps the caller's
        # umask (runc's setns init sets none)
        os.umask(user["umask"] if user.get("umask") is not None else 0o022)
    try:
        linux.apply_capabilities(caps)
    except OSError as e:
        raise ChildError(f"unable to apply caps: {os.strerror(e.errno).lower()}",
                         init=False) from None


def _chdir(cwd: str, late: bool) -> bool:
    """chdir as root first; if that is refused, once more as the user (runc)."""
    try:
        os.chdir(cwd)
        return True
    except PermissionError:
        if late:
            raise ChildError(f'chdir to cwd ("{cwd}") set in config.json failed: permission denied',
                             "InvalidArgument") from None
        return False
    except OSError as e:
        raise ChildError(f'chdir to cwd ("{cwd}") set in config.json failed: '
                         f'{os.strerror(e.errno).lower()}', "InvalidArgument") from None


def _executable(path: str) -> OSError | None:
    """Go's findExecutable: None, or why ``path`` cannot be run (a directory
    or a file without an x bit is "permission denied")."""
    try:
        st = os.stat(path)
    except OSError as e:
        return OSError(e.errno, f"stat {path}: {os.strerror(e.errno).lower()}")
    if stat.S_ISDIR(st.st_mode) or not st.st_mode & 0o111:
        return OSError(13, "permission denied")
    return None


def _lookpath(name: str, env: dict) -> str:
    """Go's exec.LookPath with the container's PATH, so that a missing program
    fails create (not start), with Go's words, as with runc."""
    if "/" in name:
        why = _executable(name)
        if why is not None:
            raise ChildError(f'exec: {_go_quote(name)}: {why.strerror}', "InvalidArgument",
                             init=False)
        return name
    for d in (env.get("PATH") or "").split(":"):
        path = os.path.join(d or ".", name)
        if _executable(path) is None:
            return path
    raise ChildError(f'exec: {_go_quote(name)}: executable file not found in $PATH',
                     "InvalidArgument", init=False)


def _make_cwd(cwd: str) -> None:
    """runc makes the process's cwd when the rootfs lacks it (0755), inside the jail."""
    try:
        os.makedirs(cwd, 0o755, exist_ok=True)
    except FileExistsError:
        # Go's MkdirAll: something else there is "not a directory", a
        # dangling symlink "file exists"
        if os.path.exists(cwd):
            if not os.path.isdir(cwd):
                raise ChildError(f"mkdir {cwd}: not a directory") from None
        else:
            raise ChildError(f"mkdir {cwd}: file exists") from None
    except OSError as e:
        raise ChildError(f"mkdir {cwd}: {os.strerror(e.errno).lower()}") from None


#: the signals that end a Go program that does not catch them (its runtime's
#: table: quietly for HUP, INT, TERM, with a dump for the others), status 2
_GO_ENDS = (signal.SIGHUP, signal.SIGINT, signal.SIGTERM, signal.SIGQUIT, signal.SIGILL,
            signal.SIGTRAP, signal.SIGABRT, signal.SIGSYS)


def _end_as_go(_sig, _frame) -> None:
    os._exit(2)


def _wait_for_start(fifo_fd: int) -> None:
    """Block in open(O_WRONLY) on exec.fifo until ``start`` opens it for reading.

    The FIFO is reopened through the O_PATH descriptor taken before fork
    (/proc/self/fd/N, as runc does), so no host path is needed after pivot_root.
    """
    path = f"/proc/self/fd/{fifo_fd}"
    # runc's init is a Go program, which a HUP, INT or TERM (or a QUIT, ABRT...)
    # ends while it waits here, PID 1 of its namespace or not: the container
    # is then stopped, and a start says so
    try:
        for sig in _GO_ENDS:
            signal.signal(sig, _end_as_go)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _GO_ENDS)
    except (ValueError, OSError):
        pass
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except OSError as e:
        raise ChildError(f"open exec fifo {path}: {os.strerror(e.errno).lower()}") from None
    finally:
        signal.pthread_sigmask(signal.SIG_BLOCK, _GO_ENDS)
        for sig in _GO_ENDS:
            try:
                signal.signal(sig, signal.SIG_DFL)
            except (ValueError, OSError):
                pass
    try:
        os.write(fd, b"0")
    finally:
        os.close(fd)
        os.close(fifo_fd)


def _close_fds(preserve: int) -> None:
    """Leave only 0, 1, 2 and the preserved fds (runc closes the rest the same
    way, CVE-2024-21626: no descriptor of the host may reach the container)."""
    first = 3 + preserve
    os.closerange(first, 1 << 20)
    for fd in range(3, first):
        try:
            os.set_inheritable(fd, True)
        except OSError:
            pass


def _exec(args, env: dict) -> None:
    """execve the program (``args``: its path, found at create, then its argv);
    if that fails now, runc's init writes "exec <path>: <error>" to the
    container's stderr and exits 1."""
    try:
        os.execve(args[0], list(args[1:]), env)
    except OSError as e:
        try:
            os.write(2, f"exec {args[0]}: {os.strerror(e.errno).lower()}\n".encode())
        except OSError:
            pass
        os._exit(1)
