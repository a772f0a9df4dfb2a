"""``pallet-shim`` (also installed as ``containerd-shim-pallet-v2``): one per container,
or one per group of containers (a Kubernetes pod), as containerd's runc shim.

Follows containerd's shim v2 command line (containerd runs it with the bundle
as working directory and ``TTRPC_ADDRESS`` in the environment)::

    pallet-shim -namespace NS -id ID -address CONTAINERD_SOCK [-publish-binary B] [-debug] start
    pallet-shim -namespace NS -id ID -address CONTAINERD_SOCK -bundle BUNDLE delete
    pallet-shim -namespace NS -id ID [-socket PATH] [-bundle BUNDLE]     # serve in the foreground
    pallet-shim -socket PATH zygote    # pallet-containerd's shim factory (zygote.py, launch.py)

``start`` reads the task's runtime options on stdin (as containerd writes
them), binds the shim's socket, forks the shim daemon into its own session
(no new interpreter), waits until it is ready, prints ``unix://SOCKET`` on
stdout and exits 0.  The socket is named for the task's shim group
(:func:`shim_group`): when the spec in the bundle names a group whose shim
serves already, ``start`` prints that shim's address instead, and the new
task is created in it (containerd's runc v2 shim groups a pod's containers
so, by the sandbox id containerd's CRI plugin puts on each of them).  ``delete`` cleans up after a dead shim (kills the
container, removes the runtime's state, unmounts the rootfs) and prints a
``containerd.task.v2.DeleteResponse`` (protobuf) on stdout.

pallet-containerd passes its own paths through the environment
(``PALLET_SHIM_SOCKET``, ``PALLET_RUNTIME_ROOT``); without them the socket and the
runtime root are derived from the bundle path, which containerd lays out as
``{state}/io.containerd.runtime.v2.task/{ns}/{id}`` (docs/ARCHITECTURE.md).

Imports stay lazy: this process exists once per container (or pod).
"""
from __future__ import annotations

import os
import sys

VERSION = "0.1.0"

_STRING_FLAGS = ("namespace", "id", "address", "publish-binary", "bundle", "socket")
_BOOL_FLAGS = ("debug", "v")


class UsageError(Exception):
    pass


class Options:
    def __init__(self):
        self.namespace = self.id = self.address = self.publish_binary = ""
        self.bundle = self.socket = ""
        self.debug = self.v = False
        self.verb = ""


def parse_args(argv: list[str]) -> Options:
    """Go ``flag`` syntax: ``-name value``, ``-name=value``, ``--name``; stops at the first verb."""
    opts = Options()
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            i += 1
            break
        if not arg.startswith("-") or arg == "-":
            break
        name = arg.lstrip("-")
        value = None
        if "=" in name:
            name, value = name.split("=", 1)
        attr = name.replace("-", "_")
        if name in _BOOL_FLAGS:
            setattr(opts, attr, value is None or value.lower() in ("1", "t", "true"))
        elif name in _STRING_FLAGS:
            if value is None:
                i += 1
                if i >= len(argv):
                    raise UsageError(f"flag needs an argument: -{name}")
                value = argv[i]
            setattr(opts, attr, value)
        else:
            raise UsageError(f"flag provided but not defined: -{name}")
        i += 1
    rest = argv[i:]
    opts.verb = rest[0] if rest else ""
    return opts


# --- locations ---------------------------------------------------------------------

_TASK_DIR = "io.containerd.runtime.v2.task"
#: spec annotations naming the shim group of a task, the first found wins (those
#: containerd's runc v2 shim reads; CRI puts the pod's id on its every container)
GROUP_ANNOTATIONS = ("io.containerd.runc.v2.group", "io.kubernetes.cri.sandbox-id")


def shim_group(bundle: str, id: str) -> str:
    """The shim group of task ``id``: the group its spec (``config.json`` in
    ``bundle``) names, else the task's own id (a shim of its own)."""
    import json

    try:
        with open(os.path.join(bundle, "config.json"), "rb") as f:
            annotations = json.load(f).get("annotations") or {}
        for key in GROUP_ANNOTATIONS:
            value = annotations.get(key)
            if isinstance(value, str) and value:
                return value
    except (OSError, ValueError, AttributeError):
        pass
    return id


def _state_of_bundle(bundle: str, namespace: str, id: str) -> str | None:
    """containerd's --state directory when ``bundle`` has containerd's layout."""
    parts = os.path.normpath(bundle).rsplit("/", 3)
    if len(parts) == 4 and parts[1:] == [_TASK_DIR, namespace, id]:
        return parts[0] or "/"
    return None


def socket_path(opts: Options, bundle: str) -> str:
    """Where this shim listens (see the module docstring)."""
    explicit = opts.socket or os.environ.get("PALLET_SHIM_SOCKET")
    if explicit:
        return explicit
    state = _state_of_bundle(bundle, opts.namespace, opts.id)
    group = shim_group(bundle, opts.id)
    import hashlib

    if state is not None:
        # paths.shim_socket(ns, group) of docs/ARCHITECTURE.md, without importing attrs
        digest = hashlib.sha256(f"{opts.namespace}/{group}".encode()).hexdigest()[:24]
        return os.path.join(state, "s", digest)
    digest = hashlib.sha256(f"{opts.address}/{opts.namespace}/{group}".encode()).hexdigest()
    return os.path.join("/run/containerd/s", digest[:24])


def runtime_root(opts: Options, bundle: str) -> str:
    """--root of the runtime for this namespace: paths.runtime_root/{ns}."""
    explicit = os.environ.get("PALLET_RUNTIME_ROOT")
    if explicit:
        return explicit
    state = _state_of_bundle(bundle, opts.namespace, opts.id)
    if state is None:
        state = "/run/pallet/containerd"
    return os.path.join(state, "runtime", opts.namespace)


# --- the daemon ----------------------------------------------------------------------

def _redirect_stdio(bundle: str) -> None:
    """stdin/stdout -> /dev/null; stderr -> the bundle's ``log`` FIFO when containerd reads it.

    containerd reads the start verb's output until EOF on both stdout and
    stderr, so the daemon must let go of them before the start verb answers.
    """
    devnull = os.open(os.devnull, os.O_RDWR)
    log_fd = None
    try:
        # O_NONBLOCK: opening a FIFO's write end fails (ENXIO) rather than blocks
        # when nobody reads it (fifo(7))
        log_fd = os.open(os.path.join(bundle, "log"), os.O_WRONLY | os.O_NONBLOCK)
        os.set_blocking(log_fd, True)
    except OSError:
        log_fd = None
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.dup2(log_fd if log_fd is not None else devnull, 2)
    os.close(devnull)
    if log_fd is not None:
        os.close(log_fd)


def _logger(id: str, debug: bool):
    """A log function writing one line to stderr (the bundle's ``log`` FIFO, or /dev/null)."""
    import time

    def log(text: str) -> None:
        line = f"{time.strftime('%Y-%m-%dT%H:%M:%S')} pallet-shim {id}: {text}\n"
        try:
            os.write(2, line.encode(errors="replace"))
        except OSError:
            pass
    return log


class Daemon:
    """The running shim: its loop, ttrpc server and task service.

    ``runtime`` is the runtime role's object when the caller loaded it
    already (the zygote); otherwise it is loaded at the first Create.
    """

    def __init__(self, opts: Options, bundle: str, sock_path: str, listener=None, runtime=None):
        self.opts = opts
        self.bundle = bundle
        self.sock_path = sock_path
        self.listener = listener
        self.runtime = runtime
        self.marked: list[str] = []   # the bundles holding our address

    def prepare(self) -> None:
        from pallet.shim import events, runtimes, server, service
        from pallet.core.files import write_atomic
        from pallet.linux import syscalls as sysutil
        from pallet.shim.loop import Loop

        opts = self.opts
        sysutil.set_child_subreaper()
        sysutil.set_process_name(f"pallet-shim {opts.id}")
        self.log = log = _logger(opts.id, opts.debug)
        self.loop = loop = Loop()
        loop.watch_children()
        children = runtimes.Children()
        ns_root = runtime_root(opts, self.bundle)

        def backend_for(options: dict):
            from pallet.shim import runtime_loader as roles

            if options.get("binary_name"):  # runc's BinaryName: runtime_oci with that binary
                runtime = roles.load_runtime(options["binary_name"],
                                             bool(options.get("systemd_cgroup")))
                root = options.get("root") or ns_root
            else:
                if self.runtime is None:
                    self.runtime = roles.load_runtime()
                runtime, root = self.runtime, ns_root
            return runtimes.ForkedRuntime(loop, children, roles.for_namespace(runtime, root), log)

        publisher = events.open_publisher(loop, opts.namespace, log)
        self.service = service.TaskService(
            loop, opts.id, opts.namespace, self.bundle, children=children,
            backend_for=backend_for, sock_dir=os.path.dirname(self.sock_path),
            publisher=publisher, on_exit=self.exit, log=log, mark_bundle=self.mark)
        if self.listener is None:
            self.listener = bind_socket(self.sock_path)
        self.server = server.Server(loop, self.listener, self.service.services(), log)
        self.server.start()
        self.mark(self.bundle)

    def mark(self, bundle: str) -> None:
        """Note in a task's bundle where its shim serves (``address``) and which
        process it is (``shim.pid``): pallet-containerd finds both there after a
        restart, for every task of a shared shim."""
        from pallet.core.files import write_atomic

        try:
            write_atomic(os.path.join(bundle, "address"), f"unix://{self.sock_path}",
                         fsync=False)
            write_atomic(os.path.join(bundle, "shim.pid"), str(os.getpid()), fsync=False)
        except OSError:
            return  # a bundle we cannot write to is reported by Create
        if bundle not in self.marked:
            self.marked.append(bundle)

    def serve(self) -> None:
        self.loop.run()

    def exit(self) -> None:
        """End the shim (after Shutdown's reply has been sent)."""
        for bundle in self.marked:
            try:
                os.unlink(os.path.join(bundle, "address"))
            except OSError:
                pass
        self.server.close(self.sock_path)
        os._exit(0)


def bind_socket(path: str):
    """The shim's listening unix socket at ``path`` (a stale file is replaced), mode 0600."""
    from pallet.linux.sockets import bind_unix

    return bind_unix(path, mode=0o600)


def _close_fds_except(keep: set[int]) -> None:
    """Close what the daemon inherited by accident (the zygote's pipes to other shims)."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def _daemonize(opts: Options, bundle: str, sock_path: str, listener, ready_fd: int,
               runtime=None) -> None:
    """Child side of ``start``: become the shim daemon; never returns."""
    code = 1
    try:
        _close_fds_except({0, 1, 2, listener.fileno(), ready_fd})
        os.setsid()
        os.chdir(bundle)
        _redirect_stdio(bundle)
        daemon = Daemon(opts, bundle, sock_path, listener, runtime)
        daemon.prepare()
        os.write(ready_fd, b"ok")
        os.close(ready_fd)
        daemon.serve()
        code = 0
    except BaseException as e:  # the parent reports it on the start verb's stderr
        try:
            os.write(ready_fd, f"error: {e}".encode()[:4000])
        except OSError:
            pass
        try:
            os.unlink(sock_path)
        except OSError:
            pass
    os._exit(code)


def _already_serving(path: str) -> bool:
    from pallet.linux.sockets import answers

    return answers(path, timeout=2)


def spawn_daemon(opts: Options, bundle: str, sock_path: str, *, timeout: float = 20.0,
                 runtime=None, before_fork=None, fork=os.fork) -> tuple[str, int]:
    """Bind the socket, fork the daemon in its own session, wait until it is ready.

    Returns the ``unix://`` address and the daemon's pid, or the address and
    0 when the shim of the task's group serves already.  The caller must be
    single-threaded (a fresh ``pallet-shim start`` process, or the zygote);
    ``fork`` forks it (the zygote's skips Python's at-fork callbacks, see
    :mod:`.heap`).
    """
    import fcntl

    address = f"unix://{sock_path}"
    os.makedirs(os.path.dirname(sock_path), mode=0o711, exist_ok=True)
    # one starter at a time per socket directory: two tasks of one group started
    # at once must not both bind (the second would replace the first's socket)
    lock = os.open(os.path.dirname(sock_path), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.exists(sock_path) and _already_serving(sock_path):
            # the group's shim serves already: the task joins it (containerd's runc
            # shim too writes the address it reuses in the new bundle)
            from pallet.core.files import write_atomic

            write_atomic(os.path.join(bundle, "address"), address, fsync=False)
            return address, 0
        return _fork_daemon(opts, bundle, sock_path, timeout, runtime, before_fork, fork)
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)  # the forked daemon holds a copy of the descriptor
        os.close(lock)


def _fork_daemon(opts: Options, bundle: str, sock_path: str, timeout: float, runtime,
                 before_fork, fork) -> tuple[str, int]:
    import select

    from pallet.core import errors

    address = f"unix://{sock_path}"
    listener = bind_socket(sock_path)
    r, w = os.pipe()
    pid = fork()
    if pid == 0:
        os.close(r)
        if before_fork is not None:
            before_fork()
        _daemonize(opts, bundle, sock_path, listener, w, runtime)
    os.close(w)
    listener.close()
    chunks = []
    try:
        while True:
            ready, _, _ = select.select([r], [], [], timeout)
            if not ready:
                os.kill(pid, 9)  # a daemon that hangs in its setup is of no use
                raise errors.Unavailable(f"shim {opts.id}: not ready after {timeout:g}s")
            chunk = os.read(r, 4096)
            if not chunk:
                break
            chunks.append(chunk)
            if b"".join(chunks).startswith(b"ok"):
                break
    finally:
        os.close(r)
    msg = b"".join(chunks).decode(errors="replace")
    if not msg.startswith("ok"):
        raise errors.PalletError(msg[len("error: "):] if msg.startswith("error: ")
                                 else f"shim {opts.id}: daemon exited before it was ready")
    return address, pid


# --- verbs ---------------------------------------------------------------------------

def _start_options(bundle: str) -> None:
    """containerd writes the task's runtime options (an Any) on the start verb's stdin:
    keep runc's (BinaryName, Root...) in the bundle for Create."""
    import select

    try:
        if not select.select([0], [], [], 0.5)[0]:
            return
        data = b""
        while len(data) < 1 << 20:
            chunk = os.read(0, 65536)
            if not chunk:
                break
            data += chunk
    except OSError:
        return
    if not data:
        return
    from pallet.proto.wire import Any
    from pallet.shim import service

    try:
        options = service.runtime_options(Any.decode(data))
    except ValueError:
        return
    if options:
        service.write_json_atomic(os.path.join(bundle, service.OPTIONS_FILE), options,
                                  fsync=False)   # a state file: not synced, as containerd's


def cmd_start(opts: Options) -> int:
    bundle = os.path.abspath(opts.bundle or os.getcwd())
    _start_options(bundle)
    runtime = None
    try:
        from pallet.shim import runtime_loader as roles

        runtime = roles.load_runtime()
    except Exception as e:  # noqa: BLE001 - Create reports it again, to containerd
        print(f"load the runtime role: {e}", file=sys.stderr)
    address, _pid = spawn_daemon(opts, bundle, socket_path(opts, bundle), runtime=runtime)
    sys.stdout.write(address)
    sys.stdout.flush()
    return 0


def encode_delete_response(pid: int, exit_status: int, exited_at_ns: int) -> bytes:
    """containerd.task.v2.DeleteResponse, with the shim's own wire codec rather
    than protobuf, so that the delete verb (run by containerd after every
    shim) stays light."""
    from pallet.proto import shim_task as m
    from pallet.proto.wire import timestamp

    return m.DeleteResponse(pid=pid, exit_status=exit_status,
                            exited_at=timestamp(exited_at_ns)).encode()


def _read_exit_record(bundle: str) -> dict:
    import json

    try:
        with open(os.path.join(bundle, "exit.json")) as f:  # service.EXIT_FILE
            data = json.load(f)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _mounted(path: str) -> bool:
    try:
        with open("/proc/self/mountinfo") as f:
            return any(line.split()[4] == path for line in f)
    except (OSError, IndexError):
        return False


def _delete_runtime_state(opts: Options, bundle: str) -> None:
    """Kill what is left of the container and remove the runtime's state (runc
    ``delete --force``), with the backend the shim used (``options.json``)."""
    import json

    try:
        with open(os.path.join(bundle, "options.json")) as f:
            options = json.load(f)
    except (OSError, ValueError):
        options = {}
    if not isinstance(options, dict):
        options = {}
    root = options.get("root") or runtime_root(opts, bundle)
    if not os.path.exists(os.path.join(root, opts.id)):
        return
    from pallet.core import errors
    from pallet.shim import runtime_loader as roles

    if options.get("binary_name"):
        runtime = roles.load_runtime(options["binary_name"], bool(options.get("systemd_cgroup")))
    else:
        runtime = roles.load_runtime()
    try:
        roles.for_namespace(runtime, root).delete(opts.id, force=True)
    except errors.NotFound:
        pass


def cmd_delete(opts: Options) -> int:
    """Clean up after a dead shim: the container, the runtime's state, the rootfs
    mount, the socket; print a DeleteResponse.

    After a clean Delete and Shutdown there is nothing left to do, and the
    verb imports nothing heavy to find that out.
    """
    import time

    bundle = os.path.abspath(opts.bundle or os.getcwd())
    record = _read_exit_record(bundle)
    try:
        _delete_runtime_state(opts, bundle)
    except Exception as e:  # noqa: BLE001 - containerd logs our stderr as cleanup warnings
        print(f"delete runtime state of {opts.id}: {e}", file=sys.stderr)
    rootfs = os.path.join(os.path.realpath(bundle), "rootfs")
    if _mounted(rootfs):
        from pallet.linux import syscalls as sysutil

        try:
            sysutil.umount2(rootfs, sysutil.MNT_DETACH)
        except OSError as e:
            print(f"unmount {rootfs}: {e.strerror}", file=sys.stderr)
    sock = socket_path(opts, bundle)
    if os.path.exists(sock) and not _already_serving(sock):
        try:
            os.unlink(sock)
        except OSError:
            pass
    try:
        exit_status = int(record.get("exit_status", 128 + 9))
        pid = int(record.get("pid") or 0)
        exited_ns = int(record.get("exited_at_ns") or 0)
    except (TypeError, ValueError):
        exit_status, pid, exited_ns = 128 + 9, 0, 0
    # an unknown end is reported as a SIGKILL now, as containerd's runc shim does
    data = encode_delete_response(pid, exit_status, exited_ns or time.time_ns())
    sys.stdout.buffer.write(data)
    sys.stdout.flush()
    return 0


def cmd_serve(opts: Options) -> int:
    """No verb: serve in the foreground (debugging, or a supervisor of one's own)."""
    bundle = os.path.abspath(opts.bundle or os.getcwd())
    daemon = Daemon(opts, bundle, socket_path(opts, bundle))
    daemon.prepare()
    daemon.serve()
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "pallet-shim"
    try:
        opts = parse_args(argv)
    except UsageError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 2
    if opts.v:
        print(f"{prog}:\n  Version:  {VERSION}\n")
        return 0
    if opts.verb == "zygote":
        from pallet.shim.zygote import serve

        if not opts.socket:
            print(f"{prog}: zygote needs -socket PATH", file=sys.stderr)
            return 2
        return serve(opts.socket)
    if not opts.namespace:
        print(f"{prog}: shim namespace cannot be empty", file=sys.stderr)
        return 1
    if not opts.id:
        print(f"{prog}: shim id cannot be empty", file=sys.stderr)
        return 1
    verbs = {"start": cmd_start, "delete": cmd_delete, "": cmd_serve}
    if opts.verb not in verbs:
        print(f"{prog}: unknown verb {opts.verb!r} (start, delete)", file=sys.stderr)
        return 2
    try:
        return verbs[opts.verb](opts)
    except KeyboardInterrupt:
        return 130
    except Exception as e:
        from pallet.core.errors import PalletError

        msg = str(e) if isinstance(e, (PalletError, OSError)) else f"{type(e).__name__}: {e}"
        print(f"{prog}: {msg}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
