"""NsRuntime: pallet's OCI runtime as a library (runc's operations in-process).

Used in-process by pallet-shim (the fast path: the container is forked from
the calling process, no interpreter is started) and by ``pallet-runc``.

Process model.  ``create`` forks once.  When the spec asks for a new PID
namespace, the calling *thread* unshares CLONE_NEWPID just around the fork
and goes back to its own namespace right after (setns on
/proc/self/ns/pid, allowed since it is the caller's active namespace,
pid_namespaces(7)), so the forked process is PID 1 of the container and a
direct child of the caller, without an intermediate process.  With a user
or time namespace an intermediate process is needed (see process.py); the
container's PID 1 is then reparented to the caller, which must be a child
subreaper (PR_SET_CHILD_SUBREAPER) as the contract says, also for
containers that share the host's PID namespace and leave orphans behind.

Exit codes are the caller's business: it waits, and maps a signal N to 128+N.
"""
from __future__ import annotations

import os
import select
import time

from pallet.core.errors import (AlreadyExists, FailedPrecondition, InvalidArgument, NotFound,
                                PalletError)

from pallet.plugins.runtime_ns import _jsonlite as json
from pallet.plugins.runtime_ns.errtext import describe
from pallet.plugins.runtime_ns.state import (
    EXEC_FIFO,
    ContainerState,
    proc_start_time,
    valid_id,
    write_atomic)

#: how long start waits for the process blocked on exec.fifo
START_TIMEOUT = 10.0
#: how long delete waits for a killed container to die
KILL_TIMEOUT = 10.0
#: the compiled seccomp program kept for exec
SECCOMP_FILE = "seccomp.bpf"


def _no_warning(message: str) -> None:
    pass


class NsRuntime:
    """An OCI runtime storing its state under ``root`` (runc's ``--root``).

    ``init`` is the init role's object (``run(argv, env)``), used when the
    spec has the annotation ``org.pallet.init: builtin``.  ``warn`` receives
    one-line warnings (settings accepted but not applied, failed poststop
    hooks).  ``cgroup_v2_root`` makes the runtime use cgroup v2 below that
    mount point; by default v2 is used when /sys/fs/cgroup is a cgroup2
    mount, v1 otherwise.
    """

    name = "runtime_ns"

    def __init__(self, root: str, init=None, warn=None, cgroup_v2_root: str | None = None,
                 init_loader=None):
        self.root = os.path.abspath(root)
        self.init = init
        #: called for the init object the first time a spec asks for it (so
        #: that pallet-runc imports the init only then)
        self.init_loader = init_loader
        self.warn = warn or _no_warning
        self.cgroup_v2_root = cgroup_v2_root

    # --- helpers ----------------------------------------------------------------------
    def _dir(self, cid: str) -> str:
        if not valid_id(cid):
            raise InvalidArgument(f"invalid container id format: {cid}")
        return os.path.join(self.root, cid)

    def _load(self, cid: str) -> ContainerState:
        directory = self._dir(cid)
        try:
            return ContainerState.load(directory)
        except FileNotFoundError:
            raise NotFound("container does not exist") from None
        except (ValueError, KeyError) as e:
            raise PalletError(f"read state of container {cid}: {e}") from None

    def _cgroup_driver(self):
        """(module, version) of the cgroup driver for a new container."""
        from pallet.plugins.runtime_ns import cgroups2
        root = self.cgroup_v2_root or cgroups2.unified_root()
        if root:
            cgroups2.set_root(root)
            return cgroups2, 2
        from pallet.plugins.runtime_ns import cgroups
        return cgroups, 1

    # --- create ---------------------------------------------------------------------
    def create(self, id: str, bundle: str, *, stdin=None, stdout=None, stderr=None,
               terminal_socket=None, pid_file=None, no_pivot=False, preserve_fds=0) -> int:
        """Create container ``id`` from ``bundle``; its process waits for ``start``.

        Returns the host pid of the container's PID 1 (a child of the caller,
        or reparented to it when a user or time namespace needs an
        intermediate process).
        """
        # the container process runs this code after pivot_root, where nothing
        # can be imported any more: load all of it now (and only for create,
        # so that state/list/kill stay cheap for pallet-runc)
        from pallet.plugins.runtime_ns import hooks, linux, process, spawn  # noqa: F401

        directory = self._dir(id)
        bundle = os.path.abspath(bundle)
        spec = read_spec(bundle)
        rootfs = _rootfs_of(spec, bundle)
        init = self._init_for(spec)
        program, flags = _seccomp_of(spec)
        self._warn_unsupported(spec)
        os.makedirs(self.root, 0o700, exist_ok=True)
        try:
            os.mkdir(directory, 0o711)
        except FileExistsError:
            raise AlreadyExists(f"container with id exists: {id}") from None
        cg_paths, cg_created, cg = {}, [], None
        pid = None
        try:
            ContainerState.placeholder(directory, id, bundle, rootfs, spec).save()
            fifo = os.path.join(directory, EXEC_FIFO)
            os.mkfifo(fifo, 0o622)
            os.chmod(fifo, 0o622)  # against the umask: the container user writes it
            if program is not None:
                write_atomic(os.path.join(directory, SECCOMP_FILE), program)
            lnx = spec.get("linux") or {}
            cg, cg_version = self._cgroup_driver()
            if lnx.get("cgroupsPath"):
                try:
                    cg_paths, cg_created = cg.create(lnx["cgroupsPath"], lnx.get("resources"))
                except (cg.CgroupError, OSError) as e:
                    raise PalletError(f"create cgroup {lnx['cgroupsPath']}: {describe(e)}") from None
            opened: list[int] = []
            try:
                ns = spawn.namespaces_of(spec, opened)

                def on_hooks(child_pid):
                    state = hooks.state_json(spec, id, "creating", child_pid, bundle)
                    hooks.run_all(spec, "prestart", state)
                    hooks.run_all(spec, "createRuntime", state)

                pid = spawn.spawn(spec, ns, (stdin, stdout, stderr), terminal_socket, preserve_fds,
                                  directory=directory, on_hooks=on_hooks, id=id, bundle=bundle,
                                  rootfs=rootfs, init=init, cgroup_paths=cg_paths,
                                  no_pivot=no_pivot, seccomp=program, seccomp_flags=flags)
            finally:
                for fd in opened:
                    os.close(fd)
            st = ContainerState.new(directory, id, pid, bundle, rootfs, spec, cg_paths, cg_created,
                                    cgroup_version=cg_version)
            st.data["pallet"]["seccomp_flags"] = flags if program is not None else None
            st.data["pallet"]["hooks"] = sorted(k for k, v in (spec.get("hooks") or {}).items() if v)
            st.save()
            if pid_file:
                write_atomic(os.path.abspath(pid_file), str(pid).encode(), 0o644)
            return pid
        except BaseException:
            if pid is not None:  # never leave a process waiting for a start that cannot come
                spawn._kill_and_reap(pid)
            if cg is not None:
                try:
                    cg.remove_dirs(cg_created, leaves=set(cg_paths.values()))
                except cg.CgroupError:
                    pass
            _remove_state_dir(directory)
            raise

    def _init_for(self, spec: dict):
        if (spec.get("annotations") or {}).get("org.pallet.init") != "builtin":
            return None
        if self.init is None and self.init_loader is not None:
            self.init = self.init_loader()
        if self.init is None:
            raise InvalidArgument("the spec asks for the builtin init (org.pallet.init) "
                                  "but no init plugin is loaded")
        return self.init

    def _warn_unsupported(self, spec: dict) -> None:
        proc = spec.get("process") or {}
        if proc.get("apparmorProfile"):
            self.warn(f"apparmor is not supported: profile {proc['apparmorProfile']!r} not applied")
        if proc.get("selinuxLabel"):
            self.warn(f"selinux is not supported: label {proc['selinuxLabel']!r} not applied")
        if (spec.get("linux") or {}).get("mountLabel"):
            self.warn("selinux is not supported: linux.mountLabel not applied")

    # --- exec --------------------------------------------------------------------------
    def exec(self, id: str, process: dict, *, stdin=None, stdout=None, stderr=None,
             terminal_socket=None, pid_file=None, preserve_fds=0) -> int:
        """Run ``process`` (an OCI ``process`` object) in the running container ``id``.

        It joins the container's namespaces and cgroups and starts at once
        (no exec FIFO), under the container's seccomp filter.  Returns its
        host pid, a child of the caller, which waits for it as for the
        container's PID 1.
        """
        from pallet.plugins.runtime_ns import linux, spawn  # noqa: F401  (see create)
        from pallet.plugins.runtime_ns import process as _process  # noqa: F401

        st = self._load(id)
        status = st.status()
        if status in ("stopped", "creating"):
            raise FailedPrecondition(f"cannot exec in a {status} container")
        if status == "paused":
            raise FailedPrecondition("cannot exec in a paused container")
        if not isinstance(process, dict) or not process.get("args"):
            raise InvalidArgument("args must not be empty")
        _check_process(process)
        program = None
        if st.data["pallet"].get("seccomp_flags") is not None:
            with open(os.path.join(st.dir, SECCOMP_FILE), "rb") as f:
                program = f.read()
        spec = {"process": process}
        kinds = {"NEWPID": "pid", "NEWNET": "network", "NEWNS": "mount", "NEWIPC": "ipc",
                 "NEWUTS": "uts", "NEWCGROUP": "cgroup", "NEWUSER": "user", "NEWTIME": "time"}
        present = {kinds[k] for k in st.data.get("namespace_paths") or {} if k in kinds}
        opened: list[int] = []
        try:
            if not st.alive():
                raise FailedPrecondition("cannot exec in a stopped container")
            # PID 1 is in each of the container's namespaces (made or joined at
            # create), so /proc/<pid>/ns/* names them whatever their origin
            ns = spawn.namespaces_of_container(st.pid, present, opened)
            pid = spawn.spawn(spec, ns, (stdin, stdout, stderr), terminal_socket, preserve_fds,
                              cgroup_paths=st.cgroup_paths, seccomp=program,
                              seccomp_flags=st.data["pallet"].get("seccomp_flags") or 0)
        finally:
            for fd in opened:
                os.close(fd)
        if pid_file:
            write_atomic(os.path.abspath(pid_file), str(pid).encode(), 0o644)
        return pid

    def features(self) -> dict:
        """runc's ``features`` document for this runtime."""
        from pallet.plugins.runtime_ns.features import features
        return features()

    def with_root(self, root: str) -> "NsRuntime":
        """The same runtime (same init) on another state root, e.g. one per
        containerd namespace below ``kernel.paths.runtime_root``."""
        return NsRuntime(root, init=self.init, warn=self.warn, cgroup_v2_root=self.cgroup_v2_root,
                         init_loader=self.init_loader)

    # --- start, kill, delete, state, list ------------------------------------------------
    def start(self, id: str) -> None:
        """Let the process blocked since ``create`` exec the user program;
        then run the poststart hooks."""
        st = self._load(id)
        status = st.status()
        if status == "stopped":
            raise FailedPrecondition("cannot start a container that has stopped")
        if status != "created":
            raise FailedPrecondition(f"cannot start an already {status} container"
                                     if status != "creating" else "cannot start a container "
                                     "that is still being created")
        try:
            fd = os.open(st.fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            raise FailedPrecondition("cannot start an already running container") from None
        try:
            # a FIFO opened without a writer reports no POLLHUP until a writer
            # has come (fs/pipe.c): poll, and check that the process lives on
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            deadline = time.monotonic() + START_TIMEOUT
            while True:
                if poller.poll(50):
                    data = os.read(fd, 1)
                    if data == b"0":
                        break
                    raise PalletError(f"start container {id}: unexpected data on exec fifo")
                if not st.alive():
                    raise FailedPrecondition("cannot start a container that has stopped")
                if time.monotonic() > deadline:
                    raise PalletError(f"start container {id}: timeout waiting for the container process")
        finally:
            os.close(fd)
        try:
            os.unlink(st.fifo)
        except FileNotFoundError:
            pass
        spec = self._spec_hooks(st, "poststart")
        if spec is not None:
            from pallet.plugins.runtime_ns import hooks
            try:
                hooks.run_all(spec, "poststart", hooks.state_json(spec, id, "running", st.pid,
                                                                  st.bundle))
            except hooks.HookError as e:
                # runc: a failed poststart hook is an error of start, the
                # container is killed
                self._kill_all(st)
                raise PalletError(f"start container {id}: {e}") from None

    def _spec_hooks(self, st: ContainerState, kind: str) -> dict | None:
        """The bundle's spec if it had ``kind`` hooks at create (the state
        remembers which kinds, so the bundle is read again only then)."""
        if kind not in (st.data["pallet"].get("hooks") or ()):
            return None
        try:
            with open(os.path.join(st.bundle, "config.json"), "rb") as f:
                return json.loads(f.read())
        except (OSError, ValueError) as e:
            self.warn(f"cannot run the {kind} hooks of {st.id}: {describe(e)}")
            return None

    def kill(self, id: str, signal: int, all: bool = False) -> None:
        """Send ``signal`` to the container's PID 1 (every process with ``all``)."""
        st = self._load(id)
        if all:
            cg = st.cgroup_module
            pids = cg.pids(st.cgroup_paths) if st.cgroup_paths else []
            if st.alive() and st.pid not in pids:
                pids.append(st.pid)
            for pid in pids:
                try:
                    os.kill(pid, signal)
                except ProcessLookupError:
                    pass
            if signal == 9 and st.cgroup_paths and cg.is_frozen(st.cgroup_paths):
                cg.freeze(st.cgroup_paths, False)  # frozen tasks die only once thawed
            return
        if not st.alive():
            raise FailedPrecondition("container not running")
        try:
            os.kill(st.pid, signal)
        except ProcessLookupError:
            raise FailedPrecondition("container not running") from None

    def delete(self, id: str, force: bool = False) -> None:
        """Remove a stopped (or created) container; ``force`` kills a running one.
        Then run the poststop hooks (a failure is only a warning, as in runc)."""
        st = self._load(id)
        status = st.status()
        if status in ("running", "paused", "creating") and not force:
            raise FailedPrecondition(f"cannot delete container {id} that is not stopped: {status}")
        if status != "stopped" or st.cgroup_paths:
            self._kill_all(st)
        cg = st.cgroup_module
        try:
            cg.remove_dirs(st.cgroups_created, leaves=set(st.cgroup_paths.values()))
        except cg.CgroupError as e:
            raise PalletError(f"delete container {id}: {e}") from None
        spec = self._spec_hooks(st, "poststop")
        _remove_state_dir(st.dir)
        if spec is not None:
            from pallet.plugins.runtime_ns import hooks
            try:
                hooks.run_all(spec, "poststop", hooks.state_json(spec, id, "stopped", 0, st.bundle))
            except hooks.HookError as e:
                self.warn(str(e))

    def _kill_all(self, st: ContainerState) -> None:
        cg = st.cgroup_module
        deadline = time.monotonic() + KILL_TIMEOUT
        while True:
            pids = cg.pids(st.cgroup_paths) if st.cgroup_paths else []
            alive = st.alive()
            if alive:
                pids.append(st.pid)
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass
            if st.cgroup_paths and cg.is_frozen(st.cgroup_paths):
                cg.freeze(st.cgroup_paths, False)
            if not alive and _only_zombies(pids):
                return
            if time.monotonic() > deadline:
                raise PalletError(f"delete container {st.id}: processes still alive after SIGKILL")
            time.sleep(0.002)

    def state(self, id: str) -> dict:
        """runc's state JSON fields (ociVersion, id, pid, status, bundle, rootfs,
        created, owner, annotations)."""
        return self._load(id).oci()

    def list(self) -> list[dict]:
        """The state of every container under the root."""
        out = []
        try:
            entries = sorted(os.scandir(self.root), key=lambda e: e.name)
        except FileNotFoundError:
            return out
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                try:
                    out.append(ContainerState.load(entry.path).oci())
                except (FileNotFoundError, ValueError, KeyError):
                    continue  # being created or removed right now
        return out

    def pause(self, id: str) -> None:
        """Freeze every process of the container (needs linux.cgroupsPath)."""
        st = self._load(id)
        if st.status() != "running":
            raise FailedPrecondition("container not running")
        self._freeze(st, True)

    def resume(self, id: str) -> None:
        st = self._load(id)
        if st.status() != "paused":
            raise FailedPrecondition("container not paused")
        self._freeze(st, False)

    def _freeze(self, st, frozen):
        if not st.cgroup_paths:
            raise FailedPrecondition(f"container {st.id} has no cgroup to freeze")
        cg = st.cgroup_module
        try:
            cg.freeze(st.cgroup_paths, frozen)
        except cg.CgroupError as e:
            raise PalletError(str(e)) from None

    def pids(self, id: str) -> list[int]:
        """Host pids of the container's processes (its cgroup, or just PID 1)."""
        st = self._load(id)
        if st.cgroup_paths:
            return st.cgroup_module.pids(st.cgroup_paths)
        return [st.pid] if st.alive() else []

    def update(self, id: str, resources: dict) -> None:
        """Change the limits of a container (``linux.resources`` fields)."""
        st = self._load(id)
        if st.status() == "stopped":
            raise FailedPrecondition("cannot update a stopped container")
        if not st.cgroup_paths:
            raise FailedPrecondition(f"container {id} has no cgroup to update")
        cg = st.cgroup_module
        try:
            cg.apply(st.cgroup_paths, resources)
        except (cg.CgroupError, OSError) as e:
            raise PalletError(f"update container {id}: {describe(e)}") from None

    def stats(self, id: str) -> dict:
        """runc's ``events --stats`` data: cpu, memory, pids, blkio, hugetlb."""
        st = self._load(id)
        if st.status() == "stopped":
            raise FailedPrecondition("container not running")
        if not st.cgroup_paths:
            return {}
        return st.cgroup_module.stats(st.cgroup_paths)


# --- module helpers ----------------------------------------------------------------------

def read_spec(bundle: str) -> dict:
    """The bundle's config.json, validated against the OCI schema."""
    path = os.path.join(bundle, "config.json")
    try:
        with open(path, "rb") as f:
            spec = json.loads(f.read())
    except FileNotFoundError:
        raise InvalidArgument(f"open {path}: no such file or directory") from None
    except (OSError, ValueError) as e:
        raise InvalidArgument(f"read {path}: {describe(e)}") from None
    from pallet.plugins.runtime_ns.validate import SchemaError, semantic_errors, validate_config
    try:
        validate_config(spec)
        semantic_errors(spec)
    except SchemaError as e:
        raise InvalidArgument(f"invalid configuration {path}: {e}") from None
    return spec


def _check_process(process: dict) -> None:
    """An exec's process object against the schema's ``process`` part."""
    from pallet.plugins.runtime_ns.validate import SchemaError, semantic_errors, validate_config
    try:
        validate_config({"ociVersion": "1.0.2", "process": process})
        semantic_errors({"process": process})
    except SchemaError as e:
        raise InvalidArgument(f"invalid process: {e}") from None


def _seccomp_of(spec: dict):
    """(compiled program or None, seccomp(2) flags) of linux.seccomp."""
    profile = (spec.get("linux") or {}).get("seccomp")
    if not profile:
        return None, 0
    from pallet.plugins.runtime_ns import seccomp
    try:
        return seccomp.compile_profile(profile), seccomp.filter_flags(profile)
    except seccomp.SeccompError as e:
        raise InvalidArgument(f"linux.seccomp: {e}") from None


def _rootfs_of(spec: dict, bundle: str) -> str:
    root = (spec.get("root") or {}).get("path")
    if not root:
        raise InvalidArgument("root.path is not set in config.json")
    path = os.path.realpath(os.path.join(bundle, root))
    if not os.path.isdir(path):
        raise InvalidArgument(f"rootfs ({path}) does not exist")
    return path


def _remove_state_dir(path: str) -> None:
    """rm -r of a state directory (flat: state.json, exec.fifo, temporaries)."""
    try:
        entries = list(os.scandir(path))
    except FileNotFoundError:
        return
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False):
                import shutil
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                os.unlink(entry.path)
        except FileNotFoundError:
            pass
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass


def _only_zombies(pids) -> bool:
    for pid in pids:
        info = proc_start_time(pid)
        if info is not None and info[1] not in ("Z", "X"):
            return False
    return True
