"""One run of an OCI runtime binary with runc's command line, and what it said.

A verb is one process: ``BINARY --root ROOT [--systemd-cgroup] --log LOG
--log-format json VERB ARGS...``.  What the binary reports goes to the log
as JSON lines (runc, crun and pallet-runc all write their errors there),
because for create and exec its stdio is the container's, not ours to read.
The log, and the files a verb reads (exec's ``--process``, update's
``--resources``), are memfds named by ``/proc/PID/fd/N``: nothing is left on
disk whatever happens, and the container never inherits them (close-on-exec;
the binary opens the path itself).

The binary is started with ``posix_spawn`` and waited for through a pidfd
with a deadline: no ``subprocess`` (its import costs a shim helper several
milliseconds), and nobody waits for a binary that hangs.
"""
from __future__ import annotations

import fcntl
import json
import os
import select
import signal

from pallet.core import errors

#: the signals Python ignores (SIGPIPE, SIGXFSZ) would stay ignored in the
#: container, and a blocked SIGCHLD would stay blocked: the binary starts
#: with every signal at its default and none blocked, as Go's exec does
_DEFAULT_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGCHLD)

#: the binary's message -> the core error class it means (runc's, crun's and
#: pallet-runc's wording; the first match wins)
_KINDS = (
    (errors.AlreadyExists, ("already exists", "container with id exists")),
    (errors.NotFound, ("does not exist", "container not found")),
    (errors.InvalidArgument, ("invalid container id", "invalid id format",
                              "args must not be empty", "invalid signal", "unknown signal")),
    (errors.FailedPrecondition, ("not running", "not paused", "not stopped", "already running",
                                 "has stopped", "cannot exec in", "cannot start",
                                 "cannot delete", "cannot pause", "cannot resume",
                                 "a stopped container")),
    (errors.NotImplementedYet, ("unknown command", "no help topic")),
)


def find_binary(name: str) -> str:
    """The executable ``name`` (searched on PATH unless it holds a slash), absolute."""
    import shutil

    path = shutil.which(name)
    if path is None:
        raise errors.NotFound(f"runtime binary {name}: executable file not found"
                              + ("" if "/" in name else " in $PATH"))
    return os.path.abspath(path)


def memfd(name: str, data: bytes = b"") -> int:
    """An anonymous file holding ``data``, for the binary to open by :func:`fd_path`."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    return fd


def fd_path(fd: int) -> str:
    """A path another process opens to reach our ``fd`` (a memfd: its own file)."""
    return f"/proc/{os.getpid()}/fd/{fd}"


def read_all(fd: int) -> bytes:
    """What a memfd holds."""
    return os.pread(fd, os.fstat(fd).st_size, 0)


class Result:
    """What a run left: its wait status, its stdout and stderr (when they were ours)."""

    def __init__(self, status: int, out: bytes, err: bytes):
        self.status, self.out, self.err = status, out, err

    @property
    def ok(self) -> bool:
        return os.WIFEXITED(self.status) and os.WEXITSTATUS(self.status) == 0

    def describe(self) -> str:
        if os.WIFSIGNALED(self.status):
            return f"killed by signal {os.WTERMSIG(self.status)}"
        return f"exit status {os.waitstatus_to_exitcode(self.status)}"


def run(argv: list[str], *, stdio=None, preserve_fds: int = 0, timeout: float = 60.0) -> Result:
    """Run ``argv`` and wait for it (at most ``timeout`` seconds: then it is killed).

    ``stdio`` is the container's stdin, stdout and stderr for create and
    exec (None in it: /dev/null), which the binary hands to the process it
    starts; without it the binary writes to pipes of ours.  The caller's
    file descriptors 3 .. 2+``preserve_fds`` are passed on as they are
    (runc's ``--preserve-fds``); nothing else of ours is inherited.
    """
    kept = _inherit(preserve_fds)
    opened: list[int] = []
    try:
        devnull = _track(opened, os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC))
        pipes: dict[int, bytearray] = {}
        if stdio is None:
            out_r, out_w = (_track(opened, fd) for fd in os.pipe2(os.O_CLOEXEC))
            err_r, err_w = (_track(opened, fd) for fd in os.pipe2(os.O_CLOEXEC))
            sources = [devnull, out_w, err_w]
            pipes = {out_r: bytearray(), err_r: bytearray()}
        else:
            sources = [devnull if fd is None else fd for fd in stdio]
        # copies above every descriptor the binary keeps, so that putting one
        # on 0, 1 or 2 never overwrites the source of another
        low = 3 + preserve_fds
        actions = [(os.POSIX_SPAWN_DUP2,
                    _track(opened, fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, low)), target)
                   for target, fd in enumerate(sources)]
        try:
            pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=actions,
                                 setsigmask=(), setsigdef=_DEFAULT_SIGNALS)
        except OSError as e:
            raise errors.PalletError(f"run {argv[0]}: {(e.strerror or str(e)).lower()}") from None
        for fd in [devnull] + [a[1] for a in actions] + ([out_w, err_w] if pipes else []):
            opened.remove(fd)
            os.close(fd)
        status = _wait(pid, pipes, timeout, argv)
        out, err = (bytes(b) for b in pipes.values()) if pipes else (b"", b"")
        return Result(status, out, err)
    finally:
        for fd in opened:
            os.close(fd)
        for fd, inheritable in kept:
            os.set_inheritable(fd, inheritable)


def _track(opened: list[int], fd: int) -> int:
    opened.append(fd)
    return fd


def _inherit(count: int) -> list[tuple[int, bool]]:
    """Make fds 3 .. 2+count inheritable; their previous flags, to restore."""
    kept = []
    try:
        for fd in range(3, 3 + count):
            try:
                kept.append((fd, os.get_inheritable(fd)))
            except OSError:
                raise errors.InvalidArgument(f"preserve fds: file descriptor {fd} is not open") \
                    from None
            os.set_inheritable(fd, True)
    except BaseException:
        for fd, inheritable in kept:
            os.set_inheritable(fd, inheritable)
        raise
    return kept


def _wait(pid: int, pipes: dict[int, bytearray], timeout: float, argv) -> int:
    """Read the pipes until the binary exits; its wait status."""
    import time

    pidfd = os.pidfd_open(pid)
    try:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        for fd in pipes:
            poller.register(fd, select.POLLIN)
        deadline = time.monotonic() + timeout
        exited = False
        while not exited:
            left = deadline - time.monotonic()
            if left <= 0:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                raise errors.Unavailable(f"{os.path.basename(argv[0])} {_verb(argv)}: "
                                         f"no answer within {timeout:g}s")
            for fd, _event in poller.poll(left * 1000):
                if fd == pidfd:
                    exited = True
                elif not _read_some(fd, pipes[fd]):
                    poller.unregister(fd)
        # what the binary wrote before it exited is in the pipes; a process it
        # left behind may hold them open, so read what is there, not to EOF
        for fd, buf in pipes.items():
            os.set_blocking(fd, False)
            while _read_some(fd, buf):
                pass
        return os.waitpid(pid, 0)[1]
    finally:
        os.close(pidfd)


def _read_some(fd: int, buf: bytearray) -> bool:
    """Append what ``fd`` has; False at EOF or when nothing is there yet."""
    try:
        chunk = os.read(fd, 65536)
    except BlockingIOError:
        return False
    buf += chunk
    return bool(chunk)


def _verb(argv) -> str:
    global_with_value = {"--root", "--log", "--log-format", "--criu", "--rootless"}
    i = 1
    while i < len(argv) and argv[i].startswith("-"):
        i += 2 if argv[i] in global_with_value else 1
    return argv[i] if i < len(argv) else ""


def error_message(log: bytes, err: bytes) -> str:
    """The binary's error: the last error of its JSON log, else its stderr's last line."""
    for line in reversed(log.splitlines()):
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("level") in ("error", "fatal") and entry.get("msg"):
            return str(entry["msg"]).strip()
    lines = [line.strip() for line in err.decode(errors="replace").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def error_for(message: str, *, root: str = "", verb: str = "") -> errors.PalletError:
    """The core error class a binary's message means, carrying that message."""
    low = message.lower()
    for kind, needles in _KINDS:
        # at create the container cannot be missing: what does not exist is
        # in the bundle (runc's "rootfs (...) does not exist")
        if kind is errors.NotFound and verb == "create":
            continue
        if any(n in low for n in needles):
            return kind(message)
    # crun names the state file it could not open: the container does not exist
    if verb != "create" and root and root in message and "no such file or directory" in low:
        return errors.NotFound(message)
    return errors.PalletError(message)
