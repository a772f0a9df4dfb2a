"""The runtime role's object for the shim, through the kernel, without the kernel's weight.

The runtime (and the init it hands PID 1 to) come from the plugin roles, as
everywhere else: ``kernel.provide("runtime")``.  Loading the kernel imports
stevedore, pluggy, attrs and every plugin's wiring, some 12 MiB that a shim,
which exists once per container, should not carry.  So the kernel is loaded
in a throwaway child, which provides the runtime role and sends the object
back pickled; unpickling it imports only the modules of the runtime (and
init) plugin themselves.  The zygote does this once for every shim it forks;
a shim started on its own (by Debian's containerd) once at its start.

A task whose runc options name a binary (containerd's ``BinaryName``, as
dockerd sets it) runs on the runtime role filled by :data:`BINARY_PLUGIN`
with that binary: the same kernel, configured for it.  The zygote has the
runtimes of :data:`PREPARED_BINARIES` provided along with the configured
one, so that the shims forked from it find them ready.

Results (and errors, with their class) are kept per process: a shim forked
from the zygote inherits what the zygote loaded.  A runtime object that
cannot be pickled is provided in-process instead.
"""
from __future__ import annotations

import os
import pickle

from pallet.core import errors

#: modules a runtime's create and exec import lazily; loaded up front in the
#: zygote so that the shims' helpers do not import them for every call
_PRELOAD = ("process", "spawn", "linux", "mounts", "cgroups", "cgroups2", "devices", "state",
            "seccomp", "hooks", "validate", "errtext", "_oci_schema", "_syscalls")

#: the plugin whose runtime drives a runc-compatible binary (``[plugins.<it>] binary``)
BINARY_PLUGIN = "runtime_oci"
#: binaries provided with the configured runtime (dockerd names runc in each task)
PREPARED_BINARIES = ("runc",)

#: key -> ("ok", object) | ("pickled", bytes) | ("np",) | ("er", class name, message);
#: the key is None for the configured runtime, (binary, systemd_cgroup) for a binary
_loaded: dict = {}


def _paths():
    from pallet.core.paths import Paths

    root = os.environ.get("PALLET_CONTAINERD_ROOT")
    state = os.environ.get("PALLET_CONTAINERD_STATE")
    if root and state:
        return Paths.for_containerd(root, state)
    from pallet.core.paths import DEFAULT_DATA_ROOT, DEFAULT_EXEC_ROOT

    return Paths(DEFAULT_DATA_ROOT, DEFAULT_EXEC_ROOT)


def provide_runtime(key=None, config=None):
    """``kernel.provide("runtime")`` in this process (the slow, heavy way): the
    configured runtime, or for ``key`` = (binary, systemd_cgroup) the runtime of
    :data:`BINARY_PLUGIN` driving that binary."""
    import attrs

    from pallet.core.config import Config
    from pallet.core.kernel import Kernel

    config = config if config is not None else Config.load()
    if key is not None:
        binary, systemd_cgroup = key
        section = dict(config.plugin_section(BINARY_PLUGIN), binary=binary,
                       systemd_cgroup=systemd_cgroup)
        config = attrs.evolve(config, roles={**config.roles, "runtime": BINARY_PLUGIN},
                              plugins={**config.plugins, BINARY_PLUGIN: section})
    try:
        kernel = Kernel.load(config, paths=_paths(), roles=("runtime", "init"), extensions=False)
        return kernel.provide("runtime")
    except errors.ConfigError as e:
        if key is None:
            raise
        raise errors.ConfigError(f"runc options name the runtime binary {key[0]}, which runs "
                                 f"on the {BINARY_PLUGIN} plugin: {e.message}") from None


def _provide_each(keys) -> dict:
    """In the loader child: each key's runtime, pickled, or its error."""
    from pallet.core.config import Config

    out: dict = {}
    try:
        config = Config.load()
    except errors.PalletError as e:
        return {key: ("er", type(e).__name__, e.message) for key in keys}
    for key in keys:
        try:
            runtime = provide_runtime(key, config)
        except errors.PalletError as e:
            out[key] = ("er", type(e).__name__, e.message)
            continue
        except Exception as e:  # noqa: BLE001 - reported, not raised in a forked child
            out[key] = ("er", "PalletError", f"load the runtime role: {type(e).__name__}: {e}")
            continue
        try:
            out[key] = ("pickled", pickle.dumps(runtime))
        except (pickle.PicklingError, TypeError, AttributeError):
            out[key] = ("np",)  # not picklable: the parent provides it itself
    return out


def _load_in_child(keys) -> dict:
    r, w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            try:
                data = pickle.dumps(_provide_each(keys))
            except BaseException as e:  # noqa: BLE001 - reported, not raised in a forked child
                data = pickle.dumps({key: ("er", "PalletError", f"load the runtime role: {e}")
                                     for key in keys})
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
    try:
        return pickle.loads(b"".join(chunks))
    except Exception:  # noqa: BLE001 - a dead loader leaves nothing readable
        return {key: ("er", "ConfigError", "load the runtime role: the loader process died")
                for key in keys}


def _settle(key):
    """The object for ``key`` from what was loaded, or its error raised."""
    entry = _loaded[key]
    if entry[0] == "pickled":
        try:
            entry = _loaded[key] = ("ok", pickle.loads(entry[1]))
        except Exception as e:  # noqa: BLE001 - e.g. the plugin's module is gone
            entry = _loaded[key] = ("er", "ConfigError",
                                    f"load the runtime role: {type(e).__name__}: {e}")
    if entry[0] == "np":
        entry = _loaded[key] = ("ok", provide_runtime(key))
    if entry[0] == "ok":
        return entry[1]
    kind = getattr(errors, entry[1], None)
    if not (isinstance(kind, type) and issubclass(kind, errors.PalletError)):
        kind = errors.PalletError
    raise kind(entry[2])


def load_runtime(binary: str | None = None, systemd_cgroup: bool = False, *,
                 prepare: tuple[str, ...] = ()):
    """The runtime role's object, provided by a kernel loaded in a child process.

    With ``binary`` (runc's ``BinaryName``): the runtime of
    :data:`BINARY_PLUGIN` driving that binary.  ``prepare`` names binaries
    whose runtimes the same child provides too (the zygote passes
    :data:`PREPARED_BINARIES`), for later calls of this process and of the
    shims forked from it; each costs the child a second kernel load.
    """
    key = None if binary is None else (binary, bool(systemd_cgroup))
    if key not in _loaded:
        keys = [key] + [(name, False) for name in prepare
                        if (name, False) not in _loaded and (name, False) != key]
        # the others stay pickled until a task asks for them: a shim forked
        # from the zygote unpickles the one it needs, and the zygote imports
        # nothing that most shims do not use
        _loaded.update(_load_in_child(keys))
    return _settle(key)


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
