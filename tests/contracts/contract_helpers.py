"""Contract tests: every installed implementation of a role against the
role's contract (``pallet.core.contracts``).

Each ``tests/contracts/<role>/`` directory parametrises its fixtures with
:func:`implementations`, the plugins installed for that role (found through
the entry points, as the kernel finds them), so that a third-party author who
installs a plugin runs the same tests against it::

    pytest tests/contracts/runtime                 # every installed runtime
    pytest tests/contracts/runtime -k runtime_oci  # one of them

``PALLET_CONTRACT_PLUGINS=name[,name]`` limits the run to the named plugins.
"""
from __future__ import annotations

import os


def implementations(role: str) -> list[str]:
    """The names of the installed plugins that declare ``role``, sorted."""
    from pallet.core.kernel import discover

    names = sorted(p.name for p in discover().values() if p.role == role)
    wanted = os.environ.get("PALLET_CONTRACT_PLUGINS")
    if wanted:
        keep = set(wanted.split(","))
        names = [n for n in names if n in keep]
    return names


def kernel_for(role: str, plugin: str, paths, plugin_config: dict | None = None,
               roles: tuple[str, ...] | None = None, *,
               fill: dict[str, tuple[str, dict | None]] | None = None):
    """A kernel whose ``role`` is filled by ``plugin`` (other roles: defaults,
    or ``fill``: role -> (plugin, its configuration section or None))."""
    from pallet.core.config import Config
    from pallet.core.kernel import Kernel

    chosen = {role: plugin}
    sections = {plugin: plugin_config} if plugin_config else {}
    for other, (name, section) in (fill or {}).items():
        chosen[other] = name
        if section:
            sections[name] = section
    config = Config(roles=chosen, plugins=sections)
    return Kernel.load(config, paths=paths, roles=roles or tuple(chosen), extensions=False)


# --- runtime and init: real bundles ----------------------------------------------------------

BUSYBOX = "/bin/busybox"  # Debian's busybox-static


def runtime_variants() -> list[tuple[str, str, dict]]:
    """(test id, plugin, configuration section) of every installed runtime.

    runtime_oci runs once per runc-compatible binary found: Debian's runc,
    crun, and pallet-runc; ``PALLET_CONTRACT_RUNTIME_BINARIES=a,b`` names
    others (paths or names on PATH).  Any other runtime runs once, unconfigured.
    """
    import shutil
    import sys

    out = []
    for name in implementations("runtime"):
        if name != "runtime_oci":
            out.append((name, name, {}))
            continue
        binaries = [b for b in (os.environ.get("PALLET_CONTRACT_RUNTIME_BINARIES") or "").split(",")
                    if b]
        if not binaries:
            here = os.path.join(os.path.dirname(os.path.abspath(sys.executable)), "pallet-runc")
            binaries = ["runc", "crun", here if os.path.exists(here) else "pallet-runc"]
        for binary in binaries:
            path = shutil.which(binary)
            if path:
                out.append((f"{name}-{os.path.basename(binary)}", name, {"binary": path}))
    return out


def busybox_rootfs(path: str) -> str:
    """A root filesystem of busybox-static: /bin/busybox, its applets, /etc files."""
    import shutil
    import subprocess

    for d in ("bin", "sbin", "etc", "tmp", "proc", "sys", "dev", "root"):
        os.makedirs(os.path.join(path, d), exist_ok=True)
    os.chmod(os.path.join(path, "tmp"), 0o1777)
    shutil.copy(BUSYBOX, os.path.join(path, "bin", "busybox"))
    applets = subprocess.run([BUSYBOX, "--list"], check=True, capture_output=True,
                             text=True).stdout.split()
    for applet in applets:
        link = os.path.join(path, "bin", applet)
        if applet != "busybox" and not os.path.lexists(link):
            os.symlink("busybox", link)
    with open(os.path.join(path, "etc", "passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
    with open(os.path.join(path, "etc", "group"), "w") as f:
        f.write("root:x:0:\nnogroup:x:65534:\n")
    return path


def bundle_spec(rootfs: str, args, *, terminal: bool = False, cgroups_path: str | None = None,
                annotations: dict | None = None) -> dict:
    """An OCI config.json for ``args`` on a shared read-only ``rootfs`` (an
    absolute path): namespaces, /proc, /dev, a cgroup when asked for."""
    spec = {
        "ociVersion": "1.0.2",
        "process": {"terminal": terminal, "user": {"uid": 0, "gid": 0}, "args": list(args),
                    "env": ["PATH=/bin:/sbin", "TERM=xterm"], "cwd": "/",
                    "noNewPrivileges": True},
        "root": {"path": rootfs, "readonly": True},
        "hostname": "contract",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid"]},
        ],
        "linux": {"namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount")],
                  "resources": {"devices": [{"allow": False, "access": "rwm"}]}},
    }
    if cgroups_path:
        spec["linux"]["cgroupsPath"] = cgroups_path
    if annotations:
        spec["annotations"] = dict(annotations)
    return spec


def write_bundle(path: str, spec: dict) -> str:
    import json

    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(spec, f)
    return path


#: exit codes of children reaped while waiting for another one
_REAPED: dict[int, int] = {}


def wait_exit(pid: int, timeout: float = 30.0) -> int:
    """Wait for a child (a container's process reparented to us, the subreaper):
    its exit code, 128+N for signal N.  Every other child that exits meanwhile
    is reaped too (and remembered): the PID 1 of a dying PID namespace ends
    only once its namespace's other processes -- exec'd ones are our
    children -- have been reaped (pid_namespaces(7))."""
    import time

    deadline = time.monotonic() + timeout
    while pid not in _REAPED:
        try:
            got, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            raise AssertionError(f"process {pid} is not our child") from None
        if got:
            _REAPED[got] = os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) \
                else 128 + os.WTERMSIG(status)
            continue
        if time.monotonic() > deadline:
            raise AssertionError(f"process {pid} did not exit within {timeout}s")
        time.sleep(0.005)
    return _REAPED.pop(pid)


def create_to_pipe(runtime, cid: str, bundle: str) -> tuple[int, int]:
    """Create a container whose stdout and stderr go to a pipe: (pid, read end)."""
    r, w = os.pipe()
    try:
        pid = runtime.create(cid, bundle, stdout=w, stderr=w)
    except BaseException:
        os.close(r)
        raise
    finally:
        os.close(w)
    return pid, r


def delete_all(runtime) -> None:
    """Kill and delete every container of ``runtime``, reaping as we go (a
    failed test's cleanup: nothing may stop it)."""
    try:
        states = runtime.list()
    except Exception:  # noqa: BLE001
        states = []
    for st in states:
        try:
            runtime.kill(st["id"], 9, all=True)
        except Exception:  # noqa: BLE001
            pass
        if st.get("pid"):
            try:
                wait_exit(st["pid"], timeout=5)
            except AssertionError:
                pass
        try:
            runtime.delete(st["id"], force=True)
        except Exception:  # noqa: BLE001
            pass
    reap_children()


def reap_children() -> None:
    """Collect whatever exited among our children."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _REAPED.pop(pid, None)


def read_to_eof(fd: int) -> bytes:
    chunks = []
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def read_until(fd: int, needle: bytes, timeout: float = 20.0) -> bytes:
    """Read a pty master (or pipe) until ``needle`` shows up."""
    import select
    import time

    data = b""
    deadline = time.monotonic() + timeout
    while needle not in data:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise AssertionError(f"{needle!r} not read within {timeout}s; got {data!r}")
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the pty's other side is gone
            break
        if not chunk:
            break
        data += chunk
    return data
