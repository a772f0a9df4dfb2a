"""NsRuntime end to end: real namespaces, mounts and processes, as root."""
from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from pallet.core.errors import (AlreadyExists, FailedPrecondition, InvalidArgument, NotFound,
                                 PalletError)
from rt_helpers import new_id, run_container, wait_status

pytestmark = pytest.mark.root


def test_echo_output(runtime, bundle, output):
    bundle.write(["echo", "hello from the container"])
    assert run_container(runtime, bundle.path, output) == 0
    assert output.read() == "hello from the container\n"


def test_exit_code(runtime, bundle, output):
    bundle.write(["sh", "-c", "exit 7"])
    assert run_container(runtime, bundle.path, output) == 7


def test_sigkill_is_seen_by_the_caller(runtime, bundle, output):
    bundle.write(["sleep", "30"])
    cid = new_id()
    pid = runtime.create(cid, bundle.path, stdout=output.fd, stderr=output.fd)
    runtime.start(cid)
    assert runtime.state(cid)["status"] == "running"
    runtime.kill(cid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    assert runtime.state(cid)["status"] == "stopped"
    assert runtime.state(cid)["pid"] == 0
    runtime.delete(cid)
    with pytest.raises(NotFound, match="container does not exist"):
        runtime.state(cid)


def test_process_is_pid_1_with_its_own_namespaces(runtime, bundle, output):
    bundle.write(["sh", "-c", "echo $$; readlink /proc/self/ns/net; readlink /proc/self/ns/mnt; "
                              "cat /sys/class/net/lo/flags; ls /sys/class/net"])
    assert run_container(runtime, bundle.path, output) == 0
    lines = output.read().split()
    assert lines[0] == "1"
    assert lines[1] != os.readlink("/proc/self/ns/net")
    assert lines[2] != os.readlink("/proc/self/ns/mnt")
    # loopback is up (IFF_UP|IFF_LOOPBACK|IFF_RUNNING...), and alone
    assert int(lines[3], 16) & 0x1
    assert lines[4:] == ["lo"]


def test_hostname(runtime, bundle, output):
    bundle.spec["hostname"] = "box-under-test"
    bundle.write(["hostname"])
    assert run_container(runtime, bundle.path, output) == 0
    assert output.read().strip() == "box-under-test"
    assert os.uname().nodename != "box-under-test"


def test_mounts_and_files_do_not_leak(runtime, bundle, output, tmp_path):
    marker = f"/leak-{new_id()}"
    bundle.write(["sh", "-c", f"echo x > {marker} && echo y > /dev/shm/z && sleep 30"])
    cid = new_id()
    pid = runtime.create(cid, bundle.path, stdout=output.fd, stderr=output.fd)
    runtime.start(cid)
    deadline = time.monotonic() + 10
    while not os.path.exists(bundle.rootfs + marker) and time.monotonic() < deadline:
        time.sleep(0.01)
    # the file lands in the rootfs, not in the host's /
    assert os.path.exists(bundle.rootfs + marker)
    assert not os.path.exists(marker)
    # the container's mounts (proc, /dev tmpfs, ...) are not in the host's table
    with open("/proc/self/mountinfo") as f:
        assert bundle.rootfs not in f.read()
    # but they are in the container's
    with open(f"/proc/{pid}/mountinfo") as f:
        assert " /dev/shm " in f.read()
    runtime.kill(cid, signal.SIGKILL)
    wait_status(pid)
    runtime.delete(cid)


def test_cwd_env_and_user(runtime, bundle, output):
    bundle.write(["sh", "-c", "pwd; echo $FOO; echo $HOME; id -u; id -g; id -G"],
                 cwd="/tmp", env=["PATH=/bin", "FOO=bar baz"],
                 user={"uid": 1000, "gid": 1000, "additionalGids": [2000]})
    assert run_container(runtime, bundle.path, output) == 0
    assert output.read().split("\n")[:6] == ["/tmp", "bar baz", "/home/user", "1000", "1000",
                                             "1000 2000"]


def test_capabilities_rlimits_and_no_new_privs(runtime, bundle, output):
    # ambient capabilities need to be inheritable too (capabilities(7)); the
    # default spec lists none, so runc ends up with none ambient: set them here
    caps = bundle.spec["process"]["capabilities"]
    caps["inheritable"] = list(caps["bounding"])
    bundle.write(["sh", "-c", "grep -E '^(Cap|NoNewPrivs)' /proc/self/status; ulimit -n"])
    assert run_container(runtime, bundle.path, output) == 0
    status = dict(line.split(":\t") for line in output.read().strip().split("\n")[:-1])
    # CAP_KILL(5) CAP_NET_BIND_SERVICE(10) CAP_AUDIT_WRITE(29) from the default spec
    want = f"{(1 << 5) | (1 << 10) | (1 << 29):016x}"
    assert status["CapEff"] == want and status["CapPrm"] == want and status["CapBnd"] == want
    assert status["CapAmb"] == want and status["CapInh"] == want
    assert status["NoNewPrivs"] == "1"
    assert output.read().strip().split("\n")[-1] == "1024"


def test_readonly_root_masked_and_readonly_paths(runtime, bundle, output):
    bundle.spec["root"]["readonly"] = True
    bundle.write(["sh", "-c", "touch /x 2>/dev/null && echo root-rw || echo root-ro; "
                              "cat /proc/kcore 2>/dev/null | wc -c; "
                              "ls /sys/firmware | wc -l; "
                              "(echo 1 > /proc/sys/kernel/ns_last_pid) 2>/dev/null "
                              "&& echo sys-rw || echo sys-ro; "
                              "touch /tmp/ok 2>/dev/null; echo 1 > /dev/shm/ok && echo shm-rw"])
    assert run_container(runtime, bundle.path, output) == 0
    out = output.read().split()
    assert out[0] == "root-ro"
    assert out[1] == "0"       # /proc/kcore masked by /dev/null (or absent)
    assert out[2] == "0"       # /sys/firmware hidden under an empty tmpfs
    assert out[3] == "sys-ro"
    assert out[4] == "shm-rw"


def test_default_devices(runtime, bundle, output):
    bundle.write(["sh", "-c", "for d in null zero full random urandom tty; do "
                              "[ -c /dev/$d ] && echo $d; done; readlink /dev/ptmx; "
                              "echo ok > /dev/null && head -c 4 /dev/zero | wc -c; "
                              "mount | grep -c -E ' /dev/(pts|shm|mqueue) '"])
    assert run_container(runtime, bundle.path, output) == 0
    assert output.read().split() == ["null", "zero", "full", "random", "urandom", "tty",
                                     "pts/ptmx", "4", "3"]


def test_bind_mount_options_and_symlink_destination(runtime, bundle, output, tmp_path):
    src = tmp_path / "data"
    src.mkdir()
    (src / "f").write_text("from the host\n")
    # a destination through a symlink that points out of the rootfs stays inside it
    os.symlink("/", os.path.join(bundle.rootfs, "escape"))
    bundle.spec["mounts"].append({"destination": "/data", "type": "bind", "source": str(src),
                                  "options": ["rbind", "ro", "nosuid", "nodev", "noexec"]})
    bundle.spec["mounts"].append({"destination": "/escape/tmp/inside", "type": "tmpfs",
                                  "source": "tmpfs", "options": ["size=1m"]})
    bundle.write(["sh", "-c", "cat /data/f; touch /data/g 2>/dev/null || echo ro; "
                              "grep ' /data ' /proc/self/mountinfo | cut -d' ' -f6; "
                              "grep -c ' /tmp/inside ' /proc/self/mountinfo"])
    assert run_container(runtime, bundle.path, output) == 0
    out = output.read().split("\n")
    assert out[0] == "from the host"
    assert out[1] == "ro"
    assert set(out[2].split(",")) >= {"ro", "nosuid", "nodev", "noexec"}
    assert out[3] == "1"
    assert not os.path.exists("/tmp/inside")


def test_create_then_start(runtime, bundle, output, state_root):
    bundle.write(["sh", "-c", "echo started"])
    cid = new_id()
    pid = runtime.create(cid, bundle.path, stdout=output.fd, stderr=output.fd)
    try:
        state = runtime.state(cid)
        assert state["status"] == "created" and state["pid"] == pid
        assert state["bundle"] == bundle.path and state["id"] == cid
        assert os.path.exists(os.path.join(state_root, cid, "state.json"))
        time.sleep(0.2)
        assert output.read() == ""          # nothing runs before start
        assert [s["id"] for s in runtime.list()] == [cid]
        with pytest.raises(AlreadyExists, match="container with given ID already exists"):
            runtime.create(cid, bundle.path)
        runtime.start(cid)
        assert wait_status(pid) == 0
        assert output.read() == "started\n"
        with pytest.raises(FailedPrecondition, match="cannot start a container that has stopped"):
            runtime.start(cid)
    finally:
        runtime.delete(cid, force=True)
    assert not os.path.exists(os.path.join(state_root, cid))


def test_delete_refuses_a_running_container_unless_forced(runtime, bundle, output):
    bundle.write(["sleep", "30"])
    cid = new_id()
    pid = runtime.create(cid, bundle.path, stdout=output.fd, stderr=output.fd)
    runtime.start(cid)
    with pytest.raises(FailedPrecondition,
                       match=f"cannot delete container {cid} that is not stopped: running"):
        runtime.delete(cid)
    with pytest.raises(FailedPrecondition, match="cannot start an already running container"):
        runtime.start(cid)
    runtime.delete(cid, force=True)
    assert wait_status(pid) == 128 + 9
    assert runtime.list() == []


def test_delete_a_created_container(runtime, bundle, output):
    bundle.write(["true"])
    cid = new_id()
    pid = runtime.create(cid, bundle.path)
    runtime.delete(cid)  # runc deletes a created container without --force
    assert wait_status(pid) == 128 + 9


def test_bad_executable_fails_create(runtime, bundle, state_root):
    bundle.write(["no-such-program", "arg"])
    cid = new_id()
    with pytest.raises(InvalidArgument) as err:
        runtime.create(cid, bundle.path)
    assert str(err.value) == ('unable to start container process: exec: "no-such-program": '
                              'executable file not found in $PATH')
    assert runtime.list() == []
    assert not os.path.exists(os.path.join(state_root, cid))

    bundle.write(["/bin/nope"])
    with pytest.raises(InvalidArgument,
                       match=r'exec: "/bin/nope": stat /bin/nope: no such file or directory'):
        runtime.create(new_id(), bundle.path)


def test_bad_cwd_and_bad_mount_fail_create(runtime, bundle):
    # a missing cwd is made (runc does so); one that is a file cannot be made
    # (Go's MkdirAll's words)
    bundle.write(["true"], cwd="/etc/passwd")
    with pytest.raises(PalletError, match=r"error during container init: mkdir /etc/passwd: "
                                          r"not a directory"):
        runtime.create(new_id(), bundle.path)
    bundle.spec["mounts"].append({"destination": "/x", "type": "no-such-fs", "source": "none"})
    bundle.write(["true"], cwd="/")
    with pytest.raises(Exception, match=r'error mounting "none" to rootfs at "/x": mount none:'
                                        r'.*/x .*: no such device'):
        runtime.create(new_id(), bundle.path)
    assert runtime.list() == []


def test_invalid_id_and_missing_bundle(runtime, tmp_path):
    with pytest.raises(InvalidArgument, match="invalid container ID format"):
        runtime.create("bad/id", str(tmp_path))
    with pytest.raises(InvalidArgument, match="JSON specification file config.json not found"):
        runtime.create(new_id(), str(tmp_path))


def test_unknown_container(runtime):
    for call in (lambda: runtime.state("nope"), lambda: runtime.start("nope"),
                 lambda: runtime.kill("nope", 15), lambda: runtime.delete("nope")):
        with pytest.raises(NotFound, match="^container does not exist$"):
            call()


def test_pid_file_and_preserved_fds(runtime, bundle, output, tmp_path):
    r, w = os.pipe()
    try:
        # the container gets the caller's fds 3.. as they are: put the pipe at 3
        saved = os.dup(3) if _fd_open(3) else None
        os.dup2(w, 3)
        try:
            bundle.write(["sh", "-c", "echo through-fd-3 >&3; ls /proc/self/fd | wc -l"])
            cid = new_id()
            pid = runtime.create(cid, bundle.path, stdout=output.fd, stderr=output.fd,
                                 pid_file=str(tmp_path / "pid"), preserve_fds=1)
        finally:
            if saved is not None:
                os.dup2(saved, 3)
                os.close(saved)
            else:
                os.close(3)
        assert (tmp_path / "pid").read_text() == str(pid)
        runtime.start(cid)
        assert wait_status(pid) == 0
        os.close(w)
        w = -1
        assert os.read(r, 100) == b"through-fd-3\n"
        # 0 1 2 3 and the fd ls itself opens: nothing else leaked in
        assert output.read().strip() == "5"
    finally:
        for fd in (r, w):
            if fd >= 0:
                os.close(fd)


def _fd_open(fd: int) -> bool:
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False


def test_create_from_a_thread(runtime, bundle, output):
    """The shim may call create from a worker thread: the PID namespace switch
    is per thread and must not leak to the process."""
    bundle.write(["sh", "-c", "echo $$"])
    result = {}
    own_ns = os.readlink("/proc/self/ns/pid_for_children")

    def worker():
        try:
            cid = new_id()
            result["pid"] = runtime.create(cid, bundle.path, stdout=output.fd, stderr=output.fd)
            result["cid"] = cid
        except BaseException as e:
            result["error"] = e

    t = threading.Thread(target=worker)
    t.start()
    t.join(30)
    assert "error" not in result, result.get("error")
    runtime.start(result["cid"])
    assert wait_status(result["pid"]) == 0
    assert output.read().strip() == "1"
    assert os.readlink("/proc/self/ns/pid_for_children") == own_ns
    runtime.delete(result["cid"])


def test_kill_all_and_state_after_exit(runtime, bundle, output):
    bundle.spec["linux"]["namespaces"] = [n for n in bundle.spec["linux"]["namespaces"]
                                          if n["type"] != "pid"]
    top = f"/pallet-test-{new_id()}"
    bundle.spec["linux"]["cgroupsPath"] = f"{top}/c"
    bundle.write(["sh", "-c", "sleep 30 & sleep 30 & wait"])
    cid = new_id()
    pid = runtime.create(cid, bundle.path, stdout=output.fd, stderr=output.fd)
    runtime.start(cid)
    deadline = time.monotonic() + 10
    while len(runtime.pids(cid)) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    pids = runtime.pids(cid)
    assert len(pids) == 3 and pid in pids
    runtime.kill(cid, signal.SIGKILL, all=True)
    assert wait_status(pid) == 128 + 9
    runtime.delete(cid)
    # the container's own cgroup is gone, the parents create made stay (as with runc)
    try:
        assert not os.path.exists("/sys/fs/cgroup/pids" + top + "/c")
        assert not os.path.exists("/sys/fs/cgroup/memory" + top + "/c")
    finally:
        for point in ("/sys/fs/cgroup/" + c for c in os.listdir("/sys/fs/cgroup")):
            if os.path.isdir(point + top):
                os.rmdir(point + top)


def test_join_a_network_namespace_by_path(runtime, bundle, output):
    """net_bridge hands a namespace path: the container joins it instead of a new one."""
    bundle.write(["sleep", "30"])
    first = new_id()
    pid1 = runtime.create(first, bundle.path, stdout=output.fd, stderr=output.fd)
    runtime.start(first)
    spec_ns = [n for n in bundle.spec["linux"]["namespaces"] if n["type"] != "network"]
    bundle.spec["linux"]["namespaces"] = spec_ns + [{"type": "network", "path": f"/proc/{pid1}/ns/net"}]
    bundle.write(["readlink", "/proc/self/ns/net"])
    out2 = output.path + ".2"
    fd = os.open(out2, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        second = new_id()
        pid2 = runtime.create(second, bundle.path, stdout=fd, stderr=fd)
        runtime.start(second)
        assert wait_status(pid2) == 0
    finally:
        os.close(fd)
    assert open(out2).read().strip() == os.readlink(f"/proc/{pid1}/ns/net")
    runtime.delete(second)
    runtime.delete(first, force=True)
    wait_status(pid1)


def test_terminal_through_console_socket(runtime, bundle, tmp_path):
    """process.terminal: the pty master comes back over the console socket
    (SCM_RIGHTS, as with runc --console-socket) and the program sees a tty."""
    import array
    import socket

    path = str(tmp_path / "console.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    bundle.spec["process"]["consoleSize"] = {"height": 33, "width": 111}
    bundle.write(["sh", "-c", "tty; [ -t 0 ] && [ -t 1 ] && echo both-tty; stty size; "
                              "echo to-console > /dev/console; "
                              "grep -c ' /dev/console ' /proc/self/mountinfo"], terminal=True)
    cid = new_id()
    master = -1
    try:
        with pytest.raises(InvalidArgument, match="cannot allocate tty"):
            runtime.create(new_id(), bundle.path)
        pid = runtime.create(cid, bundle.path, terminal_socket=path)
        conn, _ = server.accept()
        fds = array.array("i")
        msg, anc, _, _ = conn.recvmsg(1024, socket.CMSG_SPACE(fds.itemsize))
        conn.close()
        fds.frombytes(anc[0][2][:fds.itemsize])
        master = fds[0]
        runtime.start(cid)
        assert wait_status(pid) == 0
        data = b""
        while True:
            try:
                chunk = os.read(master, 1024)
            except OSError:  # EIO once the slave side is closed
                break
            if not chunk:
                break
            data += chunk
        lines = data.decode().replace("\r", "").split("\n")
        assert lines[0].startswith("/dev/pts/") and lines[1] == "both-tty"
        # consoleSize, and /dev/console bound to the same pty
        assert lines[2:5] == ["33 111", "to-console", "1"]
        runtime.delete(cid)
    finally:
        server.close()
        if master >= 0:
            os.close(master)


def test_exec_joins_the_container(runtime, bundle, output, tmp_path):
    bundle.spec["hostname"] = "exec-target"
    bundle.write(["sleep", "30"])
    cid = new_id()
    pid = runtime.create(cid, bundle.path, stdout=output.fd, stderr=output.fd)
    runtime.start(cid)
    out = tmp_path / "exec.out"
    fd = os.open(out, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        proc = dict(bundle.spec["process"], args=["sh", "-c", "hostname; pwd; id -u; ps -o pid,comm"],
                    cwd="/tmp", user={"uid": 1000, "gid": 1000})
        epid = runtime.exec(cid, proc, stdout=fd, stderr=fd, pid_file=str(tmp_path / "exec.pid"))
        assert (tmp_path / "exec.pid").read_text() == str(epid)
        assert wait_status(epid) == 0
        with pytest.raises(InvalidArgument, match='exec: "nope": executable file not found'):
            runtime.exec(cid, dict(proc, args=["nope"]))
    finally:
        os.close(fd)
    lines = out.read_text().split("\n")
    assert lines[:3] == ["exec-target", "/tmp", "1000"]
    # the exec'd shell sees the container's PID 1 (sleep) in its PID namespace
    assert any(line.split() == ["1", "sleep"] for line in lines[4:])
    runtime.kill(cid, signal.SIGKILL)
    wait_status(pid)
    with pytest.raises(FailedPrecondition, match="cannot exec in a stopped container"):
        runtime.exec(cid, proc)
    runtime.delete(cid)


def test_create_inside_an_asyncio_daemon(runtime, bundle, output):
    """As in the shim: an event loop with signal handlers (and so a wakeup
    fd) calls create from an executor thread; the child must drop both."""
    import asyncio

    bundle.write(["sh", "-c", "kill -TERM $$ 2>/dev/null; echo alive"])
    got_term = []

    async def main():
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, lambda: got_term.append(1))
        try:
            cid = new_id()
            pid = await loop.run_in_executor(None, lambda: runtime.create(
                cid, bundle.path, stdout=output.fd, stderr=output.fd))
            await loop.run_in_executor(None, runtime.start, cid)
            code = await loop.run_in_executor(None, wait_status, pid)
            await asyncio.sleep(0.05)
            return cid, code
        finally:
            loop.remove_signal_handler(signal.SIGTERM)

    cid, code = asyncio.run(main())
    # PID 1 ignores a SIGTERM without handler: the shell goes on
    assert code == 0 and output.read() == "alive\n"
    assert got_term == []   # nothing reached the daemon's own handler
    runtime.delete(cid)


def test_no_pivot_cgroup_namespace_and_joined_ipc_uts(runtime, bundle, output):
    """--no-pivot (move-mount and chroot), a new cgroup namespace, and the ipc
    and uts namespaces of another container joined by path."""
    bundle.spec["hostname"] = "first-box"
    bundle.write(["sleep", "30"])
    first = new_id()
    pid1 = runtime.create(first, bundle.path, stdout=output.fd, stderr=output.fd)
    runtime.start(first)
    try:
        spec = bundle.spec
        spec.pop("hostname")
        spec["linux"]["namespaces"] = [ns for ns in spec["linux"]["namespaces"]
                                       if ns["type"] not in ("ipc", "uts")]
        spec["linux"]["namespaces"] += [{"type": "ipc", "path": f"/proc/{pid1}/ns/ipc"},
                                        {"type": "uts", "path": f"/proc/{pid1}/ns/uts"},
                                        {"type": "cgroup"}]
        bundle.write(["sh", "-c", "hostname; cat /proc/self/cgroup | cut -d: -f3 | sort -u; "
                                  "readlink /proc/self/ns/ipc"])
        out2 = output.path + ".2"
        fd = os.open(out2, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            cid = new_id()
            pid = runtime.create(cid, bundle.path, stdout=fd, stderr=fd, no_pivot=True)
            runtime.start(cid)
            assert wait_status(pid) == 0
            runtime.delete(cid)
        finally:
            os.close(fd)
        with open(out2) as f:
            lines = f.read().split("\n")
        assert lines[0] == "first-box"
        assert lines[1] == "/"                       # the cgroup namespace's root
        assert lines[2] == os.readlink(f"/proc/{pid1}/ns/ipc")
    finally:
        runtime.delete(first, force=True)
        wait_status(pid1)


def test_in_process_path_has_runcs_cgroup_home_and_exec_errors(runtime, bundle, output):
    """What pallet-shim gets from the runtime object (no command line):
    runc's default cgroup named after the container when the spec names
    none, HOME from the container's /etc/passwd, and runc's message for an
    execve that fails inside the container."""
    bundle.spec["linux"].pop("cgroupsPath", None)
    env = [e for e in bundle.spec["process"]["env"] if not e.startswith("HOME=")]
    bundle.spec["process"]["user"] = {"uid": 1000, "gid": 1000}
    bundle.write(["sh", "-c", "echo HOME=$HOME; cat /proc/self/cgroup; sleep 30"], env=env)
    cid = new_id()
    pid = runtime.create(cid, bundle.path, stdout=output.fd, stderr=output.fd)
    try:
        runtime.start(cid)
        deadline = time.monotonic() + 10
        while ":memory:" not in output.read() and time.monotonic() < deadline:
            time.sleep(0.02)
        lines = output.read().splitlines()
        assert lines[0] == "HOME=/home/user"
        v1 = [ln.split(":", 2)[2] for ln in lines[1:] if ":memory:" in ln or ":pids:" in ln]
        assert v1 and all(path.endswith(f"/{cid}") for path in v1), lines
        assert pid in runtime.pids(cid)
    finally:
        runtime.kill(cid, signal.SIGKILL)
        wait_status(pid)
        runtime.delete(cid)

    bundle.spec["process"].pop("user")
    with open(os.path.join(bundle.rootfs, "run.sh"), "w") as f:
        f.write("#!/nonexistent/interpreter\n")
    os.chmod(os.path.join(bundle.rootfs, "run.sh"), 0o755)
    bundle.write(["/run.sh"])
    os.ftruncate(output.fd, 0)
    cid = new_id()
    said = ""
    try:  # runc reports it from create (its init checks the path) or from the process
        pid = runtime.create(cid, bundle.path, stdout=output.fd, stderr=output.fd)
        runtime.start(cid)
        status = wait_status(pid)
        said = output.read()
        assert status != 0
    except Exception as e:  # noqa: BLE001 - the runtime's error is what is checked
        said = str(e)
    finally:
        try:
            runtime.delete(cid, force=True)
        except NotFound:
            pass
    assert "exec /run.sh: no such file or directory" in said, said
