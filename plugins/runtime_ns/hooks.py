"""OCI hooks (config.json ``hooks``): run each with the state JSON on stdin.

When each kind runs (runtime-spec config.md "POSIX-platform Hooks"):

* ``prestart`` (deprecated) and ``createRuntime``: by the runtime, in its own
  namespaces, once the container's namespaces exist and before pivot_root
  (the container process waits meanwhile);
* ``createContainer``: by the container process, in the container's
  namespaces, before pivot_root (so the host's paths still resolve);
* ``startContainer``: by the container process at ``start``, after
  pivot_root, just before the user program;
* ``poststart``: by the runtime, once the user program runs, before
  ``start`` returns; ``poststop``: by the runtime in ``delete``.

A hook that exits non-zero or outlives its ``timeout`` (seconds; killed) is
an error; for prestart, createRuntime, createContainer and startContainer
the container is not started.  Nothing here imports lazily: the container
process runs it after pivot_root.
"""
from __future__ import annotations

import os
import select
import time

from pallet.plugins.runtime_ns import _jsonlite as json


class HookError(Exception):
    """A hook failed; the message names it."""


def state_json(spec: dict, cid: str, status: str, pid: int, bundle: str) -> bytes:
    return json.dumps({"ociVersion": spec.get("ociVersion", "1.0.2"), "id": cid,
                       "status": status, "pid": pid, "bundle": bundle,
                       "annotations": spec.get("annotations") or {}}).encode()


def run_all(spec: dict, kind: str, state: bytes) -> None:
    for i, hook in enumerate((spec.get("hooks") or {}).get(kind) or ()):
        run_one(hook, state, f"{kind}[{i}]")


def run_one(hook: dict, state: bytes, name: str = "hook") -> None:
    """fork+exec ``hook``, its stdin the state, its output to our stderr."""
    path = hook.get("path") or ""
    args = list(hook.get("args") or [path])
    env = list(hook.get("env") or ())
    timeout = hook.get("timeout")
    r, w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        try:
            os.dup2(r, 0)
            devnull = os.open("/dev/null", os.O_WRONLY)
            os.dup2(2, 1) if _valid(2) else os.dup2(devnull, 1)
            os.execve(path, args, dict(e.split("=", 1) for e in env if "=" in e))
        except BaseException as e:  # noqa: BLE001  (nothing may return into the caller)
            try:
                os.write(2, f"hook {path}: {e}\n".encode())
            finally:
                os._exit(127)
    os.close(r)
    try:
        # a hook that does not read its stdin must not block us: write what fits
        select.select([], [w], [], 0)
        os.set_blocking(w, False)
        try:
            os.write(w, state)
        except (BlockingIOError, BrokenPipeError):
            pass
    finally:
        os.close(w)
    deadline = None if not timeout else time.monotonic() + timeout
    while True:
        got, status = os.waitpid(pid, os.WNOHANG)
        if got == pid:
            break
        if deadline is not None and time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            raise HookError(f"{name} {path}: timeout after {timeout}s")
        time.sleep(0.002)
    if os.WIFSIGNALED(status):
        raise HookError(f"{name} {path}: killed by signal {os.WTERMSIG(status)}")
    if os.WEXITSTATUS(status) != 0:
        raise HookError(f"{name} {path}: exit status {os.WEXITSTATUS(status)}")


def _valid(fd: int) -> bool:
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False
