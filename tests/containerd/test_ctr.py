"""Debian's ctr against pallet-containerd, and pallet-ctr against both daemons.

Where both tools print the same thing for the same daemon state, the outputs
are compared byte for byte (times and sizes aside)."""
from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import time

import pytest

from cd_util import CTR, VENV_BIN, ctr, mounted_under, ok, pallet_ctr, wait_for

pytestmark = pytest.mark.root
IMAGE = "docker.io/library/busybox:latest"


@pytest.fixture
def loaded(any_containerd, busybox_tar):
    """A daemon with busybox imported (by Debian's ctr) in namespace default."""
    ok(ctr(any_containerd.address, "images", "import", busybox_tar))
    return any_containerd


# --- Debian's ctr against pallet-containerd ---------------------------------------------

def test_debian_ctr_against_pallet(pallet_containerd):
    d = pallet_containerd
    out = d.ctr("version")
    assert "Server:" in out and "Revision: pallet" in out and "UUID: " in out
    assert d.ctr("namespaces", "ls").splitlines() == ["NAME LABELS "]
    assert d.ctr("images", "ls").splitlines()[0].split() == \
        ["REF", "TYPE", "DIGEST", "SIZE", "PLATFORMS", "LABELS"]
    assert d.ctr("containers", "ls").splitlines() == ["CONTAINER    IMAGE    RUNTIME    "]
    assert d.ctr("tasks", "ls").splitlines() == ["TASK    PID    STATUS    "]
    plugins = d.ctr("plugins", "ls")
    assert "io.containerd.snapshotter.v1    overlayfs" in plugins
    # pallet's own plugins, listed the way containerd lists its own
    for typ, pid in (("io.pallet.containerd.v1", "api_grpc"),
                     ("io.pallet.image_store.v1", "store_overlay"),
                     ("io.pallet.runtime.v1", "runtime_ns"), ("io.pallet.init.v1", "init_tini")):
        assert re.search(rf"^{re.escape(typ)}\s+{pid}\s+\S+\s+ok", plugins, re.M), plugins
    detailed = d.ctr("plugins", "ls", "-d")
    assert "io.pallet.runtime.v1" in detailed and "pallet-shim" in detailed
    d.ctr("namespaces", "create", "other", "a=b")
    assert "other a=b" in d.ctr("namespaces", "ls")
    d.ctr("namespaces", "rm", "other")


def test_debian_ctr_import_run_info_and_events(pallet_containerd, busybox_tar):
    d = pallet_containerd
    events = subprocess.Popen([CTR, "--address", d.address, "events"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
    try:
        time.sleep(0.5)
        d.ctr("images", "import", busybox_tar)
        images = d.ctr("images", "ls")
        assert IMAGE in images and "linux/" in images
        r = subprocess.run([CTR, "--address", d.address, "run", "--rm", IMAGE, "ctr-run-1",
                            "sh", "-c", "echo hi-from-ctr; exit 3"], capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 3, r.stderr
        assert r.stdout.strip() == "hi-from-ctr"
        assert d.ctr("containers", "ls").splitlines()[1:] == []
        d.ctr("containers", "create", IMAGE, "ctr-c2", "sleep", "5")
        info = json.loads(d.ctr("containers", "info", "ctr-c2"))
        assert info["ID"] == "ctr-c2" and info["Image"] == IMAGE
        assert info["Runtime"]["Name"] == "io.containerd.runc.v2"
        assert info["Spec"]["process"]["args"] == ["sleep", "5"]
        assert info["SnapshotKey"] == "ctr-c2" and info["Snapshotter"] == "overlayfs"
        assert json.loads(d.ctr("containers", "info", "--spec", "ctr-c2")) == info["Spec"]
        d.ctr("containers", "rm", "ctr-c2")
        time.sleep(0.5)
    finally:
        events.send_signal(signal.SIGINT)
        out, _ = events.communicate(timeout=10)
    lines = out.decode().splitlines()
    topics = [line.split()[5] for line in lines if len(line.split()) > 5]
    for topic in ("/images/create", "/snapshot/prepare", "/containers/create", "/tasks/create",
                  "/tasks/start", "/tasks/exit", "/tasks/delete", "/containers/delete"):
        assert topic in topics, lines
    exit_line = next(line for line in lines if "/tasks/exit" in line)
    assert '"exit_status":3' in exit_line.replace(" ", "") and exit_line.split()[4] == "default"
    # each task event once, though the task service and the shim both publish them
    assert topics.count("/tasks/start") == 1 and topics.count("/tasks/exit") == 1


def test_debian_ctr_exec_attach_kill_and_runc_binary(pallet_containerd, busybox_tar):
    d = pallet_containerd
    d.ctr("images", "import", busybox_tar)
    # --runc-binary: runc's options name the binary; pallet-shim drives Debian's runc
    d.ctr("run", "-d", "--runc-binary", "runc", IMAGE, "ctr-r", "sleep", "1000")
    bundle = os.path.join(d.state, "io.containerd.runtime.v2.task", "default", "ctr-r")
    with open(os.path.join(bundle, "options.json")) as f:
        assert json.load(f)["binary_name"] == "runc"
    r = ctr(d.address, "task", "exec", "--exec-id", "x1", "ctr-r", "sh", "-c",
            "echo in-exec; exit 4")
    assert r.returncode == 4 and r.stdout == b"in-exec\n"
    assert "RUNNING" in d.ctr("task", "ls")
    d.ctr("task", "kill", "-s", "SIGKILL", "ctr-r")
    assert wait_for(lambda: "STOPPED" in d.ctr("task", "ls"))
    r = ctr(d.address, "task", "rm", "ctr-r")
    assert r.returncode == 0 and b"137" in r.stderr
    d.ctr("containers", "rm", "ctr-r")
    assert not mounted_under(bundle)


# --- pallet-ctr prints what ctr prints --------------------------------------------------

_TIMES = re.compile(rb"\d{4}-\d\d-\d\d[T ][0-9:.]+(Z| \+0000 UTC)?")


@pytest.mark.parametrize("command", [
    ("namespaces", "ls"), ("containers", "ls"), ("tasks", "ls"), ("plugins", "ls"),
    ("images", "ls"), ("images", "check"), ("snapshots", "ls"), ("containers", "info", "pl-c1"),
    ("images", "ls", "-q"), ("containers", "ls", "-q"), ("tasks", "ps", "pl-c1"),
    ("snapshots", "info", "pl-c1"), ("content", "ls", "-q"), ("leases", "ls")])
def test_pallet_ctr_prints_what_ctr_prints(loaded, command):
    d = loaded
    d.ctr("namespaces", "create", "pl-ns", "x=y")
    d.ctr("run", "-d", IMAGE, "pl-c1", "sleep", "60")
    try:
        r = pallet_ctr(d.address, *command)
        theirs = ctr(d.address, *command)
        assert r.returncode == theirs.returncode == 0, (r.stderr, theirs.stderr)
        if command[0] == "tasks" and command[1] == "ps":
            # the PIDs are the same, the INFO column too
            assert r.stdout == theirs.stdout
        elif command[1] == "info":
            assert json.loads(_TIMES.sub(b"T", r.stdout)) == json.loads(
                _TIMES.sub(b"T", theirs.stdout))
        else:
            assert r.stdout == theirs.stdout
    finally:
        d.ctr("task", "kill", "-s", "SIGKILL", "pl-c1")
        wait_for(lambda: "STOPPED" in d.ctr("task", "ls"))
        ctr(d.address, "task", "rm", "pl-c1")
        d.ctr("containers", "rm", "pl-c1")


def test_pallet_ctr_version_and_errors(any_containerd):
    r = pallet_ctr(any_containerd.address, "version")
    assert r.returncode == 0 and b"Server:" in r.stdout and b"Client:" in r.stdout
    r = pallet_ctr("/tmp/pl-nowhere.sock", "version")
    assert r.returncode == 1 and r.stderr.startswith(b"pallet-ctr: ")
    assert b"Traceback" not in r.stderr
    # as ctr: an unknown command is status 3
    r = pallet_ctr(any_containerd.address, "frobnicate")
    theirs = ctr(any_containerd.address, "frobnicate")
    assert r.returncode == theirs.returncode == 3 and b"Traceback" not in r.stderr
    r = pallet_ctr(any_containerd.address, "tasks", "kill")
    assert r.returncode == 1 and b"container id must be provided" in r.stderr
    r = pallet_ctr(any_containerd.address, "run", "--bogus", IMAGE, "x")
    assert r.returncode == 1 and b"flag provided but not defined: -bogus" in r.stderr
    r = pallet_ctr(any_containerd.address, "containers", "info", "nope-" + secrets.token_hex(3))
    assert r.returncode == 1 and b"not found" in r.stderr and b"Traceback" not in r.stderr


# --- pallet-ctr run ------------------------------------------------------------------------

def test_pallet_ctr_run_flags(loaded, tmp_path):
    d = loaded
    a = d.address
    r = pallet_ctr(a, "run", "--rm", IMAGE, "pr-1", "sh", "-c", "echo out; echo err >&2; exit 5")
    assert (r.returncode, r.stdout, r.stderr) == (5, b"out\n", b"err\n")
    assert b"pr-1" not in pallet_ctr(a, "containers", "ls", "-q").stdout
    # --env, --cwd, --user (numeric and by name, from the image's /etc/passwd)
    r = pallet_ctr(a, "run", "--rm", "--env", "A=1", "--env", "B=two", "--cwd", "/tmp",
                   "--user", "1000:1000", IMAGE, "pr-2", "sh", "-c", 'echo $A $B $(pwd) $(id)')
    assert ok(r) == "1 two /tmp uid=1000 gid=1000 groups=1000\n"
    r = pallet_ctr(a, "run", "--rm", "--user", "nobody", IMAGE, "pr-3", "id", "-u")
    assert ok(r).strip() == "65534"
    # --mount: a host directory, read-only
    host = tmp_path / "shared"
    host.mkdir()
    (host / "f").write_text("from-host\n")
    r = pallet_ctr(a, "run", "--rm", "--mount", f"type=bind,src={host},dst=/mnt,options=rbind:ro",
                   IMAGE, "pr-4", "sh", "-c", "cat /mnt/f; touch /mnt/g || echo read-only")
    assert ok(r) == "from-host\nread-only\n"
    # --net-host: the host's network namespace
    r = pallet_ctr(a, "run", "--rm", "--net-host", IMAGE, "pr-5", "readlink", "/proc/1/ns/net")
    own = ok(pallet_ctr(a, "run", "--rm", IMAGE, "pr-6", "readlink", "/proc/1/ns/net"))
    assert ok(r).strip() == os.readlink("/proc/self/ns/net")
    assert own.strip() != r.stdout.decode().strip()
    # stdin reaches the process; its end closes the process's stdin
    r = pallet_ctr(a, "run", "--rm", IMAGE, "pr-7", "sh", "-c", "cat; echo end", input=b"abc\n")
    assert ok(r) == "abc\nend\n"
    # -d: detached; the container stays, the task runs
    ok(pallet_ctr(a, "run", "-d", IMAGE, "pr-8", "sleep", "100"))
    assert "RUNNING" in ok(pallet_ctr(a, "tasks", "ls"))
    ok(pallet_ctr(a, "tasks", "kill", "-s", "9", "pr-8"))
    assert wait_for(lambda: "STOPPED" in ok(pallet_ctr(a, "tasks", "ls")))
    ok(pallet_ctr(a, "tasks", "rm", "pr-8"))
    ok(pallet_ctr(a, "containers", "rm", "pr-8"))
    r = pallet_ctr(a, "run", "--rm", "-d", IMAGE, "pr-9", "true")
    assert r.returncode == 1 and b"cannot be specified together" in r.stderr


def test_pallet_ctr_run_with_a_terminal(loaded):
    pexpect = pytest.importorskip("pexpect")
    child = pexpect.spawn(os.path.join(VENV_BIN, "pallet-ctr"),
                          ["-a", loaded.address, "run", "-t", "--rm", IMAGE, "pt-1", "sh"],
                          timeout=30)
    try:
        child.expect(rb"# ")
        child.sendline(b"tty")
        child.expect(rb"/dev/pts/0")
        child.setwinsize(41, 123)
        # the new size travels pallet-ctr -> containerd -> shim: ask until it has arrived
        for _ in range(50):
            child.sendline(b"stty size")
            if child.expect([rb"41 123", rb"\d+ \d+"]) == 0:
                break
            time.sleep(0.1)
        else:
            raise AssertionError("the terminal was never resized")
        child.sendline(b"exit 6")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 6


def test_pallet_ctr_tasks(loaded, tmp_path):
    d = loaded
    a = d.address
    ok(pallet_ctr(a, "containers", "create", IMAGE, "pt-2", "sh", "-c",
                  "trap 'echo got-term; exit 7' TERM; while true; do sleep 0.1; done"))
    ok(pallet_ctr(a, "tasks", "start", "-d", "pt-2"))
    ls = ok(pallet_ctr(a, "tasks", "ls"))
    assert re.search(r"^pt-2\s+(\d+)\s+RUNNING", ls, re.M)
    r = pallet_ctr(a, "tasks", "exec", "--exec-id", "e1", "pt-2", "sh", "-c", "echo ex; exit 3")
    assert (r.returncode, r.stdout) == (3, b"ex\n")
    r = pallet_ctr(a, "tasks", "exec", "pt-2", "true")
    assert r.returncode == 1 and b"exec-id must be provided" in r.stderr
    ok(pallet_ctr(a, "tasks", "pause", "pt-2"))
    assert "PAUSED" in ok(pallet_ctr(a, "tasks", "ls"))
    ok(pallet_ctr(a, "tasks", "resume", "pt-2"))
    table = ok(pallet_ctr(a, "tasks", "metrics", "pt-2"))
    assert re.search(r"^memory.usage_in_bytes\s+\d+", table, re.M)
    assert re.search(r"^pids.current\s+[1-9]", table, re.M)
    metrics = json.loads(ok(pallet_ctr(a, "tasks", "metrics", "--format", "json", "pt-2")))
    assert metrics["memory"]["usage"]["usage"] > 0 and metrics["pids"]["current"] >= 1
    # the default signal: the image's stop signal (SIGTERM), which the trap turns into 7
    ok(pallet_ctr(a, "tasks", "kill", "pt-2"))
    assert wait_for(lambda: "STOPPED" in ok(pallet_ctr(a, "tasks", "ls")))
    r = pallet_ctr(a, "tasks", "rm", "pt-2")
    assert r.returncode == 0 and b"exit code 7" in r.stderr
    ok(pallet_ctr(a, "containers", "rm", "pt-2"))
    # rm -f kills a running task
    ok(pallet_ctr(a, "run", "-d", IMAGE, "pt-3", "sleep", "100"))
    ok(pallet_ctr(a, "tasks", "rm", "-f", "pt-3"))
    ok(pallet_ctr(a, "containers", "rm", "pt-3"))


def test_pallet_ctr_attach(loaded, tmp_path):
    """A task started detached keeps its FIFOs; attach copies them again."""
    a = loaded.address
    fifo_dir = str(tmp_path / "fifo")
    ok(pallet_ctr(a, "containers", "create", IMAGE, "pa-1", "sh", "-c",
                  "while read l; do echo got-$l; done; exit 9"))
    start = subprocess.Popen([os.path.join(VENV_BIN, "pallet-ctr"), "-a", a, "tasks", "start",
                              "--fifo-dir", fifo_dir, "pa-1"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    attach = None
    try:
        start.stdin.write(b"one\n")
        start.stdin.flush()
        line = start.stdout.readline()
        assert line == b"got-one\n", start.stderr.read() if not line else line
        # a second client attaches to the same process and writes to it
        attach = subprocess.Popen([os.path.join(VENV_BIN, "pallet-ctr"), "-a", a, "tasks",
                                   "attach", "pa-1"], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(1)
        attach.stdin.write(b"two\n")
        attach.stdin.close()  # its end is not the process's: the starter still writes
        time.sleep(1)
        assert attach.poll() is None
        # the starter's input ends: so does the process's, and both clients see its status
        start.stdin.close()
        assert start.wait(30) == 9
        assert attach.wait(30) == 9
        assert b"got-two" in start.stdout.read() + attach.stdout.read()
    finally:
        for p in (start, attach):
            if p is not None and p.poll() is None:
                p.kill()
    pallet_ctr(a, "containers", "rm", "pa-1")


# --- pallet-ctr's other commands -----------------------------------------------------------

def test_pallet_ctr_images_snapshots_content_leases(loaded, tmp_path, busybox_tar):
    d = loaded
    a = d.address
    out = tmp_path / "export.tar"
    ok(pallet_ctr(a, "images", "export", str(out), IMAGE))
    # Debian's ctr reads what pallet-ctr exports (and the other way round)
    r = ctr(a, "images", "import", str(out), namespace="pl-exp")
    assert r.returncode == 0, r.stderr
    assert ok(pallet_ctr(a, "images", "ls", "-q", namespace="pl-exp")) == IMAGE + "\n"
    ok(pallet_ctr(a, "images", "rm", IMAGE, namespace="pl-exp"))
    theirs = tmp_path / "theirs.tar"
    ok(ctr(a, "images", "export", str(theirs), IMAGE))
    r = pallet_ctr(a, "images", "import", str(theirs), namespace="pl-imp")
    assert ok(r).startswith(f"unpacking {IMAGE} (sha256:") and r.stdout.endswith(b"...done\n")
    assert "complete (2/2)" in ok(pallet_ctr(a, "images", "check", namespace="pl-imp"))
    ok(pallet_ctr(a, "images", "rm", IMAGE, namespace="pl-imp"))
    # tag, rm
    assert ok(pallet_ctr(a, "images", "tag", IMAGE, "docker.io/library/bb:t1")) == \
        "docker.io/library/bb:t1\n"
    r = pallet_ctr(a, "images", "tag", IMAGE, "docker.io/library/bb:t1")
    assert r.returncode == 1 and b"already exists" in r.stderr
    ok(pallet_ctr(a, "images", "tag", "--force", IMAGE, "docker.io/library/bb:t1"))
    assert "docker.io/library/bb:t1" in ok(pallet_ctr(a, "images", "ls", "-q"))
    assert ok(pallet_ctr(a, "images", "rm", "docker.io/library/bb:t1")) == \
        "docker.io/library/bb:t1\n"
    # snapshots: one that Debian's ctr prepares (under its lease: containerd's GC keeps it)
    parent = ok(ctr(a, "snapshots", "ls")).splitlines()[1].split()[0]
    ok(ctr(a, "snapshots", "prepare", "ps-1", parent))
    info = json.loads(ok(pallet_ctr(a, "snapshots", "info", "ps-1")))
    assert info["Kind"] == "Active" and info["Name"] == "ps-1" and info["Parent"] == parent
    assert json.loads(_TIMES.sub(b"T", ok(ctr(a, "snapshots", "info", "ps-1")).encode())) == \
        json.loads(_TIMES.sub(b"T", json.dumps(info).encode()))
    assert "ps-1" in ok(pallet_ctr(a, "snapshots", "ls"))
    ok(pallet_ctr(a, "snapshots", "rm", "ps-1"))
    assert "ps-1" not in ok(pallet_ctr(a, "snapshots", "ls"))
    # content
    content = ok(pallet_ctr(a, "content", "ls"))
    assert content.splitlines()[0].split() == ["DIGEST", "SIZE", "AGE", "LABELS"]
    assert len(content.splitlines()) == len(ok(ctr(a, "content", "ls")).splitlines())
    # leases
    lease = ok(pallet_ctr(a, "leases", "create", "--id", "pl-l1", "--expires", "1h", "k=v"))
    assert lease == "pl-l1\n"
    ls = ok(pallet_ctr(a, "leases", "ls"))
    assert re.search(r"^pl-l1 \S+Z +(containerd.io/gc.expire=\S+,)?k=v", ls, re.M), ls
    assert ok(pallet_ctr(a, "leases", "rm", "pl-l1")) == "pl-l1\n"
    assert "pl-l1" not in ok(pallet_ctr(a, "leases", "ls"))
    # namespaces
    ok(pallet_ctr(a, "namespaces", "create", "pl-n2", "a=b"))
    assert re.search(r"^pl-n2 +a=b", ok(pallet_ctr(a, "namespaces", "ls")), re.M)
    assert ok(pallet_ctr(a, "namespaces", "rm", "pl-n2")) == "pl-n2\n"


def test_pallet_ctr_events(loaded):
    a = loaded.address
    events = subprocess.Popen([os.path.join(VENV_BIN, "pallet-ctr"), "-a", a, "events"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(1)
        ok(pallet_ctr(a, "run", "--rm", IMAGE, "pe-1", "true"))
        time.sleep(0.5)
    finally:
        events.send_signal(signal.SIGINT)
        out, err = events.communicate(timeout=10)
    lines = out.decode().splitlines()
    topics = [line.split()[5] for line in lines]
    for topic in ("/containers/create", "/tasks/create", "/tasks/start", "/tasks/exit",
                  "/tasks/delete", "/containers/delete"):
        assert topic in topics, lines
    line = next(x for x in lines if "/tasks/start" in x)
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)? \+0000 UTC default /tasks/start "
                    r'\{"container_id":"pe-1","pid":\d+\}$', line), line
    assert b"Traceback" not in err


def test_pallet_ctr_pull_from_a_local_registry(pallet_containerd, busybox_tar, tmp_path):
    """images pull through the image store's registry client, from Debian's docker-registry."""
    import shutil
    import socket

    registry, skopeo = shutil.which("docker-registry"), shutil.which("skopeo")
    if not registry or not skopeo:
        pytest.skip("needs docker-registry and skopeo")
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    config = tmp_path / "registry.yml"
    config.write_text(f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {tmp_path}/reg\n"
                      f"http:\n  addr: 127.0.0.1:{port}\n")
    proc = subprocess.Popen([registry, "serve", str(config)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: socket.socket().connect_ex(("127.0.0.1", port)) == 0, 15)
        ref = f"127.0.0.1:{port}/pallet/busybox:1"
        subprocess.run([skopeo, "copy", "--dest-tls-verify=false", f"docker-archive:{busybox_tar}",
                        f"docker://{ref}"], check=True, capture_output=True)
        r = pallet_ctr(pallet_containerd.address, "images", "pull", "--plain-http", ref,
                       timeout=120)
        out = ok(r)
        # ctr's last progress frame, then the unpack
        assert re.search(rf"^{re.escape(ref)}:\s+resolved", out, re.M), out
        assert re.search(r"^unpacking linux/\S+ sha256:[0-9a-f]{64}\.\.\.$", out, re.M), out
        assert re.search(r"^done: [0-9.]+(ms|s|µs)\s*$", out, re.M), out
        assert ref in ok(pallet_ctr(pallet_containerd.address, "images", "ls", "-q"))
        r = pallet_ctr(pallet_containerd.address, "run", "--rm", ref, "pl-pull", "echo",
                       "pulled")
        assert ok(r) == "pulled\n"
        # the same image through Debian's ctr: same digest
        theirs = ctr(pallet_containerd.address, "images", "pull", "--plain-http", ref,
                     namespace="pl-theirs", timeout=120)
        assert theirs.returncode == 0, theirs.stderr
        a = ok(pallet_ctr(pallet_containerd.address, "images", "ls"))
        b = ok(ctr(pallet_containerd.address, "images", "ls", namespace="pl-theirs"))
        assert a.split("\n")[1].split()[2] == b.split("\n")[1].split()[2]
    finally:
        proc.terminate()
        proc.wait(10)
