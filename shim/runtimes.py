"""How the shim runs its container: the runtime role's object, in forked helpers.

:class:`ForkedRuntime` gives the shim an asynchronous surface (each call
returns a :class:`~.loop.Deferred`): ``create``, ``start``, ``kill``,
``delete``, ``exec``, ``pause``, ``resume`` and ``update``.  It calls the
object of the ``runtime`` role (``pallet.core.contracts.Runtime``; see
:mod:`.runtime_loader` for how the shim gets it) in a child forked for the
call, which writes the result on a pipe and exits.  The runtime's code then
never runs in the long-lived shim, whose pages stay shared with the zygote
it was forked from; a crash in the runtime costs a helper, not the shim.

The container's processes are forked by someone else (the helper running
runtime_ns, or the binary runtime_oci runs: runc, crun, pallet-runc) who
exits right after; being a child subreaper, the shim then inherits them as
its children and reaps them itself, exactly as containerd's runc shim does
with runc.
"""
from __future__ import annotations

import json
import os

from pallet.core import errors

from pallet.shim import heap
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
    calls of an in-process runtime (runtime_ns) run in the shim itself:
    ``kill`` (a signal) and ``start`` when the spec has no poststart hook
    (opening the exec FIFO); a helper would cost them a fork, its page faults
    and its exit, several milliseconds.

    A runtime object with a ``binary`` (runtime_oci) runs a program for every
    call: all of them go to helpers, never blocking the shim's loop, and the
    task's updates go to it too (:attr:`binary` tells the task service) rather
    than to the cgroup files, whose layout is the binary's business."""

    def __init__(self, loop, children: Children, runtime, log=None):
        self.loop = loop
        self.children = children
        self.runtime = runtime      # the role's object (create, start, kill, delete, exec...)
        self.log = log
        self.name = getattr(runtime, "name", "runtime")
        self.binary = getattr(runtime, "binary", None)
        self._hooked_start: set[str] = set()   # ids whose spec has poststart hooks

    def _inline(self, method: str, *args, **kwargs) -> Deferred:
        d = Deferred()
        _settle(d, _answer(self.runtime, method, *args, **kwargs))
        return d

    def _call(self, method: str, *args, **kwargs) -> Deferred:
        d = Deferred()
        r, w = os.pipe2(os.O_CLOEXEC)
        try:
            pid = heap.fork()  # the shim is single-threaded
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
        if not self.binary:
            self._note_hooks(id, bundle)
        return self._call("create", id, bundle, stdin=stdin, stdout=stdout, stderr=stderr,
                          terminal_socket=console_socket, no_pivot=no_pivot)

    def _note_hooks(self, id, bundle) -> None:
        try:
            with open(os.path.join(bundle, "config.json"), "rb") as f:
                hooks = json.load(f).get("hooks") or {}
        except (OSError, ValueError, AttributeError):
            hooks = {"poststart": True}  # unknown: the runtime will say; start in a helper
        if hooks.get("poststart"):
            self._hooked_start.add(id)
        else:
            self._hooked_start.discard(id)

    def start(self, id) -> Deferred:
        if self.binary or id in self._hooked_start:
            return self._call("start", id)  # hooks run programs: not on the shim's loop
        return self._inline("start", id)

    def kill(self, id, signal: int, all: bool = False) -> Deferred:
        if self.binary:
            return self._call("kill", id, signal, all=all)
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
        return self._call("update", id, resources)
