"""Helpers of the shim tests (importable by name: tests/shim is on sys.path)."""
from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (OSError, IndexError):
        return False


def pid_exists(pid: int) -> bool:
    """Whether ``pid`` exists at all (a zombie counts)."""
    return os.path.exists(f"/proc/{pid}")


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def wait_gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.02)
    return False


def wait_for(cond, timeout: float = 10.0, step: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(step)
    return cond()


def is_mounted(path: str) -> bool:
    """Whether ``path`` is a mount point (bind mounts of one filesystem included)."""
    path = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)


def read_to_eof(fd: int, timeout: float = 10.0) -> bytes:
    """Read a FIFO opened O_NONBLOCK until EOF (every writer gone)."""
    import select

    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        select.select([fd], [], [], 0.1)
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            continue
        if not chunk:
            return out
        out += chunk
    raise AssertionError(f"no EOF on the fifo after {timeout}s (got {out!r})")


def remove_cgroups(paths) -> None:
    """Remove the cgroups (and their parents) a test's containers had, in every controller."""
    for cg in paths:
        for ctrl in os.listdir("/sys/fs/cgroup"):
            for d in (cg, os.path.dirname(cg)):
                try:
                    os.rmdir(f"/sys/fs/cgroup/{ctrl}{d}")
                except OSError:
                    pass


def umount_below(path: str) -> None:
    """Lazily unmount everything mounted at or below ``path`` (deepest first)."""
    from engines import umount_below as below  # bench/

    below(os.path.realpath(path))


def pids_with_cmdline(prefix: bytes) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                if f.read().startswith(prefix):
                    out.append(int(d))
        except OSError:
            pass
    return out


def runc_like_spec(args, *, readonly=True, env=None, terminal=False, cgroup=None,
                   memory_limit=None) -> dict:
    """A config.json as ``runc spec`` (and ``pallet-runc spec``) writes it."""
    spec = {
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": terminal,
            "user": {"uid": 0, "gid": 0},
            "args": list(args),
            "env": env or ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                           "TERM=xterm"],
            "cwd": "/",
            "capabilities": {k: ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
                             for k in ("bounding", "effective", "permitted", "ambient")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": readonly},
        "hostname": "pallet",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
        ],
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                              "/proc/sysrq-trigger"],
        },
    }
    if cgroup:
        spec["linux"]["cgroupsPath"] = cgroup
    if memory_limit:
        spec["linux"]["resources"]["memory"] = {"limit": memory_limit, "swap": memory_limit}
    return spec


def make_busybox_rootfs(path: str) -> None:
    """A rootfs with /bin/busybox and its applets as symlinks (``busybox --install -s``)."""
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "proc", "dev", "sys", "tmp", "etc", "root"):
        os.makedirs(os.path.join(path, d), exist_ok=True)
    shutil.copy2("/bin/busybox", os.path.join(path, "bin", "busybox"))
    subprocess.run(["chroot", path, "/bin/busybox", "--install", "-s"], check=True)
    with open(os.path.join(path, "etc", "passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n")
    with open(os.path.join(path, "etc", "group"), "w") as f:
        f.write("root:x:0:\nnogroup:x:65534:\n")


class EventSink:
    """What containerd serves its shims for events: Forward on ``<socket>.ttrpc``,
    recording (topic, decoded event) pairs."""

    def __init__(self, path: str):
        from pallet.containerd.client import decode_event
        from pallet.proto.containerd.services.events.v1 import events_pb2
        from pallet.proto.containerd.services.ttrpc.events.v1 import events_pb2 as tpb
        from pallet.ttrpc import protocol as ttrpc
        from google.protobuf import empty_pb2

        self.path = path
        self.events: list = []
        self.envelopes: list = []
        self.cond = threading.Condition()

        def forward(req):
            env = events_pb2.Envelope.FromString(req.envelope.SerializeToString())
            with self.cond:
                self.envelopes.append(env)
                self.events.append((env.topic, decode_event(env)))
                self.cond.notify_all()
            return empty_pb2.Empty()

        self.server = ttrpc.Server(path, {"containerd.services.events.ttrpc.v1.Events": {
            "Forward": (tpb.ForwardRequest, forward)}})
        self.server.start()

    def topics(self) -> list[str]:
        with self.cond:
            return [t for t, _ in self.events]

    def wait_topic(self, topic: str, timeout: float = 10.0, count: int = 1):
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                found = [e for t, e in self.events if t == topic]
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {topic} event within {timeout}s; got "
                                         f"{[t for t, _ in self.events]}")
                self.cond.wait(left)

    def close(self) -> None:
        self.server.close()
