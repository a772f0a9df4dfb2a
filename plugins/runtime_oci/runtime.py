"""OciRuntime: the runtime contract (``pallet.core.contracts.Runtime``) over
an OCI runtime binary's command line (runc's, which crun and pallet-runc share).

Each method is one run of the binary (:mod:`.command`).  Create and exec
detach: the binary forks the container's process and exits, and the
process is reparented to the caller, a child subreaper as the contract
says, which reaps it.  The object holds only the binary's path and its
flags, so it pickles (pallet-shim receives it pickled, see
``pallet.shim.runtime_loader``) and costs nothing to copy for another root.

The builtin init of init_tini (the spec annotation ``org.pallet.init:
builtin``) runs inside runtime_ns's own process; a binary cannot run it, so
a spec asking for it is refused with the fix in the message, rather than
run without the init it asked for.
"""
from __future__ import annotations

import json
import os

from pallet.core import errors

from pallet.plugins.runtime_oci import command

#: the annotation through which init_tini asks for its builtin init
#: (docs/ARCHITECTURE.md, "Names other parts depend on")
INIT_ANNOTATION = "org.pallet.init"


class OciRuntime:
    """An OCI runtime binary on the state root ``root`` (its ``--root``).

    ``binary`` is the binary's path (:meth:`for_binary` finds it by name);
    ``systemd_cgroup`` passes ``--systemd-cgroup``; ``timeout`` bounds each
    run of the binary.
    """

    name = "runtime_oci"

    def __init__(self, binary: str, root: str, *, systemd_cgroup: bool = False,
                 timeout: float = 60.0):
        self.binary = binary
        self.root = os.path.abspath(root)
        self.systemd_cgroup = bool(systemd_cgroup)
        self.timeout = float(timeout)

    @classmethod
    def for_binary(cls, name: str, root: str, **kw) -> "OciRuntime":
        """The runtime of the binary ``name`` (on PATH, or a path); ``NotFound``
        if there is no such executable."""
        return cls(command.find_binary(name), root, **kw)

    def __repr__(self) -> str:
        return f"OciRuntime({self.binary!r}, root={self.root!r})"

    # --- running the binary -------------------------------------------------------------
    def _run(self, verb: str, *args: str, stdio=None, preserve_fds: int = 0) -> bytes:
        """Run ``verb``; its stdout, or its error as a core error class."""
        log = command.memfd("runtime-log")
        try:
            argv = [self.binary, "--root", self.root, "--log", command.fd_path(log),
                    "--log-format", "json"]
            if self.systemd_cgroup:
                argv.append("--systemd-cgroup")
            result = command.run(argv + [verb, *args], stdio=stdio, preserve_fds=preserve_fds,
                                 timeout=self.timeout)
            if result.ok:
                return result.out
            message = command.error_message(command.read_all(log), result.err)
        finally:
            os.close(log)
        raise command.error_for(message or f"{os.path.basename(self.binary)} {verb}: "
                                f"{result.describe()}", root=self.root, verb=verb)

    def _json(self, verb: str, *args: str):
        out = self._run(verb, *args)
        try:
            return json.loads(out) if out.strip() else None
        except ValueError as e:
            raise errors.PalletError(f"{os.path.basename(self.binary)} {verb}: "
                                     f"output is not json ({e})") from None

    def _temporary_pid_file(self) -> str:
        # the binary writes it by rename, so it cannot be a memfd: a file of
        # ours in the root, which the binaries' list skips (not a directory)
        os.makedirs(self.root, 0o700, exist_ok=True)
        return os.path.join(self.root, f".pid-{os.urandom(6).hex()}")

    # --- create, exec ------------------------------------------------------------------
    def create(self, id: str, bundle: str, *, stdin: int | None = None,
               stdout: int | None = None, stderr: int | None = None,
               terminal_socket: str | None = None, pid_file: str | None = None,
               no_pivot: bool = False, preserve_fds: int = 0) -> int:
        """``create``: the container's process waits for :meth:`start`; its host pid."""
        bundle = os.path.abspath(bundle)
        refuse_builtin_init(read_spec(bundle), self.binary)
        own = pid_file is None
        path = self._temporary_pid_file() if own else os.path.abspath(pid_file)
        args = ["--bundle", bundle, "--pid-file", path]
        if terminal_socket:
            args += ["--console-socket", terminal_socket]
        if no_pivot:
            args.append("--no-pivot")
        if preserve_fds:
            args += ["--preserve-fds", str(int(preserve_fds))]
        try:
            self._run("create", *args, id, stdio=(stdin, stdout, stderr),
                      preserve_fds=preserve_fds)
            return _read_pid(path)
        finally:
            if own:
                _unlink(path)

    def exec(self, id: str, process: dict, *, stdin: int | None = None,
             stdout: int | None = None, stderr: int | None = None,
             terminal_socket: str | None = None, pid_file: str | None = None,
             preserve_fds: int = 0) -> int:
        """``exec --detach --process``: ``process`` started in the container; its host pid."""
        if not isinstance(process, dict) or not process.get("args"):
            raise errors.InvalidArgument("args must not be empty")
        spec = command.memfd("runtime-process", json.dumps(process).encode())
        own = pid_file is None
        path = self._temporary_pid_file() if own else os.path.abspath(pid_file)
        args = ["--process", command.fd_path(spec), "--detach", "--pid-file", path]
        if terminal_socket:
            args += ["--console-socket", terminal_socket]
        if process.get("terminal"):
            args.append("--tty")
        if preserve_fds:
            args += ["--preserve-fds", str(int(preserve_fds))]
        try:
            self._run("exec", *args, id, stdio=(stdin, stdout, stderr), preserve_fds=preserve_fds)
            return _read_pid(path)
        finally:
            os.close(spec)
            if own:
                _unlink(path)

    # --- the other verbs -----------------------------------------------------------------
    def start(self, id: str) -> None:
        self._run("start", id)

    def kill(self, id: str, signal: int, all: bool = False) -> None:
        self._run("kill", *(["--all"] if all else []), id, str(int(signal)))

    def delete(self, id: str, force: bool = False) -> None:
        """``delete``: the state, cgroups and mounts the binary made (``force``:
        kill a running container first; a missing one is then no error, as
        with runc)."""
        self._run("delete", *(["--force"] if force else []), id)

    def state(self, id: str) -> dict:
        state = self._json("state", id)
        if not isinstance(state, dict):
            raise errors.PalletError(f"{os.path.basename(self.binary)} state {id}: "
                                     "not a json object")
        return state

    def list(self) -> list[dict]:
        return list(self._json("list", "--format", "json") or [])

    def pause(self, id: str) -> None:
        self._run("pause", id)

    def resume(self, id: str) -> None:
        self._run("resume", id)

    def pids(self, id: str) -> list[int]:
        return [int(p) for p in self._json("ps", "--format", "json", id) or []]

    def update(self, id: str, resources: dict) -> None:
        """``update --resources``: ``linux.resources`` of the running container."""
        fd = command.memfd("runtime-resources", json.dumps(resources).encode())
        try:
            self._run("update", "--resources", command.fd_path(fd), id)
        finally:
            os.close(fd)

    def stats(self, id: str) -> dict:
        """``events --stats``: the ``data`` of its one stats event."""
        out = self._run("events", "--stats", id)
        for line in out.splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict) and event.get("type") == "stats":
                return event.get("data") or {}
        raise errors.PalletError(f"{os.path.basename(self.binary)} events --stats {id}: "
                                 "no stats event")

    def features(self) -> dict:
        return self._json("features") or {}

    def with_root(self, root: str) -> "OciRuntime":
        """The same binary on another state root (one per containerd namespace)."""
        return OciRuntime(self.binary, root, systemd_cgroup=self.systemd_cgroup,
                          timeout=self.timeout)


def read_spec(bundle: str) -> dict:
    """The bundle's config.json (checked here so that a missing one is the
    same error under every binary)."""
    path = os.path.join(bundle, "config.json")
    try:
        with open(path, "rb") as f:
            spec = json.loads(f.read())
    except FileNotFoundError:
        raise errors.InvalidArgument(f"open {path}: no such file or directory") from None
    except (OSError, ValueError) as e:
        raise errors.InvalidArgument(f"read {path}: {e}") from None
    if not isinstance(spec, dict):
        raise errors.InvalidArgument(f"read {path}: not a json object")
    return spec


def refuse_builtin_init(spec: dict, binary: str) -> None:
    """A spec that asks for init_tini's builtin init cannot run under a binary."""
    if (spec.get("annotations") or {}).get(INIT_ANNOTATION) == "builtin":
        raise errors.InvalidArgument(
            f"runtime_oci ({os.path.basename(binary)}) cannot run the builtin init that "
            f"--init asks for (annotation {INIT_ANNOTATION}=builtin): configure "
            "[roles] init = \"init_exec\" (a static init binary bind-mounted into the "
            "container, as dockerd's --init-path does)")


def _read_pid(path: str) -> int:
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError) as e:
        raise errors.PalletError(f"read pid file {path}: {e}") from None


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
