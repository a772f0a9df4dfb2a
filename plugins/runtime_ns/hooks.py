"""OCI hooks (config.json ``hooks``): run each with the state JSON on stdin.

When each kind runs, as runc 1.1 runs them (which is not always where the
runtime spec puts them, config.md "POSIX-platform Hooks"):

* ``prestart`` (deprecated) and ``createRuntime``: by the runtime, in its own
  namespaces, once the container's namespaces exist and before pivot_root;
* ``createContainer``: by the container process, in the container's
  namespaces, before pivot_root, from the rootfs directory;
* ``startContainer``: by the container process at ``start``, with the
  container's environment and seccomp filter, just before the program;
* ``poststart``: by the runtime -- runc 1.1 runs them at the end of
  ``create``, not after ``start`` as the spec says: we follow runc;
* ``poststop``: by the runtime in ``delete``.

A hook inherits the environment of whoever runs it when it has no ``env``
of its own (Go's exec.Cmd with a nil Env).  Its output is collected: a hook
that fails (non-zero status, a signal, ``timeout`` seconds passed) is an
error that quotes it, in runc's words.  Nothing here imports lazily: the
container process runs it after pivot_root.
"""
from __future__ import annotations

import os
import select
import time

from pallet.oci import jsonlite as json


class HookError(Exception):
    """A hook failed; the message is runc's."""


def state_json(spec: dict, cid: str, status: str, pid: int, bundle: str) -> bytes:
    state = {"ociVersion": spec.get("ociVersion", "1.0.2"), "id": cid, "status": status}
    if pid:
        state["pid"] = pid
    state["bundle"] = bundle
    if spec.get("annotations"):
        state["annotations"] = spec["annotations"]
    return json.go_dumps(state).encode()


def run_all(spec: dict, kind: str, state: bytes, env: dict | None = None) -> None:
    """Run the ``kind`` hooks in order; the first failure raises HookError.
    ``env``: the environment a hook without its own inherits (default ours)."""
    for i, hook in enumerate((spec.get("hooks") or {}).get(kind) or ()):
        try:
            run_one(hook, state, env)
        except HookError as e:
            raise HookError(f"error running hook #{i}: {e}") from None


def run_one(hook: dict, state: bytes, env: dict | None = None) -> None:
    """fork+exec ``hook``: the state on its stdin, its output collected."""
    path = hook.get("path") or ""
    args = list(hook.get("args") or [path])
    if hook.get("env") is not None:
        env = dict(e.split("=", 1) for e in hook["env"] if "=" in e)
    elif env is None:
        env = dict(os.environ)
    timeout = hook.get("timeout")
    in_r, in_w = os.pipe2(os.O_CLOEXEC)
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    report_r, report_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        try:
            os.dup2(in_r, 0)
            os.dup2(out_w, 1)
            os.dup2(err_w, 2)
            os.execve(path, args, env)
        except OSError as e:
            os.write(report_w, f"fork/exec {path}: {os.strerror(e.errno).lower()}".encode())
        finally:
            os._exit(127)
    for fd in (in_r, out_w, err_w, report_w):
        os.close(fd)
    failed = os.read(report_r, 4096).decode(errors="replace")
    os.close(report_r)
    if failed:
        for fd in (in_w, out_r, err_r):
            os.close(fd)
        os.waitpid(pid, 0)
        raise HookError(failed)
    out, err, status = _communicate(pid, in_w, out_r, err_r, state, timeout)
    if status is None:
        raise HookError(f"hook ran past specified timeout of {float(timeout):.1f}s")
    if status != 0:
        why = f"signal: {_signal_name(-status)}" if status < 0 else f"exit status {status}"
        raise HookError(f"error running hook: {why}, stdout: {out.decode(errors='replace')}, "
                        f"stderr: {err.decode(errors='replace')}")


def _communicate(pid, in_w, out_r, err_r, data: bytes, timeout):
    """Feed stdin, collect stdout and stderr until the hook exits; (out, err,
    status or None after a timeout: the hook is killed)."""
    deadline = None if not timeout else time.monotonic() + timeout
    chunks = {out_r: [], err_r: []}
    os.set_blocking(in_w, False)
    readers = [out_r, err_r]
    writer = [in_w]
    status = None
    while True:
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        if readers or writer:
            ready, writable, _ = select.select(readers, writer, [], min(left, 0.05)
                                               if left is not None else 0.05)
        else:
            ready, writable = [], []
            time.sleep(0.002)
        for fd in writable:
            try:
                data = data[os.write(fd, data):]
            except (BlockingIOError, BrokenPipeError):
                data = b"" if not data else data
            if not data:
                os.close(in_w)
                writer = []
        for fd in ready:
            chunk = os.read(fd, 65536)
            if chunk:
                chunks[fd].append(chunk)
            else:
                readers.remove(fd)
        if status is None:
            got, raw = os.waitpid(pid, os.WNOHANG)
            if got == pid:
                status = os.waitstatus_to_exitcode(raw)
        if status is not None and not readers:
            break
        if deadline is not None and time.monotonic() > deadline and status is None:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            status = None
            break
    for fd in [in_w] * bool(writer) + [out_r, err_r]:
        os.close(fd)
    return b"".join(chunks[out_r]), b"".join(chunks[err_r]), status


def _signal_name(sig: int) -> str:
    """Go's name of a signal in an exit error (``killed``, ``terminated``)."""
    import _signal
    try:
        return _signal.strsignal(sig).lower()
    except (ValueError, AttributeError):
        return f"signal {sig}"
