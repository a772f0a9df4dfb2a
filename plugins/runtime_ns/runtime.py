"""NsRuntime: pallet's OCI runtime as a library (runc's operations in-process).

Used in-process by pallet-shim (the fast path: the container is forked from
the calling process, no interpreter is started) and by ``pallet-runc``.  It
behaves as runc 1.1 does -- its messages, its states, its cgroups (every
container gets one, named after it when the spec names none), its order of
events (poststart hooks at the end of create, as runc runs them) -- so that
both callers see runc.

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

from pallet.linux.cgroupfs import warm_migration
from pallet.oci import jsonlite as json
from pallet.plugins.runtime_ns.errtext import describe
from pallet.plugins.runtime_ns.state import (
    EXEC_FIFO,
    ContainerState,
    proc_start_time,
    valid_id,
    write_atomic)

#: how long start waits for the process blocked on exec.fifo
START_TIMEOUT = 10.0
#: how long delete waits for a killed container to die (runc: 100 x 100 ms)
KILL_TIMEOUT = 10.0
#: the compiled seccomp program kept for exec
SECCOMP_FILE = "seccomp.bpf"


def _no_log(level: str, msg: str, caller=None, fields=()) -> None:
    pass


class NsRuntime:
    """An OCI runtime storing its state under ``root`` (runc's ``--root``).

    ``root`` may be a callable giving it (resolved on first use, so that a
    runtime handed another root at once never computes its default).
    ``init`` is the init role's object (``run(argv, env)``), used when the
    spec has the annotation ``org.pallet.init: builtin``; ``init_loader``
    gives it on first need instead.  ``log(level, msg, caller=None,
    fields=())`` receives runc's warning, error and debug lines (logrus's
    levels: "warning", "error", "debug"); ``warn(msg)`` is its warnings only.
    ``cgroup_v2_root`` makes the runtime use cgroup v2 below that mount
    point; by default v2 is used when /sys/fs/cgroup is a cgroup2 mount, v1
    (and the unified hierarchy beside it, in hybrid mode) otherwise.
    """

    name = "runtime_ns"

    def __init__(self, root, init=None, warn=None, cgroup_v2_root: str | None = None,
                 init_loader=None, log=None):
        self._root = root
        self.init = init
        self.init_loader = init_loader
        self.log = log or _no_log
        self._warn = warn
        self.cgroup_v2_root = cgroup_v2_root

    @property
    def root(self) -> str:
        if callable(self._root):
            self._root = self._root()
        return os.path.abspath(self._root)

    def warn(self, message: str) -> None:
        if self._warn is not None:
            self._warn(message)
        else:
            self.log("warning", message)

    def __getstate__(self) -> dict:
        """What travels to the shim pickled: the resolved root and init, no callables."""
        init = self.init
        if init is None and self.init_loader is not None:
            init = self.init_loader()
        return {"_root": self.root, "init": init, "init_loader": None, "log": _no_log,
                "_warn": None, "cgroup_v2_root": self.cgroup_v2_root}

    def with_root(self, root: str, log=None) -> "NsRuntime":
        """The same runtime (same init) on another state root, e.g. one per
        containerd namespace below ``kernel.paths.runtime_root``; ``log`` as
        for the constructor (default: this one's)."""
        return NsRuntime(root, init=self.init, warn=self._warn, cgroup_v2_root=self.cgroup_v2_root,
                         init_loader=self.init_loader, log=log or self.log)

    # --- helpers ----------------------------------------------------------------------
    def _dir(self, cid: str) -> str:
        if not valid_id(cid):
            raise InvalidArgument("invalid container ID format")
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
        if self.cgroup_v2_root is None and not os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
            # the root of a cgroup2 mount always has that file: /sys/fs/cgroup
            # is no such mount, so v1 (hybrid included), without loading the
            # v2 driver to read mountinfo for it
            from pallet.plugins.runtime_ns import cgroups
            return cgroups, 1
        from pallet.plugins.runtime_ns import cgroups2
        root = self.cgroup_v2_root or cgroups2.unified_root()
        if root:
            cgroups2.set_root(root)
            return cgroups2, 2
        from pallet.plugins.runtime_ns import cgroups
        return cgroups, 1

    # --- create ---------------------------------------------------------------------
    def create(self, id: str, bundle: str, *, stdin=None, stdout=None, stderr=None,
               terminal_socket=None, pid_file=None, no_pivot=False, preserve_fds=0,
               extra_env=()) -> int:
        """Create container ``id`` from ``bundle``; its process waits for ``start``.

        ``extra_env`` (``NAME=value`` strings) comes after the spec's process
        environment (runc's socket activation adds LISTEN_FDS so).

        Returns the host pid of the container's PID 1 (a child of the caller,
        or reparented to it when a user or time namespace needs an
        intermediate process).  The poststart hooks run at the end, as runc
        1.1 runs them (the spec would have them after start).
        """
        # the container process will move into its cgroups: the kernel's wait
        # for that runs meanwhile (see warm_migration)
        warm_migration()
        # the container process runs this code after pivot_root, where nothing
        # can be imported any more: load all of it now (and only for create,
        # so that state/list/kill stay cheap for pallet-runc)
        from pallet.plugins.runtime_ns import devices, hooks, linux, process, spawn  # noqa: F401

        directory = self._dir(id)
        bundle = os.path.abspath(bundle)
        spec = read_spec(bundle)
        if extra_env:
            spec["process"]["env"] = list(spec["process"].get("env") or ()) + list(extra_env)
        rootfs = _rootfs_of(spec, bundle)
        init = self._init_for(spec)
        if init is not None:
            from pallet.linux import ksm  # noqa: F401  (the init's process uses it: see process)
        program, flags = _seccomp_of(spec)
        lnx = spec.get("linux") or {}
        res = lnx.get("resources") or {}
        cg, cg_version = self._cgroup_driver()
        if res.get("unified") and cg_version == 1:
            raise InvalidArgument("invalid configuration: cannot use unified on cgroup v1")
        if os.path.lexists(directory):
            raise AlreadyExists("container with given ID already exists")
        cg_paths = cg.paths_for(lnx.get("cgroupsPath") or id)
        try:
            for warning in cg.check_unused(cg_paths):
                self.warn(warning)
        except cg.CgroupError as e:
            raise PalletError(str(e)) from None
        os.makedirs(self.root, 0o700, exist_ok=True)
        try:
            os.mkdir(directory, 0o711)
        except FileExistsError:
            raise AlreadyExists("container with given ID already exists") from None
        cg_created, pid = [], None
        try:
            ContainerState.placeholder(directory, id, bundle, rootfs, spec).save()
            fifo = os.path.join(directory, EXEC_FIFO)
            os.mkfifo(fifo, 0o622)
            os.chmod(fifo, 0o622)  # against the umask: the container user writes it
            if program is not None:
                write_atomic(os.path.join(directory, SECCOMP_FILE), program)
            rules = devices.rules_of(res.get("devices"))
            if (res.get("memory") or {}).get("kernel") is not None or \
                    (res.get("memory") or {}).get("kernelTCP") is not None:
                self.warn("Kernel memory settings are ignored and will be removed")
            try:
                cg_paths, cg_created = cg.create(lnx.get("cgroupsPath") or id, res, rules)
            except getattr(cg, "ApplyError", ()) as e:
                if "memory" in cg_paths and e.before_memory:
                    # runc places the process before it makes the memory cgroup,
                    # then misses the OOM count of the one it never made
                    oom = os.path.join(cg_paths["memory"], "memory.oom_control")
                    try:
                        self.log("warning", "unable to get oom kill count",
                                 fields=(("error", f"openat2 {oom}: no such file or directory"),))
                    except TypeError:  # a log without logrus' fields
                        pass
                raise PalletError("unable to start container process: unable to apply cgroup "
                                  f"configuration: {describe(e)}") from None
            except (cg.CgroupError, OSError) as e:
                raise PalletError("unable to start container process: error during container "
                                  "init: error setting cgroup config for procHooks process: "
                                  f"{describe(e)}") from None
            opened: list[int] = []
            try:
                ns = spawn.namespaces_of(spec, opened)
                fifo_fd = os.open(fifo, os.O_PATH | os.O_CLOEXEC)
                opened.append(fifo_fd)

                def on_hooks(child_pid):
                    state = hooks.state_json(spec, id, "creating", child_pid, bundle)
                    hooks.run_all(spec, "prestart", state)
                    hooks.run_all(spec, "createRuntime", state)

                pid = spawn.spawn(spec, ns, (stdin, stdout, stderr), terminal_socket, preserve_fds,
                                  fifo_fd=fifo_fd, on_hooks=on_hooks, id=id, bundle=bundle,
                                  rootfs=rootfs, init=init, cgroup_paths=cg_paths,
                                  no_pivot=no_pivot, seccomp=program, seccomp_flags=flags,
                                  log=self.log)
            finally:
                for fd in opened:
                    os.close(fd)
            st = ContainerState.new(directory, id, pid, bundle, rootfs, spec, cg_paths, cg_created,
                                    cgroup_version=cg_version)
            st.data["pallet"]["seccomp_flags"] = flags if program is not None else None
            st.data["pallet"]["hooks"] = sorted(k for k, v in (spec.get("hooks") or {}).items() if v)
            st.data["pallet"]["resources"] = res
            st.data["pallet"]["oom_score_adj"] = (spec.get("process") or {}).get("oomScoreAdj")
            st.save()
            if (spec.get("hooks") or {}).get("poststart"):
                try:
                    hooks.run_all(spec, "poststart", hooks.state_json(spec, id, "created", pid,
                                                                      bundle))
                except hooks.HookError as e:
                    raise PalletError(str(e)) from None
            if pid_file:
                write_pid_file(pid_file, pid)
            return pid
        except BaseException:
            if pid is not None:  # never leave a process waiting for a start that cannot come
                spawn._kill_and_reap(pid)
            try:
                cg.remove_container(cg_paths)
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

    # --- exec --------------------------------------------------------------------------
    def exec(self, id: str, process: dict, *, stdin=None, stdout=None, stderr=None,
             terminal_socket=None, pid_file=None, preserve_fds=0, ignore_paused=False,
             cgroups=None) -> int:
        """Run ``process`` (an OCI ``process`` object) in the container ``id``.

        It joins the container's namespaces and cgroups (``cgroups``:
        controller -> sub-cgroup to join instead, "" for all, runc's
        ``exec --cgroup``) and starts at once (no exec FIFO), under the
        container's seccomp filter.  A paused container is refused unless
        ``ignore_paused`` (the process then waits, frozen, for resume).
        Returns its host pid, a child of the caller.
        """
        warm_migration()  # (see create)
        from pallet.plugins.runtime_ns import linux, spawn  # noqa: F401  (see create)
        from pallet.plugins.runtime_ns import process as _process  # noqa: F401

        st = self._load(id)
        status = st.status()
        if status in ("stopped", "creating"):
            raise FailedPrecondition("cannot exec in a stopped container")
        if status == "paused" and not ignore_paused:
            raise FailedPrecondition("cannot exec in a paused container (use --ignore-paused to "
                                     "override)")
        if not isinstance(process, dict) or not process.get("args"):
            raise InvalidArgument("args must not be empty")
        _check_process(process)
        program = None
        if st.data["pallet"].get("seccomp_flags") is not None:
            with open(os.path.join(st.dir, SECCOMP_FILE), "rb") as f:
                program = f.read()
        paths = _sub_cgroups(st.cgroup_paths, cgroups)
        # the OOM score is the container's, whatever the process asks (runc's
        # nsexec takes it from the container's configuration)
        process = {k: v for k, v in process.items() if k != "oomScoreAdj"}
        if st.data["pallet"].get("oom_score_adj") is not None:
            process["oomScoreAdj"] = st.data["pallet"]["oom_score_adj"]
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
                              cgroup_paths=paths, seccomp=program,
                              seccomp_flags=st.data["pallet"].get("seccomp_flags") or 0,
                              log=self.log)
        finally:
            for fd in opened:
                os.close(fd)
        if pid_file:
            write_pid_file(pid_file, pid)
        return pid

    def features(self) -> dict:
        """runc's ``features`` document for this runtime."""
        from pallet.plugins.runtime_ns.features import features
        return features()

    # --- start, kill, delete, state, list ------------------------------------------------
    def start(self, id: str) -> None:
        """Let the process blocked since ``create`` exec the user program."""
        st = self._load(id)
        status = st.status()
        if status == "stopped":
            raise FailedPrecondition("cannot start a container that has stopped")
        if status == "running":
            raise FailedPrecondition("cannot start an already running container")
        if status != "created":
            raise FailedPrecondition(f"cannot start a container in the {status} state")
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
                    raise PalletError("cannot start an already running container")
                if not st.alive():
                    raise PalletError("container process is already dead")
                if time.monotonic() > deadline:
                    raise PalletError(f"start container {id}: timeout waiting for the container "
                                      "process")
        finally:
            os.close(fd)
        try:
            os.unlink(st.fifo)
        except FileNotFoundError:
            pass

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
        """runc's Signal: to PID 1 (a SIGKILL thaws a paused container), or with
        ``all`` to every process of the cgroup (frozen meanwhile, thawed after)."""
        st = self._load(id)
        status = st.status()
        cg = st.cgroup_module
        if all:
            if status == "stopped" and not cg.exists(st.cgroup_paths):
                return
            self._signal_all(st, signal)
            return
        if status not in ("running", "created", "paused"):
            raise FailedPrecondition("container not running")
        try:
            os.kill(st.pid, signal)
        except OSError as e:
            raise PalletError(f"unable to signal init: {os.strerror(e.errno).lower()}") from None
        if status == "paused" and signal == 9:
            _quiet(cg.freeze, st.cgroup_paths, False)

    def _signal_all(self, st: ContainerState, signal: int) -> None:
        """runc's signalAllProcesses: freeze, signal every pid, thaw."""
        cg = st.cgroup_module
        try:
            cg.freeze(st.cgroup_paths, True)
        except cg.CgroupError as e:
            self.warn(str(e))
        try:
            pids = cg.all_pids(st.cgroup_paths)
        finally:
            pass
        for pid in pids:
            try:
                os.kill(pid, signal)
            except OSError as e:
                self.warn(os.strerror(e.errno).lower())
        try:
            cg.freeze(st.cgroup_paths, False)
        except cg.CgroupError as e:
            self.warn(str(e))

    def delete(self, id: str, force: bool = False) -> None:
        """runc's delete: a stopped container is destroyed, a created one (or
        any, with ``force``) killed first; the poststop hooks run last (a
        failure is logged, the container is gone anyway, as with runc)."""
        try:
            st = self._load(id)
        except NotFound:
            # an aborted create may have left the directory without a state
            _remove_state_dir(os.path.join(self.root, id))
            raise
        status = st.status()
        if force or status == "created":
            self._kill_container(st)
        elif status != "stopped":
            raise FailedPrecondition(f"cannot delete container {id} that is not stopped: {status}")
        self._destroy(st)

    def _kill_container(self, st: ContainerState) -> None:
        """runc's killContainer: SIGKILL to PID 1, then wait for it to go."""
        status = st.status()
        if status in ("running", "created", "paused"):
            try:
                os.kill(st.pid, 9)
            except OSError:
                pass
            if status == "paused":
                _quiet(st.cgroup_module.freeze, st.cgroup_paths, False)
        deadline = time.monotonic() + KILL_TIMEOUT
        while st.alive():
            if time.monotonic() > deadline:
                raise PalletError("container init still running")
            time.sleep(0.002)

    def _destroy(self, st: ContainerState) -> None:
        cg = st.cgroup_module
        kinds = {ns.get("type"): ns for ns in st.data["pallet"].get("namespaces") or ()}
        if "pid" not in kinds or kinds["pid"].get("path"):
            # no PID namespace of its own: its processes do not die with PID 1
            self._signal_all(st, 9)
        self._wait_cgroup_empty(st)
        error = None
        try:
            cg.remove_container(st.cgroup_paths, log=self.log)
        except cg.CgroupError as e:
            error = str(e)
        spec = self._spec_hooks(st, "poststop")
        _remove_state_dir(st.dir)
        if spec is not None:
            from pallet.plugins.runtime_ns import hooks
            try:
                hooks.run_all(spec, "poststop", hooks.state_json(spec, st.id, "stopped", 0,
                                                                 st.bundle))
            except hooks.HookError as e:
                error = error or str(e)
        if error:
            self.log("error", error)

    def _wait_cgroup_empty(self, st: ContainerState) -> None:
        """The processes of a dying PID namespace leave its cgroup a moment
        after PID 1: wait for them (zombies of ours are reaped by our caller)."""
        cg = st.cgroup_module
        deadline = time.monotonic() + KILL_TIMEOUT
        while time.monotonic() < deadline:
            pids = cg.all_pids(st.cgroup_paths) if st.cgroup_paths else []
            if not pids or _only_zombies(pids):
                return
            time.sleep(0.002)

    def state(self, id: str) -> dict:
        """runc's state JSON fields (ociVersion, id, pid, status, bundle, rootfs,
        created, annotations, owner)."""
        return self._load(id).oci()

    def list(self) -> list[dict]:
        """The state of every container under the root (runc's list: owner is
        the user owning the container's directory)."""
        out = []
        try:
            entries = sorted(os.scandir(self.root), key=lambda e: e.name)
        except FileNotFoundError:
            return out
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                try:
                    state = ContainerState.load(entry.path).oci()
                    uid = entry.stat(follow_symlinks=False).st_uid
                except (FileNotFoundError, ValueError, KeyError) as e:
                    self.log("error", f"load container {entry.name}: {describe(e)}")
                    continue  # being created or removed right now
                state["owner"] = _user_name(uid)
                out.append(state)
        return out

    def pause(self, id: str) -> None:
        """Freeze every process of the container (runc: running or created only)."""
        st = self._load(id)
        if st.status() not in ("running", "created"):
            raise FailedPrecondition("container not running")
        self._freeze(st, True)

    def resume(self, id: str) -> None:
        st = self._load(id)
        if st.status() != "paused":
            raise FailedPrecondition("container not paused")
        self._freeze(st, False)

    def _freeze(self, st, frozen):
        cg = st.cgroup_module
        try:
            cg.freeze(st.cgroup_paths, frozen)
        except cg.CgroupError as e:
            raise PalletError(str(e)) from None

    def pids(self, id: str) -> list[int]:
        """Host pids of the container's processes (its cgroup and below)."""
        st = self._load(id)
        return st.cgroup_module.all_pids(st.cgroup_paths)

    def update(self, id: str, resources: dict) -> None:
        """Change the limits of a container (``linux.resources`` fields to
        write; the devices cgroup is left as it is, as runc leaves it)."""
        st = self._load(id)
        if st.status() == "stopped":
            raise FailedPrecondition("container not running")
        cg = st.cgroup_module
        merged = _merge(st.data["pallet"].get("resources") or {}, resources)
        # runc's update leaves the device rules alone (pallet-runc never passes
        # any); other callers may replace them
        devices = None
        if "devices" in resources:
            from pallet.plugins.runtime_ns.devices import rules_of
            devices = rules_of(resources["devices"])
        try:
            cg.apply(st.cgroup_paths, merged if st.cgroup_version == 2 else resources, devices)
        except (cg.CgroupError, OSError) as e:
            # runc sets its config back after a failure, with the new values it
            # has already put into it: the same error again, as a warning
            self.warn(f"Setting back cgroup configs failed due to error: {describe(e)}, your "
                      "state.json and actual configs might be inconsistent.")
            raise PalletError(describe(e)) from None
        st.data["pallet"]["resources"] = merged
        st.save()

    def stats(self, id: str) -> dict:
        """runc's ``events --stats`` data (types.Stats: cpu, cpuset, memory, pids,
        blkio, hugetlb, intel_rdt, network_interfaces)."""
        st = self._load(id)
        if st.status() == "stopped":
            raise FailedPrecondition("container not running")
        return st.cgroup_module.stats(st.cgroup_paths)


# --- module helpers ----------------------------------------------------------------------

def read_spec(bundle: str) -> dict:
    """The bundle's config.json: runc's checks of the process first, then the
    OCI schema."""
    path = os.path.join(bundle, "config.json")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise InvalidArgument("JSON specification file config.json not found") from None
    except OSError as e:
        raise InvalidArgument(f"open {path}: {describe(e)}") from None
    try:
        # runc decodes the first JSON value of the file, with Go's messages
        spec, _end = json.first_value(data.decode("utf-8", errors="replace"))
    except ValueError as e:
        raise InvalidArgument(str(e)) from None
    from pallet.plugins.runtime_ns import godecode
    from pallet.plugins.runtime_ns.validate import (ConfigError, SchemaError, process_errors,
                                                    semantic_errors, specconv_errors,
                                                    validate_config)
    try:
        godecode.check(spec)  # runc decodes into Go structs before anything else
    except godecode.DecodeError as e:
        raise InvalidArgument(str(e)) from None
    why = process_errors(spec.get("process") if isinstance(spec, dict) else None)
    if why:
        raise InvalidArgument(why)
    try:
        specconv_errors(spec)
    except ConfigError as e:
        raise InvalidArgument(str(e)) from None
    for rl in (spec.get("process") or {}).get("rlimits") or ():
        if isinstance(rl, dict) and rl.get("type") not in _RLIMITS:
            raise InvalidArgument(f"wrong rlimit value: {rl.get('type')}")
    try:
        # what runc 1.1 does not read (newer spec fields) is no error of the config
        validate_config(_schema_view(godecode.known(spec)))
        semantic_errors(spec)
    except SchemaError as e:
        raise InvalidArgument(f"invalid configuration {path}: {e}") from None
    except ConfigError as e:
        raise InvalidArgument(str(e)) from None
    return spec


#: the rlimits runc knows (its strToRlimit)
_RLIMITS = frozenset(f"RLIMIT_{n}" for n in (
    "AS", "CORE", "CPU", "DATA", "FSIZE", "LOCKS", "MEMLOCK", "MSGQUEUE", "NICE", "NOFILE",
    "NPROC", "RSS", "RTPRIO", "RTTIME", "SIGPENDING", "STACK"))


def write_pid_file(path: str, pid: int) -> None:
    """runc's createPidFile: ".<name>" beside it, created exclusively, then renamed."""
    path = os.path.abspath(path)
    tmp = os.path.join(os.path.dirname(path), "." + os.path.basename(path))
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_SYNC | os.O_CLOEXEC, 0o666)
    try:
        os.write(fd, str(pid).encode())
    finally:
        os.close(fd)
    os.rename(tmp, path)


def _schema_view(spec: dict) -> dict:
    """What the schema checks of a spec runc has accepted so far: a seccomp
    rule naming no syscall is none to runc (the schema wants one)."""
    seccomp = (spec.get("linux") or {}).get("seccomp")
    if isinstance(seccomp, dict) and isinstance(seccomp.get("syscalls"), list):
        seccomp["syscalls"] = [c for c in seccomp["syscalls"]
                               if not (isinstance(c, dict) and c.get("names") == [])]
    return spec


def _check_process(process: dict) -> None:
    """An exec's process object against the schema's ``process`` part."""
    from pallet.plugins.runtime_ns import godecode
    from pallet.plugins.runtime_ns.validate import SchemaError, semantic_errors, validate_config
    try:
        godecode.check(process, "Process")
    except godecode.DecodeError as e:
        raise InvalidArgument(str(e)) from None
    try:
        validate_config({"ociVersion": "1.0.2", "process": godecode.known(process, "Process")})
        semantic_errors({"process": process})
    except SchemaError as e:
        raise InvalidArgument(f"invalid process: {e}") from None


def _sub_cgroups(paths: dict, subs) -> dict:
    """The container's cgroup paths with runc's ``exec --cgroup`` sub-cgroups."""
    if not subs:
        return paths
    out = dict(paths)
    for ctrl, sub in subs.items():
        for name, path in paths.items():
            if ctrl == "" or name == ctrl or (ctrl and name.split(",").count(ctrl)):
                out[name] = os.path.join(path, sub.lstrip("/"))
    return out


def _merge(old: dict, new: dict) -> dict:
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in old.items()}
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key].update(value)
        else:
            out[key] = value
    return out


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
    """root.path joined to the bundle, refused as runc refuses it: missing, or
    reached through a symlink."""
    root = (spec.get("root") or {}).get("path")
    if not root:
        raise InvalidArgument("root.path is not set in config.json")
    path = os.path.normpath(os.path.join(bundle, root))
    try:
        os.stat(path)
    except OSError as e:
        raise InvalidArgument(f"invalid rootfs: stat {path}: "
                              f"{os.strerror(e.errno).lower()}") from None
    if os.path.realpath(path) != path:
        raise InvalidArgument("invalid rootfs: not an absolute path, or a symlink")
    return path


def _user_name(uid: int) -> str:
    try:
        with open("/etc/passwd") as f:
            for line in f:
                parts = line.split(":")
                if len(parts) > 2 and parts[2] == str(uid):
                    return parts[0]
    except OSError:
        pass
    return f"#{uid}"


def _quiet(fn, *args) -> None:
    try:
        fn(*args)
    except Exception:
        pass


def _remove_state_dir(path: str) -> None:
    """rm -r of a state directory (flat: state.json, exec.fifo, temporaries)."""
    try:
        entries = list(os.scandir(path))
    except (FileNotFoundError, NotADirectoryError):
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
