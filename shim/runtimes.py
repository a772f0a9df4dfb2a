"""How the shim runs its container: the runtime role in forked helpers, or a
runc-compatible binary.

Both backends have the same asynchronous surface (each call returns a
:class:`~.loop.Deferred`): ``create``, ``start``, ``kill``, ``delete``,
``exec``, ``pause``, ``resume`` and ``update``.  Either way the container's
processes are forked by someone else (a helper, or runc) who exits right
after; being a child subreaper, the shim then inherits them as its children
and reaps them itself, exactly as containerd's runc shim does with runc.

* :class:`ForkedRuntime` calls the object of the ``runtime`` role (runc's
  operations as a library, docs/ARCHITECTURE.md) in a child forked for the
  call, which writes the result on a pipe and exits.  The runtime's code
  then never runs in the long-lived shim, whose pages stay shared with the
  zygote it was forked from; a crash in the runtime costs a helper, not the
  shim.
* :class:`RuncBinary` runs ``BINARY --root ROOT <verb> ...``, the command
  line of runc (and crun, and pallet-runc), as containerd's runc shim does;
  chosen when the task's runtime options name a binary (``BinaryName``).
"""
from __future__ import annotations

import json
import os

from pallet.core import errors

from pallet.shim.loop import Deferred

_ERRORS = {cls.__name__: cls for cls in (
    errors.InvalidArgument, errors.NotFound, errors.AlreadyExists, errors.FailedPrecondition,
    errors.Conflict, errors.NotImplementedYet, errors.Unavailable, errors.PalletError)}


def _error_of(kind: str, message: str) -> errors.PalletError:
    return _ERRORS.get(kind, errors.PalletError)(message)


class Children:
    """The shim's record of the helper processes it forked (their exits are
    reaped by the loop and handed here before anyone else sees them)."""

    def __init__(self):
        self.helpers: dict[int, object] = {}   # pid -> callback(status)

    def claim(self, pid: int, status: int) -> bool:
        """Whether ``pid`` was a helper (its callback gets ``status``)."""
        cb = self.helpers.pop(pid, None)
        if cb is None:
            return False
        cb(status)
        return True


class _Job:
    """A child whose answer arrives on a pipe and whose exit the loop reaps.

    The job ends with the child's exit, not with EOF on the pipe: a process
    the child started (the container, waiting for Start) may hold a copy of
    the pipe's write end until it execs.  What the child wrote before it
    exited is in the pipe by then, and is read out at its exit.
    """

    def __init__(self, loop, children: Children, pid: int, out_fd: int, on_done):
        self.loop, self.pid, self.out_fd, self.on_done = loop, pid, out_fd, on_done
        self.data = bytearray()
        children.helpers[pid] = self._exited
        os.set_blocking(out_fd, False)
        loop.add_reader(out_fd, self._readable)

    def _read(self) -> bool:
        """Read what is there; False at EOF."""
        while True:
            try:
                chunk = os.read(self.out_fd, 65536)
            except BlockingIOError:
                return True
            except OSError:
                return False
            if not chunk:
                return False
            self.data += chunk

    def _readable(self) -> None:
        if not self._read():
            self.loop.remove_reader(self.out_fd)

    def _exited(self, status: int) -> None:
        self._read()
        self.loop.forget(self.out_fd)
        os.close(self.out_fd)
        self.on_done(bytes(self.data), status)


def _status_text(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


def _answer(runtime, method: str, *args, **kwargs) -> dict:
    """Call the runtime; its result or its error as a JSON-able dict."""
    try:
        return {"ok": getattr(runtime, method)(*args, **kwargs)}
    except errors.PalletError as e:
        return {"error": type(e).__name__, "message": e.message}
    except NotImplementedError as e:
        return {"error": "NotImplementedYet", "message": str(e) or "not implemented"}
    except OSError as e:
        return {"error": "PalletError", "message": f"{method}: {(e.strerror or str(e)).lower()}"}


def _settle(d: Deferred, answer) -> None:
    if "error" in answer:
        d.fail(_error_of(answer["error"], answer.get("message", "")))
    else:
        d.resolve(answer.get("ok"))


class ForkedRuntime:
    """The runtime role's object, called in a helper forked for each operation
    that runs the runtime's heavier code (create, exec, delete...).  Two short
    calls run in the shim itself: ``kill`` (a signal) and ``start`` when the
    spec has no poststart hook (opening the exec FIFO); a helper would cost
    them a fork, its page faults and its exit, several milliseconds."""

    def __init__(self, loop, children: Children, runtime, log=None):
        self.loop = loop
        self.children = children
        self.runtime = runtime      # the role's object (create, start, kill, delete, exec...)
        self.log = log
        self.name = "in-process runtime"
        self._hooked_start: set[str] = set()   # ids whose spec has poststart hooks

    def _inline(self, method: str, *args, **kwargs) -> Deferred:
        d = Deferred()
        _settle(d, _answer(self.runtime, method, *args, **kwargs))
        return d

    def _call(self, method: str, *args, **kwargs) -> Deferred:
        d = Deferred()
        r, w = os.pipe2(os.O_CLOEXEC)
        try:
            pid = os.fork()
        except OSError as e:
            os.close(r)
            os.close(w)
            d.fail(errors.PalletError(f"fork runtime helper: {e.strerror}"))
            return d
        if pid == 0:  # the helper
            code = 0
            try:
                os.close(r)
                self.loop.unwatch_children_in_child()
                try:
                    answer = _answer(self.runtime, method, *args, **kwargs)
                except BaseException as e:  # noqa: BLE001 - reported to the shim, not lost
                    answer = {"error": "PalletError",
                              "message": f"{method}: {type(e).__name__}: {e}"}
                os.write(w, json.dumps(answer).encode())
            except BaseException:  # noqa: BLE001 - nothing must escape into the shim's code
                code = 1
            finally:
                os._exit(code)
        os.close(w)

        def done(data: bytes, status: int) -> None:
            try:
                answer = json.loads(data) if data else None
            except ValueError:
                answer = None
            if not isinstance(answer, dict):
                d.fail(errors.PalletError(f"runtime helper for {method} died "
                                          f"({_status_text(status)})"))
            else:
                _settle(d, answer)
        _Job(self.loop, self.children, pid, r, done)
        return d

    def create(self, id, bundle, stdio, console_socket=None, *, no_pivot=False) -> Deferred:
        stdin, stdout, stderr = stdio
        try:
            with open(os.path.join(bundle, "config.json"), "rb") as f:
                hooks = json.load(f).get("hooks") or {}
        except (OSError, ValueError, AttributeError):
            hooks = {"poststart": True}  # unknown: the runtime will say; start in a helper
        if hooks.get("poststart"):
            self._hooked_start.add(id)
        else:
            self._hooked_start.discard(id)
        return self._call("create", id, bundle, stdin=stdin, stdout=stdout, stderr=stderr,
                          terminal_socket=console_socket, no_pivot=no_pivot)

    def start(self, id) -> Deferred:
        if id in self._hooked_start:
            return self._call("start", id)  # hooks run programs: not on the shim's loop
        return self._inline("start", id)

    def kill(self, id, signal: int, all: bool = False) -> Deferred:
        return self._inline("kill", id, signal, all=all)

    def delete(self, id, force: bool = False) -> Deferred:
        return self._call("delete", id, force=force)

    def exec(self, id, process: dict, stdio, console_socket=None) -> Deferred:
        stdin, stdout, stderr = stdio
        return self._call("exec", id, process, stdin=stdin, stdout=stdout, stderr=stderr,
                          terminal_socket=console_socket)

    def pause(self, id) -> Deferred:
        return self._call("pause", id)

    def resume(self, id) -> Deferred:
        return self._call("resume", id)

    def update(self, id, resources: dict) -> Deferred:
        if not hasattr(self.runtime, "update"):
            d = Deferred()
            d.fail(errors.NotImplementedYet("the runtime has no update"))
            return d
        return self._call("update", id, resources)


def find_binary(name: str) -> str:
    """An executable by name (PATH is searched) or path."""
    if "/" in name:
        if os.access(name, os.X_OK):
            return name
        raise errors.NotFound(f"runtime binary {name}: no such file or executable")
    for d in (os.environ.get("PATH") or "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:"
              "/sbin:/bin").split(":"):
        path = os.path.join(d or ".", name)
        if os.access(path, os.X_OK) and os.path.isfile(path):
            return path
    raise errors.NotFound(f"runtime binary {name!r}: executable file not found in $PATH")


class RuncBinary:
    """A runc-compatible command line (runc, crun, pallet-runc), run from the loop."""

    def __init__(self, loop, children: Children, binary: str, root: str, *,
                 systemd_cgroup: bool = False, bundle: str = "", log=None):
        self.loop = loop
        self.children = children
        self.binary = find_binary(binary)
        self.root = root
        self.systemd_cgroup = systemd_cgroup
        self.bundle = bundle
        self.log = log
        self.name = self.binary

    def _argv(self, *args) -> list:
        argv = [self.binary, "--root", self.root]
        if self.bundle:
            argv += ["--log", os.path.join(self.bundle, "log.json"), "--log-format", "json"]
        if self.systemd_cgroup:
            argv.append("--systemd-cgroup")
        return argv + list(args)

    def _run(self, args, *, stdio=None, stdin_data: bytes | None = None,
             what: str = "") -> Deferred:
        """Run the binary; resolves to its stdout, fails with its error message.

        ``stdio`` (create, exec) are the container's own 0, 1 and 2, which
        runc hands to the process it starts: nothing of ours may be among them
        (the process would hold our pipes open), so missing ones are
        /dev/null and runc's errors are read from its ``--log`` file instead.
        """
        d = Deferred()
        devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        in_r = in_w = -1
        if stdio is not None:
            fds = [fd if fd is not None else devnull for fd in stdio]
        else:
            fds = [devnull, out_w, err_w]
            if stdin_data is not None:
                in_r, in_w = os.pipe2(os.O_CLOEXEC)
                fds[0] = in_r
        actions = [(os.POSIX_SPAWN_DUP2, fd, i) for i, fd in enumerate(fds)]
        try:
            pid = os.posix_spawn(self.binary, self._argv(*args), os.environ,
                                 file_actions=actions, setsigdef=(17,))
        except OSError as e:
            for fd in (out_r, out_w, in_r, in_w, err_r, err_w, devnull):
                if fd >= 0:
                    os.close(fd)
            d.fail(errors.PalletError(f"run {self.binary}: {(e.strerror or str(e)).lower()}"))
            return d
        for fd in (out_w, in_r, err_w, devnull):
            if fd >= 0:
                os.close(fd)
        if in_w >= 0:
            try:
                os.write(in_w, stdin_data)
            except OSError:
                pass
            finally:
                os.close(in_w)
        err_box = {}

        def err_done(data: bytes, _status: int) -> None:
            err_box["data"] = data

        def out_done(data: bytes, status: int) -> None:
            if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
                d.resolve(data)
                return
            message = self._error_message(err_box.get("data", b""))
            d.fail(errors.PalletError(f"{what or args[0]}: {message or _status_text(status)}"))
        err_job = _PipeOnly(self.loop, err_r, err_done)
        _Job(self.loop, self.children, pid, out_r,
             lambda data, status: err_job.when_done(lambda: out_done(data, status)))
        return d

    def _error_message(self, stderr: bytes) -> str:
        text = ""
        if self.bundle:
            try:
                with open(os.path.join(self.bundle, "log.json"), "rb") as f:
                    lines = f.read().splitlines()
                for line in reversed(lines):
                    try:
                        entry = json.loads(line)
                    except ValueError:
                        continue
                    if entry.get("level") in ("error", "fatal"):
                        text = entry.get("msg", "")
                        break
            except OSError:
                pass
        return text or stderr.decode(errors="replace").strip()

    def create(self, id, bundle, stdio, console_socket=None, *, no_pivot=False) -> Deferred:
        pid_file = os.path.join(bundle, "init.pid")
        args = ["create", "--bundle", bundle, "--pid-file", pid_file]
        if console_socket:
            args += ["--console-socket", console_socket]
        if no_pivot:
            args.append("--no-pivot")
        return self._run(args + [id], stdio=stdio, what="create").then(
            lambda _out: _read_pid(pid_file))

    def start(self, id) -> Deferred:
        return self._run(["start", id])

    def kill(self, id, signal: int, all: bool = False) -> Deferred:
        return self._run(["kill"] + (["--all"] if all else []) + [id, str(int(signal))])

    def delete(self, id, force: bool = False) -> Deferred:
        return self._run(["delete"] + (["--force"] if force else []) + [id])

    def exec(self, id, process: dict, stdio, console_socket=None) -> Deferred:
        base = self.bundle or self.root
        tag = os.urandom(4).hex()
        spec_path = os.path.join(base, f"exec-{tag}.json")
        pid_file = os.path.join(base, f"exec-{tag}.pid")
        with open(spec_path, "w") as f:
            json.dump(process, f)
        args = ["exec", "--process", spec_path, "--detach", "--pid-file", pid_file]
        if console_socket:
            args += ["--console-socket", console_socket]

        def cleanup(value):
            for p in (spec_path, pid_file):
                try:
                    os.unlink(p)
                except OSError:
                    pass
            return value

        d = self._run(args + [id], stdio=stdio, what="exec").then(lambda _o: _read_pid(pid_file))
        d.add_callback(lambda _d: cleanup(None))
        return d

    def pause(self, id) -> Deferred:
        return self._run(["pause", id])

    def resume(self, id) -> Deferred:
        return self._run(["resume", id])

    def update(self, id, resources: dict) -> Deferred:
        return self._run(["update", "--resources", "-", id],
                         stdin_data=json.dumps(resources).encode())


class _PipeOnly:
    """Reads a pipe to EOF on the loop; ``when_done(fn)`` runs ``fn`` after it."""

    def __init__(self, loop, fd: int, on_done):
        self.loop, self.fd, self.on_done = loop, fd, on_done
        self.data = bytearray()
        self.finished = False
        self.waiters = []
        os.set_blocking(fd, False)
        loop.add_reader(fd, self._readable)

    def _readable(self) -> None:
        try:
            chunk = os.read(self.fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if chunk:
            self.data += chunk
            return
        self.loop.forget(self.fd)
        os.close(self.fd)
        self.finished = True
        self.on_done(bytes(self.data), 0)
        for fn in self.waiters:
            fn()

    def when_done(self, fn) -> None:
        if self.finished:
            fn()
        else:
            self.waiters.append(fn)


def _read_pid(path: str) -> int:
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError) as e:
        raise errors.PalletError(f"read pid file {path}: {e}") from None
