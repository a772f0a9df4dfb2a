"""pallet-ctr's commands that run processes: run, containers create, tasks start,
exec and attach.

The OCI spec is built as ctr builds it (containerd's default Unix spec, then
the image's config, then the flags); the process's stdio are FIFOs in a
directory of their own, copied to and from this terminal (raw mode with
``-t``, window size passed on with ResizePty), and the exit status of the
task becomes ours.
"""
from __future__ import annotations

import asyncio
import json
import os
import select
import signal
import sys
import threading

from pallet.client.ctr import ExitStatus, UsageError, delete_container, parse_flags
from pallet.core import errors

DEFAULT_RUNTIME = "io.containerd.runc.v2"
RUNC_OPTIONS = "containerd.runc.v1.Options"
#: the runtimes whose shims take runc's options: runc's and pallet's
RUNC_OPTIONS_RUNTIMES = ("io.containerd.runc.v2", "io.containerd.runc.v1",
                         "io.containerd.pallet.v2", "io.containerd.pallet.v1")
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_CAPS = ("CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
                "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
                "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE")
STOP_SIGNAL_LABEL = "io.containerd.image.config.stop-signal"

CONTAINER_FLAGS = {
    "snapshotter": ("str", [], None), "snapshotter-label": ("list", [], []),
    "config": ("str", ["c"], ""), "cwd": ("str", [], ""), "env": ("list", [], []),
    "env-file": ("str", [], ""), "label": ("list", [], []), "annotation": ("list", [], []),
    "mount": ("list", [], []), "net-host": ("bool", [], False),
    "privileged": ("bool", [], False), "read-only": ("bool", [], False),
    "runtime": ("str", [], DEFAULT_RUNTIME), "runtime-config-path": ("str", [], ""),
    "tty": ("bool", ["t"], False), "with-ns": ("list", [], []), "pid-file": ("str", [], ""),
    "allow-new-privs": ("bool", [], False), "memory-limit": ("int", [], 0),
    "cap-add": ("list", [], []), "cap-drop": ("list", [], []), "cpus": ("str", [], ""),
    "cpu-shares": ("int", [], 0), "cpu-quota": ("int", [], -1), "cpu-period": ("int", [], 0),
    "cgroup": ("str", [], None), "platform": ("str", [], ""),
    "runc-binary": ("str", [], ""), "runc-root": ("str", [], ""),
    "runc-systemd-cgroup": ("bool", [], False), "rootfs": ("bool", [], False),
    "no-pivot": ("bool", [], False), "user": ("str", ["u"], ""), "hostname": ("str", [], ""),
    "device": ("list", [], []), "seccomp": ("bool", [], False),
}
RUN_FLAGS = dict(CONTAINER_FLAGS, **{
    "rm": ("bool", [], False), "null-io": ("bool", [], False), "log-uri": ("str", [], ""),
    "detach": ("bool", ["d"], False), "fifo-dir": ("str", [], ""),
})


# --- the spec --------------------------------------------------------------------------------

def default_spec(namespace: str, cid: str) -> dict:
    """containerd's default Unix spec (oci.WithDefaultSpec), as ctr starts from it."""
    caps = list(DEFAULT_CAPS)
    return {
        "ociVersion": "1.0.2-dev",
        "process": {
            "user": {"uid": 0, "gid": 0}, "args": [], "env": [DEFAULT_PATH], "cwd": "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs"},
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620",
                         "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/run", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        ],
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}] + [
                {"allow": True, "type": "c", "major": ma, "minor": mi, "access": "rwm"}
                for ma, mi in ((1, 3), (1, 8), (1, 7), (5, 0), (1, 5), (1, 9), (5, 1))] + [
                {"allow": True, "type": "c", "major": 136, "access": "rwm"},
                {"allow": True, "type": "c", "major": 5, "minor": 2, "access": "rwm"}]},
            "cgroupsPath": f"/{namespace}/{cid}",
            "namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount", "network")],
            "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                            "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                            "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                              "/proc/sysrq-trigger"],
        },
    }


def merge_env(base: list[str], extra) -> list[str]:
    """containerd's replaceOrAppendEnvValues: later values win, order kept."""
    out = list(base)
    index = {e.split("=", 1)[0]: i for i, e in enumerate(out)}
    for e in extra or ():
        key = e.split("=", 1)[0]
        if key in index:
            out[index[key]] = e
        else:
            index[key] = len(out)
            out.append(e)
    return out


def parse_mount(text: str) -> dict:
    """``type=bind,src=/a,dst=/b,options=rbind:ro`` -> an OCI mount."""
    m = {"type": "", "source": "", "destination": "", "options": []}
    for part in text.split(","):
        key, _, value = part.partition("=")
        key = key.strip().lower()
        if key == "type":
            m["type"] = value
        elif key in ("source", "src"):
            m["source"] = value
        elif key in ("destination", "dst", "target"):
            m["destination"] = value
        elif key == "options":
            m["options"] = [o for o in value.split(":") if o]
        else:
            raise UsageError(f"mount option {key!r} not supported")
    if not m["destination"]:
        raise UsageError(f"mount {text!r}: no destination")
    return m


def _all_caps() -> list[str]:
    names = ("CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP "
             "LINUX_IMMUTABLE NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK "
             "IPC_OWNER SYS_MODULE SYS_RAWIO SYS_CHROOT SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT "
             "SYS_NICE SYS_RESOURCE SYS_TIME SYS_TTY_CONFIG MKNOD LEASE AUDIT_WRITE AUDIT_CONTROL "
             "SETFCAP MAC_OVERRIDE MAC_ADMIN SYSLOG WAKE_ALARM BLOCK_SUSPEND AUDIT_READ PERFMON "
             "BPF CHECKPOINT_RESTORE").split()
    return ["CAP_" + n for n in names]


def _set_caps(proc: dict, caps: list[str]) -> None:
    proc["capabilities"] = {k: list(caps) for k in ("bounding", "effective", "permitted")}


def apply_flags(spec: dict, f, image_config: dict, args: list[str]) -> None:
    """The image's config, then the flags, as ctr applies them to the spec."""
    proc = spec["process"]
    if image_config:
        proc["env"] = merge_env(proc["env"], image_config.get("Env"))
        if image_config.get("WorkingDir"):
            proc["cwd"] = image_config["WorkingDir"]
        if not args:
            args = list(image_config.get("Entrypoint") or []) + list(image_config.get("Cmd") or [])
    if args:
        proc["args"] = list(args)
    if not proc["args"]:
        raise UsageError("no command given and the image has none")
    env = list(f.env)
    if f.env_file:
        with open(f.env_file) as fh:
            env += [line.strip() for line in fh if line.strip() and not line.startswith("#")]
    proc["env"] = merge_env(proc["env"], env)
    if f.cwd:
        proc["cwd"] = f.cwd
    if f.tty:
        proc["terminal"] = True
    if f.allow_new_privs:
        proc["noNewPrivileges"] = False
    if f.read_only:
        spec["root"]["readonly"] = True
    if f.hostname:
        spec["hostname"] = f.hostname
    lnx = spec["linux"]
    if f.cgroup is not None:
        lnx["cgroupsPath"] = f.cgroup
        if not f.cgroup:
            del lnx["cgroupsPath"]
    for text in f.mount:
        spec["mounts"].append(parse_mount(text))
    if f.net_host:
        lnx["namespaces"] = [n for n in lnx["namespaces"] if n["type"] != "network"]
        for path in ("/etc/hosts", "/etc/resolv.conf"):
            if os.path.exists(path):
                spec["mounts"].append({"destination": path, "type": "bind", "source": path,
                                       "options": ["rbind", "ro"]})
    for text in f.with_ns:
        kind, _, path = text.partition(":")
        lnx["namespaces"] = [n for n in lnx["namespaces"] if n["type"] != kind] + \
            [{"type": kind, "path": path}]
    if f.privileged:
        _set_caps(proc, _all_caps())
        lnx.pop("maskedPaths", None)
        lnx.pop("readonlyPaths", None)
        lnx["resources"]["devices"] = [{"allow": True, "access": "rwm"}]
        for m in spec["mounts"]:
            if m["type"] == "sysfs":
                m["options"] = [o for o in m["options"] if o != "ro"]
    caps = proc["capabilities"]["bounding"]
    for cap in f.cap_add:
        cap = cap.upper() if cap.upper().startswith("CAP_") else "CAP_" + cap.upper()
        if cap not in caps:
            caps = caps + [cap]
    for cap in f.cap_drop:
        cap = cap.upper() if cap.upper().startswith("CAP_") else "CAP_" + cap.upper()
        caps = [c for c in caps if c != cap]
    if f.cap_add or f.cap_drop:
        _set_caps(proc, caps)
    res = lnx.setdefault("resources", {})
    if f.memory_limit:
        res.setdefault("memory", {})["limit"] = f.memory_limit
    if f.cpus:
        period = 100000
        res.setdefault("cpu", {}).update(period=period, quota=int(float(f.cpus) * period))
    if f.cpu_shares:
        res.setdefault("cpu", {})["shares"] = f.cpu_shares
    if f.cpu_quota != -1:
        res.setdefault("cpu", {})["quota"] = f.cpu_quota
    if f.cpu_period:
        res.setdefault("cpu", {})["period"] = f.cpu_period
    annotations = dict(x.partition("=")[::2] for x in f.annotation)
    if annotations:
        spec["annotations"] = {**spec.get("annotations", {}), **annotations}


# --- users --------------------------------------------------------------------------------

def _lookup(root: str, user: str) -> tuple[int, int, list[int]]:
    """uid, gid and additional gids of ``user`` (``name|uid[:group|gid]``) in a rootfs."""
    name, _, group = user.partition(":")

    def read(path):
        try:
            with open(os.path.join(root, path.lstrip("/"))) as fh:
                return [line.rstrip("\n").split(":") for line in fh if line.strip()]
        except OSError:
            return []
    passwd, groups = read("/etc/passwd"), read("/etc/group")
    uid = gid = None
    if name.isdigit():
        uid = int(name)
        for p in passwd:
            if len(p) > 3 and p[2] == name:
                gid = int(p[3])
                name = p[0]
                break
    else:
        for p in passwd:
            if len(p) > 3 and p[0] == name:
                uid, gid = int(p[2]), int(p[3])
                break
        if uid is None:
            raise UsageError(f"no users found matching {name!r}")
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            found = [g for g in groups if len(g) > 2 and g[0] == group]
            if not found:
                raise UsageError(f"no groups found matching {group!r}")
            gid = int(found[0][2])
    gid = 0 if gid is None else gid
    extra = sorted({int(g[2]) for g in groups if len(g) > 3 and g[2].isdigit()
                    and name in g[3].split(",")} | {gid})
    return uid, gid, extra


def apply_user(proc: dict, user: str, root: str | None) -> None:
    if not user:
        return
    name, _, group = user.partition(":")
    if root is None and name.isdigit() and (not group or group.isdigit()):
        uid, gid = int(name), int(group or 0)
        proc["user"] = {"uid": uid, "gid": gid, "additionalGids": [gid]}
        return
    uid, gid, extra = _lookup(root or "/nonexistent", user)
    proc["user"] = {"uid": uid, "gid": gid, "additionalGids": extra}


async def _with_image_root(c, top: str, snapshotter: str, fn):
    """Run ``fn(root)`` on a read-only mount of the image's rootfs (a snapshot view)."""
    import secrets
    import subprocess
    import tempfile

    from pallet.core import errors

    key = f"pallet-ctr-view-{secrets.token_hex(6)}"
    mounts = await c.snapshot_view(key, top, snapshotter=snapshotter)
    target = tempfile.mkdtemp(prefix="pallet-ctr-")
    try:
        for m in mounts:
            opts = ",".join(list(m.options))
            argv = ["mount", "-t", m.type] + (["-o", opts] if opts else []) + [m.source, target]
            r = subprocess.run(argv, capture_output=True, text=True)
            if r.returncode != 0:
                raise errors.PalletError(f"mount image rootfs: {r.stderr.strip()}")
        try:
            return fn(target)
        finally:
            subprocess.run(["umount", "-l", target], stderr=subprocess.DEVNULL)
    finally:
        os.rmdir(target)
        try:
            await c.snapshot_remove(key, snapshotter=snapshotter)
        except errors.PalletError:
            pass


def runtime_options(f):
    """containerd.runc.v1.Options for --runc-binary/--runc-root/--runc-systemd-cgroup
    (runc's shim and pallet-shim read them; ctr sends them to runc's names only)."""
    from google.protobuf import any_pb2

    from pallet.proto.shim_task import RuncOptions

    if f.runtime not in RUNC_OPTIONS_RUNTIMES:
        return None
    opts = RuncOptions(binary_name=f.runc_binary, root=f.runc_root,
                       systemd_cgroup=f.runc_systemd_cgroup, no_pivot_root=f.no_pivot)
    return any_pb2.Any(type_url=RUNC_OPTIONS, value=opts.encode())


async def create_container(c, argv, ctx, flags_spec) -> tuple:
    """Parse ``[flags] IMAGE|ROOTFS ID [COMMAND [ARG...]]``, create the container;
    returns (flags, container id)."""
    f = parse_flags(argv, flags_spec)
    if len(f.args) < 2:
        raise UsageError("image ref and container id must be provided")
    ref, cid, args = f.args[0], f.args[1], f.args[2:]
    if not cid:
        raise UsageError("container id must be provided")
    snapshotter = f.snapshotter or ctx.snapshotter
    if f.config:
        with open(f.config) as fh:
            spec = json.load(fh)
        image_config, top, image_name = {}, "", ""
    else:
        spec = default_spec(ctx.namespace, cid)
        image_config, top, image_name = {}, "", ""
        if f.rootfs:
            spec["root"] = {"path": os.path.abspath(ref)}
        else:
            image = await c.image_get(ref)
            image_name = image.name
            _manifest, config = await c.image_config(ref)
            image_config = config.get("config") or {}
            top = await c.unpack(ref, snapshotter)
        apply_flags(spec, f, image_config, args)
        user = f.user or image_config.get("User") or ""
        if user:
            name, _, group = user.partition(":")
            numeric = name.isdigit() and (not group or group.isdigit())
            if numeric or f.rootfs:
                apply_user(spec["process"], user, os.path.abspath(ref) if f.rootfs and
                           not numeric else None)
            else:
                await _with_image_root(c, top, snapshotter,
                                       lambda root: apply_user(spec["process"], user, root))
    labels = dict(x.partition("=")[::2] for x in f.label)
    if not f.config:
        labels.setdefault(STOP_SIGNAL_LABEL, image_config.get("StopSignal") or "SIGTERM")
    # as ctr does, the new snapshot is held by a lease until the container
    # refers to it: containerd's GC may otherwise collect it in between
    async with c.leased() as leased:
        snapshot_key = ""
        if top or (image_name and not f.rootfs):
            snap_labels = dict(x.partition("=")[::2] for x in f.snapshotter_label)
            await leased.snapshot_prepare(cid, top, snapshotter=snapshotter,
                                          labels=snap_labels or None)
            snapshot_key = cid
        try:
            await leased.container_create(cid, spec=spec, image=image_name,
                                          snapshot_key=snapshot_key,
                                          snapshotter=snapshotter if snapshot_key else None,
                                          runtime=f.runtime, runtime_options=runtime_options(f),
                                          labels=labels)
        except BaseException:
            if snapshot_key:
                try:
                    await c.snapshot_remove(snapshot_key, snapshotter=snapshotter)
                except Exception:  # noqa: BLE001 - the create error is the one to report
                    pass
            raise
    return f, cid


async def cmd_containers_create(c, argv, ctx) -> str:
    await create_container(c, argv, ctx, CONTAINER_FLAGS)
    return ""


# --- stdio ---------------------------------------------------------------------------------

class Fifos:
    """The FIFOs of one process and the threads that copy them to and from our stdio."""

    def __init__(self, fifo_dir: str, cid: str, *, stdin: bool, terminal: bool,
                 paths: tuple | None = None):
        import tempfile

        self.terminal = terminal
        self.threads: list[threading.Thread] = []
        self.on_stdin_eof = None
        self.created = paths is None
        if paths is None:
            base = fifo_dir or "/tmp"
            os.makedirs(base, exist_ok=True)
            self.dir = tempfile.mkdtemp(prefix=f"ctr-{cid[:12]}-", dir=base)
            names = [("stdin" if stdin else None), "stdout", (None if terminal else "stderr")]
            self.paths = tuple(os.path.join(self.dir, f"{cid}-{n}") if n else ""
                               for n in names)
            for p in self.paths:
                if p:
                    os.mkfifo(p, 0o600)
        else:
            self.dir = None
            self.paths = paths

    def start_output(self) -> None:
        """Read the process's stdout (and stderr) FIFOs until every writer is gone."""
        for path, out in ((self.paths[1], 1), (self.paths[2], 2)):
            if not path:
                continue
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
            t = threading.Thread(target=_copy_out, args=(fd, out), daemon=True)
            t.start()
            self.threads.append(t)

    def start_input(self) -> None:
        if not self.paths[0]:
            return
        threading.Thread(target=self._copy_in, daemon=True).start()

    def _copy_in(self) -> None:
        try:
            fd = os.open(self.paths[0], os.O_WRONLY)
        except OSError:
            return
        try:
            while True:
                try:
                    data = os.read(0, 65536)
                except OSError:
                    data = b""
                if not data:
                    break
                try:
                    os.write(fd, data)
                except OSError:
                    break
        finally:
            os.close(fd)
        if self.on_stdin_eof is not None:
            self.on_stdin_eof()

    def wait(self, timeout: float = 10.0) -> None:
        import time

        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))

    def cleanup(self) -> None:
        if self.dir is not None:
            for p in self.paths:
                if p:
                    try:
                        os.unlink(p)
                    except OSError:
                        pass
            try:
                os.rmdir(self.dir)
            except OSError:
                pass


def _copy_out(fd: int, out: int) -> None:
    """Copy a FIFO to ``out`` until EOF; poll first, since a FIFO that no writer
    has opened yet reads as EOF but polls as not ready (fs/pipe.c)."""
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLHUP)
    try:
        while True:
            poller.poll()
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                continue
            except OSError:
                return
            if not data:
                return
            view = memoryview(data)
            while view:
                try:
                    view = view[os.write(out, view):]
                except BlockingIOError:
                    select.select([], [out], [])
                except OSError:
                    return
    finally:
        os.close(fd)


class RawTerminal:
    """Our terminal in raw mode while attached to a process's terminal."""

    def __init__(self):
        self.saved = None

    def __enter__(self):
        if os.isatty(0):
            import termios
            import tty

            self.saved = termios.tcgetattr(0)
            tty.setraw(0)
        return self

    def __exit__(self, *exc):
        if self.saved is not None:
            import termios

            termios.tcsetattr(0, termios.TCSADRAIN, self.saved)


def terminal_size() -> tuple[int, int]:
    try:
        size = os.get_terminal_size(0)
        return size.columns, size.lines
    except OSError:
        return 0, 0


# --- attached execution ----------------------------------------------------------------------

async def attach_and_wait(c, cid: str, fifos: Fifos | None, *, exec_id: str = "",
                          start=None, close_stdin: bool = True) -> int:
    """Copy stdio, start the process (``start()``, a coroutine function, if given),
    forward signals (or the window size with a terminal), wait for the exit.

    The output copies may go on after: containerd's runc shim closes its end
    of the FIFOs when the process is deleted, pallet-shim when it exits; so
    callers delete the process first, then wait for the copies to end.
    """
    loop = asyncio.get_running_loop()
    waiter = asyncio.ensure_future(c.task_wait(cid, exec_id))
    if fifos is not None and close_stdin:
        # the end of our input ends the process's (CloseIO: it sees EOF once every
        # writer of its stdin FIFO is gone)
        fifos.on_stdin_eof = lambda: asyncio.run_coroutine_threadsafe(
            _close_stdin(c, cid, exec_id), loop)
    terminal = fifos is not None and fifos.terminal
    installed = []
    try:
        with RawTerminal() if terminal and os.isatty(0) else _Null():
            if start is not None:
                await start()
            if fifos is not None:
                fifos.start_input()
            if terminal:
                async def resize():
                    w, h = terminal_size()
                    if w and h:
                        try:
                            await c.task_resize(cid, w, h, exec_id)
                        except Exception:  # noqa: BLE001 - a process gone meanwhile
                            pass
                await resize()
                loop.add_signal_handler(signal.SIGWINCH,
                                        lambda: asyncio.ensure_future(resize()))
                installed.append(signal.SIGWINCH)
            else:
                for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT,
                            signal.SIGUSR1, signal.SIGUSR2):
                    loop.add_signal_handler(sig, lambda s=sig: asyncio.ensure_future(
                        _forward(c, cid, exec_id, s)))
                    installed.append(sig)
            status, _ = await waiter
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
        if not waiter.done():
            waiter.cancel()
    return status


class _Null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


async def _close_stdin(c, cid: str, exec_id: str) -> None:
    try:
        await c.task_close_io(cid, exec_id, stdin=True)
    except Exception:  # noqa: BLE001 - the process may be gone already
        pass


async def _forward(c, cid: str, exec_id: str, sig: int) -> None:
    try:
        await c.task_kill(cid, int(sig), exec_id=exec_id)
    except Exception:  # noqa: BLE001 - nothing left to signal
        pass


def _write_pid(path: str, pid: int) -> None:
    if path:
        with open(path, "w") as fh:
            fh.write(str(pid))


async def run_task(c, cid: str, f, *, detach: bool, null_io: bool, tty: bool) -> int | None:
    """Create and start the task of container ``cid``; wait for it unless detached."""
    from pallet.core import errors

    fifos = None
    if not (detach or null_io) and not f.log_uri:
        fifos = Fifos(f.fifo_dir, cid, stdin=True, terminal=tty)
        fifos.start_output()
    stdio = fifos.paths if fifos is not None else ("", "", "")
    if f.log_uri:
        uri = f.log_uri if "://" in f.log_uri else "file://" + os.path.abspath(f.log_uri)
        stdio = ("", uri, "" if tty else uri)
    try:
        # the rootfs travels with the task, as containerd's client sends it
        x = await c.container_get(cid)
        rootfs = []
        if x.snapshot_key:
            rootfs = await c.snapshot_mounts(x.snapshot_key, snapshotter=x.snapshotter or None)
        pid = await c.task_create(cid, rootfs=rootfs, stdin=stdio[0], stdout=stdio[1],
                                  stderr=stdio[2], terminal=tty)
        _write_pid(f.pid_file, pid)
        if detach or fifos is None:
            await c.task_start(cid)
            if detach:
                return None
            status, _ = await c.task_wait(cid)
        else:
            status = await attach_and_wait(c, cid, fifos, start=lambda: c.task_start(cid))
        try:
            await c.task_delete(cid)
        except errors.NotFound:
            pass
        if fifos is not None:
            await asyncio.get_running_loop().run_in_executor(None, fifos.wait, 10.0)
        return status
    except BaseException:
        try:
            await c.task_delete(cid)
        except Exception:  # noqa: BLE001 - the first error is the one that matters
            pass
        raise
    finally:
        if fifos is not None:
            fifos.cleanup()


async def cmd_run(c, argv, ctx) -> str:
    f = parse_flags(argv, RUN_FLAGS)
    if f.rm and f.detach:
        raise UsageError("flags --detach and --rm cannot be specified together")
    f, cid = await create_container(c, argv, ctx, RUN_FLAGS)
    try:
        status = await run_task(c, cid, f, detach=f.detach, null_io=f.null_io, tty=f.tty)
    finally:
        if f.rm and not f.detach:
            try:
                await delete_container(c, cid)
            except Exception as e:  # noqa: BLE001 - reported, the exit status stays
                print(f"ctr: delete container {cid}: {e}", file=sys.stderr)
    if status:
        raise ExitStatus(status)
    return ""


async def cmd_tasks_start(c, argv, ctx) -> str:
    from pallet.containerd.client import spec_of

    f = parse_flags(argv, {"null-io": ("bool", [], False), "log-uri": ("str", [], ""),
                           "fifo-dir": ("str", [], ""), "pid-file": ("str", [], ""),
                           "detach": ("bool", ["d"], False)})
    if not f.args:
        raise UsageError("container id must be provided")
    cid = f.args[0]
    x = await c.container_get(cid)
    tty = bool((spec_of(x).get("process") or {}).get("terminal"))
    status = await run_task(c, cid, f, detach=f.detach, null_io=f.null_io, tty=tty)
    if status:
        raise ExitStatus(status)
    return ""


async def cmd_tasks_attach(c, argv, ctx) -> str:
    from pallet.core import errors

    f = parse_flags(argv, {})
    if not f.args:
        raise UsageError("container id must be provided")
    cid = f.args[0]
    p = await c.task_get(cid)
    if not p.stdout and not p.stdin:
        raise errors.FailedPrecondition(f"task {cid} has no stdio to attach to (null io)")
    fifos = Fifos("", cid, stdin=bool(p.stdin), terminal=p.terminal,
                  paths=(p.stdin, p.stdout, "" if p.terminal else p.stderr))
    fifos.start_output()
    # our input ending is not the process's: whoever started it may still write
    status = await attach_and_wait(c, cid, fifos, close_stdin=False)
    # the task is not ours to delete: its output ends now, or soon (pallet-shim
    # closes the FIFOs at the exit, containerd's runc shim only at the delete)
    await asyncio.get_running_loop().run_in_executor(None, fifos.wait, 2.0)
    if status:
        raise ExitStatus(status)
    return ""


async def cmd_tasks_exec(c, argv, ctx) -> str:
    from pallet.containerd.client import spec_of

    f = parse_flags(argv, {"cwd": ("str", [], ""), "tty": ("bool", ["t"], False),
                           "detach": ("bool", ["d"], False), "exec-id": ("str", [], ""),
                           "fifo-dir": ("str", [], ""), "log-uri": ("str", [], ""),
                           "user": ("str", [], ""), "env": ("list", [], [])})
    if len(f.args) < 2:
        raise UsageError("container id and command must be provided")
    if not f.exec_id:
        raise UsageError("exec-id must be provided")
    cid, args = f.args[0], f.args[1:]
    x = await c.container_get(cid)
    proc = dict(spec_of(x).get("process") or {})
    proc["args"] = args
    proc["terminal"] = f.tty
    if f.cwd:
        proc["cwd"] = f.cwd
    if f.env:
        proc["env"] = merge_env(proc.get("env") or [], f.env)
    if f.user:
        task = await c.task_get(cid)
        apply_user(proc, f.user, f"/proc/{task.pid}/root")
    fifos = None
    if not f.detach and not f.log_uri:
        fifos = Fifos(f.fifo_dir, f"{cid}-{f.exec_id}", stdin=True, terminal=f.tty)
        fifos.start_output()
    stdio = fifos.paths if fifos is not None else ("", "", "")
    if f.log_uri:
        uri = f.log_uri if "://" in f.log_uri else "file://" + os.path.abspath(f.log_uri)
        stdio = ("", uri, "" if f.tty else uri)
    try:
        await c.task_exec(cid, f.exec_id, proc, stdin=stdio[0], stdout=stdio[1],
                          stderr=stdio[2], terminal=f.tty)
        if f.detach or fifos is None:
            await c.task_start(cid, f.exec_id)
            if f.detach:
                return ""
            status, _ = await c.task_wait(cid, f.exec_id)
        else:
            status = await attach_and_wait(c, cid, fifos, exec_id=f.exec_id,
                                           start=lambda: c.task_start(cid, f.exec_id))
        try:
            await c.process_delete(cid, f.exec_id)
        except Exception:  # noqa: BLE001 - its exit status is what we report
            pass
        if fifos is not None:
            await asyncio.get_running_loop().run_in_executor(None, fifos.wait, 10.0)
    finally:
        if fifos is not None:
            fifos.cleanup()
    if status:
        raise ExitStatus(status)
    return ""
