"""Starting shims from pallet-containerd.

``start_shim(namespace, id, bundle, containerd_address, paths)`` returns the
``unix://`` address of a detached, running shim for the task: a new one, or
the running shim of the task's group (a Kubernetes pod's: ``main.shim_group``).

pallet-containerd is a multi-threaded grpc process, which must not fork
without exec.  Two ways:

* baseline: run ``pallet-shim ... start`` (fork+exec, a new interpreter per
  shim), exactly as containerd runs its shims;
* fast path: the zygote (``pallet-shim -socket PATH zygote``, see zygote.py),
  one per pallet-containerd state directory, listening on
  ``{state}/s/zygote``.  It is found again by a restarted pallet-containerd,
  since it outlives it (it is the parent of the shims).  For each request it
  forks a shim, which shares the zygote's pages copy-on-write.  If the
  zygote cannot be reached or started, ``start_shim`` falls back to the
  baseline.

The zygote speaks one JSON object per line: the request ``{"namespace",
"id", "bundle", "address", "socket", "runtime_root", "ttrpc_address",
"debug"}`` and the answer ``{"address", "pid"}`` or ``{"error"}``.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading

from pallet.core import errors

_SHIM_MODULE = "pallet.shim.main"


def shim_command() -> list[str]:
    """How to run pallet-shim: the console script beside our interpreter, else ``-m``."""
    here = os.path.join(os.path.dirname(sys.executable), "pallet-shim")
    if os.access(here, os.X_OK):
        return [sys.executable, here]
    found = shutil.which("pallet-shim")
    if found:
        return [found]
    return [sys.executable, "-m", _SHIM_MODULE]


def shim_socket(namespace: str, id: str, bundle: str, paths) -> str:
    """Where the shim of task ``id`` listens: the socket of its shim group
    (``main.shim_group``: the pod's for a container of a Kubernetes pod)."""
    from pallet.shim.main import shim_group

    return paths.shim_socket(namespace, shim_group(bundle, id))


def _shim_env(namespace: str, id: str, containerd_address: str, paths, bundle: str) -> dict:
    env = dict(os.environ)
    env.update({
        "TTRPC_ADDRESS": containerd_address + ".ttrpc",
        "GRPC_ADDRESS": containerd_address,
        "NAMESPACE": namespace,
        "PALLET_SHIM_SOCKET": shim_socket(namespace, id, bundle, paths),
        "PALLET_RUNTIME_ROOT": os.path.join(paths.runtime_root, namespace),
    })
    env.update(_roots_env(paths))
    return env


def _roots_env(paths) -> dict:
    """pallet-containerd's roots, for the kernel the shims load their runtime role with."""
    return {"PALLET_CONTAINERD_ROOT": paths.containerd_root,
            "PALLET_CONTAINERD_STATE": paths.containerd_state}


def zygote_socket(paths) -> str:
    """Where the zygote of this pallet-containerd listens."""
    return os.path.join(paths.containerd_state, "s", "zygote")


def exec_start_shim(namespace: str, id: str, bundle: str, containerd_address: str, paths,
                    *, debug: bool = False, timeout: float = 30.0) -> str:
    """The baseline: ``pallet-shim -namespace NS -id ID -address A start`` in the bundle."""
    argv = shim_command() + ["-namespace", namespace, "-id", id, "-address", containerd_address,
                             "-publish-binary", shim_command()[-1]]
    if debug:
        argv.append("-debug")
    argv.append("start")
    try:
        proc = subprocess.run(argv, cwd=bundle, env=_shim_env(namespace, id, containerd_address,
                                                               paths, bundle),
                              stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise errors.Unavailable(f"start shim for task {id}: no answer after {timeout:g}s") from None
    except OSError as e:
        raise errors.PalletError(f"start shim for task {id}: {e.strerror or e}") from None
    out = proc.stdout.decode(errors="replace").strip()
    if proc.returncode != 0 or not out.startswith("unix://"):
        why = proc.stderr.decode(errors="replace").strip() or out or f"exit status {proc.returncode}"
        prefix = "pallet-shim: "
        raise errors.PalletError(f"start shim for task {id}: "
                                 f"{why[len(prefix):] if why.startswith(prefix) else why}")
    return out


# --- zygote (client side) --------------------------------------------------------------

def _connect(path: str, timeout: float):
    import socket

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        raise
    return sock


class Zygote:
    """A connection to the zygote of one state directory (started if none answers)."""

    def __init__(self, paths, *, start_timeout: float = 15.0):
        import time

        self.path = zygote_socket(paths)
        self.proc = None
        self.lock = threading.Lock()
        try:
            self.sock = _connect(self.path, 5)
            return
        except OSError:
            pass
        env = dict(os.environ, **_roots_env(paths))
        # the padding argument leaves room in the argv area for the name each
        # forked shim shows in ps ("pallet-shim <64-hex id>")
        cmd = shim_command() + ["-socket", self.path, "zygote", " " * 96]
        # not our stderr: the zygote outlives us, and whoever reads our output
        # (a pipe) must see its end when we are gone
        os.makedirs(os.path.dirname(self.path), mode=0o711, exist_ok=True)
        log = open(os.path.join(os.path.dirname(self.path), "zygote.log"), "ab")
        try:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=log, close_fds=True,
                                         start_new_session=True, env=env)
        finally:
            log.close()
        deadline = time.monotonic() + start_timeout
        while True:
            try:
                self.sock = _connect(self.path, 5)
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise ConnectionError(f"zygote exited with {self.proc.returncode}") from None
                if time.monotonic() > deadline:
                    raise ConnectionError("zygote did not answer") from None
                time.sleep(0.02)

    def alive(self) -> bool:
        if self.proc is not None:
            self.proc.poll()  # reaps it if it ended (it is our child when we started it)
        return self.sock is not None

    def request(self, req: dict, timeout: float) -> dict:
        import json

        with self.lock:
            self.sock.settimeout(timeout)
            self.sock.sendall(json.dumps(req).encode() + b"\n")
            line = b""
            while not line.endswith(b"\n"):
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("zygote closed its socket")
                line += chunk
        return json.loads(line)

    def close(self) -> None:
        """Let go of the zygote (it ends by itself once its shims are gone)."""
        sock, self.sock = self.sock, None
        if sock is not None:
            sock.close()
        if self.proc is not None:
            self.proc.poll()


_zygotes: dict[str, Zygote] = {}
_zygote_lock = threading.Lock()
#: zygotes we started and let go of: reaped when they end (they outlive our use of them)
_let_go: list = []


def _reap_let_go() -> None:
    _let_go[:] = [p for p in _let_go if p.poll() is None]


def start_zygote(paths) -> Zygote:
    """The zygote of ``paths`` (connected, or started); safe from any thread."""
    key = zygote_socket(paths)
    with _zygote_lock:
        _reap_let_go()
        z = _zygotes.get(key)
        if z is None or not z.alive():
            z = _zygotes[key] = Zygote(paths)
        return z


def stop_zygote(paths=None) -> None:
    """Disconnect from the zygote of ``paths`` (every one without); shims live on."""
    with _zygote_lock:
        keys = [zygote_socket(paths)] if paths is not None else list(_zygotes)
        found = [_zygotes.pop(k) for k in keys if k in _zygotes]
    for z in found:
        z.close()
        if z.proc is not None and z.proc.returncode is None:
            with _zygote_lock:
                _let_go.append(z.proc)


def start_shim(namespace: str, id: str, bundle: str, containerd_address: str, paths, *,
               debug: bool = False, timeout: float = 30.0, use_zygote: bool = True) -> str:
    """Start a detached shim for task ``namespace/id`` in ``bundle``; return its address
    (that of the running shim of the task's group, if there is one)."""
    if use_zygote and os.environ.get("PALLET_SHIM_ZYGOTE", "1") != "0":
        req = {"namespace": namespace, "id": id, "bundle": bundle,
               "address": containerd_address,
               "socket": shim_socket(namespace, id, bundle, paths),
               "runtime_root": os.path.join(paths.runtime_root, namespace),
               "ttrpc_address": containerd_address + ".ttrpc", "debug": debug}
        for _attempt in range(2):
            try:
                answer = start_zygote(paths).request(req, timeout)
            except (OSError, ValueError, ConnectionError):
                stop_zygote(paths)  # broken: try a fresh one, then the baseline
                continue
            if "address" in answer:
                return answer["address"]
            raise errors.PalletError(f"start shim for task {id}: {answer.get('error')}")
    return exec_start_shim(namespace, id, bundle, containerd_address, paths, debug=debug,
                           timeout=timeout)
