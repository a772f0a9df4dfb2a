"""Which shim runs a task, starting it, and cleaning up after a dead one.

containerd picks a container's shim by its runtime name: ``io.containerd.X.vN``
runs the binary ``containerd-shim-X-vN`` from PATH (an absolute path given as
the task's ``runtime_path`` is run as it is).  pallet-containerd follows the
same rule, so ``io.containerd.runc.v2`` (ctr's and dockerd's default) runs
Debian's ``containerd-shim-runc-v2``, with one table in front of it:

* pallet's own runtime names, ``io.containerd.pallet.v2`` (palletd's
  default) and ``io.containerd.pallet.v1``, run pallet-shim, started through
  the zygote (no new interpreter).  pallet-shim runs the container with the
  runtime role in-process, or with the runc-compatible binary that runc's
  options name (``BinaryName``);
* ``[containerd.runtimes]`` in pallet's configuration adds or overrides
  entries: a runtime name -> ``"pallet-shim"``, a shim binary's name (looked
  up on PATH) or an absolute path::

      [containerd.runtimes]
      "io.containerd.runc.v2" = "pallet-shim"       # runc's name, pallet's shim
      "io.containerd.kata.v2" = "/opt/kata/bin/containerd-shim-kata-v2"

The shim of each task is recorded in its bundle (``shim.json``), so that a
restarted pallet-containerd runs the right ``delete`` verb for a shim that
died meanwhile.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from typing import Mapping

from pallet.core import errors
from pallet.core.files import write_json_atomic

#: a table entry naming pallet-shim (started through the zygote)
PALLET_SHIM = "pallet-shim"
#: runtime names served by pallet-shim unless the configuration says otherwise
DEFAULT_TABLE = {"io.containerd.pallet.v2": PALLET_SHIM, "io.containerd.pallet.v1": PALLET_SHIM}
RECORD = "shim.json"
#: how often the reader of a shim's log FIFO with nothing to read checks its bundle is there
LOG_RECHECK_MS = 10_000


def binary_name(runtime: str) -> str:
    """containerd's shim binary name for a runtime name (``io.containerd.runc.v2`` ->
    ``containerd-shim-runc-v2``)."""
    parts = runtime.split(".")
    if len(parts) < 2 or not all(parts):
        raise errors.InvalidArgument(f"invalid runtime name {runtime}, correct runtime name "
                                     "should be either format like `io.containerd.runc.v1` or a "
                                     "full path to the binary: invalid argument")
    return "containerd-shim-" + "-".join(parts[-2:])


def _executable(path: str, runtime: str) -> str:
    if not os.access(path, os.X_OK):
        raise errors.NotFound(f"runtime {runtime}: no such executable {path}: not found")
    return path


class ShimTable:
    """Runtime name -> the shim that runs it (see the module docstring).

    ``table`` is the ``[containerd.runtimes]`` section; a value that is
    neither ``"pallet-shim"``, a binary name nor an absolute path is a
    ``ConfigError`` at start-up.
    """

    def __init__(self, table: Mapping[str, str] | None = None):
        self.table = dict(DEFAULT_TABLE)
        if table is not None and not isinstance(table, Mapping):
            raise errors.ConfigError("configuration: [containerd.runtimes] must be a table of "
                                     "runtime names")
        for name, shim in (table or {}).items():
            if not isinstance(shim, str) or not shim or ("/" in shim and not
                                                          os.path.isabs(shim)):
                raise errors.ConfigError(
                    f"configuration: [containerd.runtimes] {name} = {shim!r}: expected "
                    f'"{PALLET_SHIM}", the name of a shim binary or an absolute path')
            self.table[name] = shim

    def resolve(self, runtime: str) -> str:
        """The shim binary for ``runtime``: "" for pallet-shim, else its path."""
        if not runtime:
            return ""
        shim = self.table.get(runtime)
        if shim == PALLET_SHIM:
            return ""
        if shim is not None:
            if os.path.isabs(shim):
                return _executable(shim, runtime)
            found = shutil.which(shim)
            if found is None:
                raise errors.NotFound(f'runtime "{runtime}" binary not installed "{shim}": '
                                      "file does not exist: not found")
            return found
        if os.path.isabs(runtime):
            return _executable(runtime, runtime)
        name = binary_name(runtime)
        found = shutil.which(name)
        if found is None:
            raise errors.NotFound(f'runtime "{runtime}" binary not installed "{name}": '
                                  "file does not exist: not found")
        return found


def record(bundle: str, runtime: str, binary: str) -> None:
    """Note in the bundle which runtime and shim binary run the task."""
    write_json_atomic(os.path.join(bundle, RECORD), {"runtime": runtime, "binary": binary},
                      fsync=False)


def recorded_binary(bundle: str) -> str:
    try:
        with open(os.path.join(bundle, RECORD)) as f:
            return str(json.load(f).get("binary") or "")
    except (OSError, ValueError, AttributeError):
        return ""


def _command(binary: str) -> list[str]:
    if binary:
        return [binary]
    from pallet.shim import launch

    return launch.shim_command()


def start(namespace: str, id: str, bundle: str, address: str, paths, binary: str,
          options: bytes = b"", *, debug: bool = False, timeout: float = 30.0) -> str:
    """Start the task's shim; returns its ttrpc address."""
    from pallet.shim import launch

    if not binary:
        return launch.start_shim(namespace, id, bundle, address, paths, debug=debug,
                                 timeout=timeout)
    _open_log(bundle, id)
    argv = [binary, "-namespace", namespace, "-id", id, "-address", address,
            "-publish-binary", "containerd"]
    if debug:
        argv.append("-debug")
    env = dict(os.environ, TTRPC_ADDRESS=address + ".ttrpc", GRPC_ADDRESS=address,
               NAMESPACE=namespace)
    try:
        proc = subprocess.run(argv + ["start"], cwd=bundle, env=env, input=options,
                              capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise errors.Unavailable(f"start shim {binary} for task {id}: no answer after "
                                 f"{timeout:g}s") from None
    except OSError as e:
        raise errors.PalletError(f"start shim {binary}: {e.strerror or e}") from None
    out = proc.stdout.decode(errors="replace").strip()
    if proc.returncode != 0 or not out:
        why = proc.stderr.decode(errors="replace").strip() or f"exit status {proc.returncode}"
        raise errors.PalletError(f"start shim {binary} for task {id}: {why}")
    if out.startswith("{"):  # shim API v3 bootstrap params ({"address": ...})
        try:
            out = json.loads(out).get("address", "")
        except ValueError:
            pass
    if "://" not in out:
        out = "unix://" + out
    return out


def _open_log(bundle: str, id: str) -> None:
    """The ``log`` FIFO a containerd shim writes to, read into our log as containerd does."""
    import logging
    import threading

    path = os.path.join(bundle, "log")
    try:
        os.mkfifo(path, 0o700)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return
    os.set_blocking(fd, True)
    log = logging.getLogger("pallet.containerd.shim")

    def copy():
        import select

        poller = select.poll()
        poller.register(fd, select.POLLIN)
        with os.fdopen(fd, "rb") as f:
            while True:
                # a task that joined its group's running shim has a log nobody
                # writes to: stop reading once its bundle is gone
                if not poller.poll(LOG_RECHECK_MS):
                    if not os.path.exists(path):
                        return
                    continue
                line = f.readline()
                if not line:
                    return
                log.info("shim %s: %s", id, line.decode(errors="replace").rstrip())
    threading.Thread(target=copy, daemon=True, name=f"shimlog-{id[:12]}").start()


def delete(namespace: str, id: str, bundle: str, address: str, paths,
           *, timeout: float = 60.0) -> tuple[int, int, int]:
    """Run the shim's ``delete`` verb after it died: (pid, exit status, exited at ns)."""
    from pallet.proto.containerd.task.v2 import shim_pb2

    from pallet.shim import launch

    binary = recorded_binary(bundle)
    argv = _command(binary) + ["-namespace", namespace, "-id", id, "-address", address,
                               "-bundle", bundle, "delete"]
    env = dict(os.environ, TTRPC_ADDRESS=address + ".ttrpc", GRPC_ADDRESS=address,
               NAMESPACE=namespace)
    if not binary:
        env.update(launch._shim_env(namespace, id, address, paths, bundle))
    try:
        proc = subprocess.run(argv, cwd=bundle if os.path.isdir(bundle) else "/", env=env,
                              stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    except (subprocess.TimeoutExpired, OSError) as e:
        raise errors.PalletError(f"delete verb of the shim of {id}: {e}") from None
    if proc.returncode != 0:
        raise errors.PalletError(f"delete verb of the shim of {id}: "
                                 f"{proc.stderr.decode(errors='replace').strip()}")
    r = shim_pb2.DeleteResponse.FromString(proc.stdout)
    return r.pid, r.exit_status, r.exited_at.seconds * 1_000_000_000 + r.exited_at.nanos
