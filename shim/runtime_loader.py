"""The runtime role's object for the shim, through the kernel, without the kernel's weight.

The runtime (and the init it hands PID 1 to) come from the plugin roles, as
everywhere else: ``kernel.provide("runtime")``.  Loading the kernel imports
stevedore, pluggy, attrs and every plugin's wiring, some 12 MiB that a shim,
which exists once per container, should not carry.  So the kernel is loaded
in a throwaway child, which provides the runtime role and sends the object
back pickled; unpickling it imports only the modules of the runtime (and
init) plugin themselves.  The zygote does this once for every shim it forks;
a shim started on its own (by Debian's containerd) once at its start.

A runtime object that cannot be pickled is provided in-process instead.
"""
from __future__ import annotations

import os
import pickle

from pallet.core import errors

#: modules a runtime's create and exec import lazily; loaded up front in the
#: zygote so that the shims' helpers do not import them for every call
_PRELOAD = ("process", "linux", "mounts", "cgroups", "state", "seccomp", "hooks", "specgen")


def _paths():
    from pallet.core.paths import Paths

    root = os.environ.get("PALLET_CONTAINERD_ROOT")
    state = os.environ.get("PALLET_CONTAINERD_STATE")
    if root and state:
        return Paths.for_containerd(root, state)
    from pallet.core.paths import DEFAULT_DATA_ROOT, DEFAULT_EXEC_ROOT

    return Paths(DEFAULT_DATA_ROOT, DEFAULT_EXEC_ROOT)


def provide_runtime():
    """``kernel.provide("runtime")`` in this process (the slow, heavy way)."""
    from pallet.core.config import Config
    from pallet.core.kernel import Kernel

    kernel = Kernel.load(Config.load(), paths=_paths(), roles=("runtime", "init"),
                         extensions=False)
    return kernel.provide("runtime")


def load_runtime():
    """The runtime role's object, provided by a kernel loaded in a child process."""
    r, w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            try:
                data = b"ok" + pickle.dumps(provide_runtime())
            except (pickle.PicklingError, TypeError, AttributeError):
                data = b"np"  # not picklable: the parent loads it itself
            except errors.PalletError as e:
                data = b"er" + e.message.encode()
            except Exception as e:  # noqa: BLE001 - reported, not raised in a forked child
                data = b"er" + f"load the runtime role: {type(e).__name__}: {e}".encode()
            view = memoryview(data)
            while view:
                view = view[os.write(w, view):]
        finally:
            os._exit(0)
    os.close(w)
    chunks = []
    while True:
        chunk = os.read(r, 1 << 16)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(r)
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass
    data = b"".join(chunks)
    if data.startswith(b"ok"):
        return pickle.loads(data[2:])
    if data.startswith(b"np"):
        return provide_runtime()
    if data.startswith(b"er"):
        raise errors.ConfigError(data[2:].decode(errors="replace"))
    raise errors.ConfigError("load the runtime role: the loader process died")


def preload(runtime) -> None:
    """Import what the runtime's create and exec would import on each call."""
    import importlib

    package = type(runtime).__module__.rpartition(".")[0]
    if not package:
        return
    for name in _PRELOAD:
        try:
            importlib.import_module(f"{package}.{name}")
        except ImportError:
            pass


def for_namespace(runtime, root: str):
    """The same runtime on the state root of one containerd namespace."""
    with_root = getattr(runtime, "with_root", None)
    return with_root(root) if callable(with_root) else runtime
