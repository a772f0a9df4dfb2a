"""The commands added to the pallet CLI (volume, network, events, stats,
system df/prune, container prune, update, top, cp, export, exec), compared
with the docker CLI against the same real dockerd."""

import io
import json
import os
import shutil
import tarfile
import time

import pytest

from cli_helpers import same_as_docker, suffix

DOCKER_CLI = shutil.which("docker")
pytestmark = pytest.mark.skipif(not DOCKER_CLI, reason="docker CLI not installed")


@pytest.fixture(scope="module")
def objs(dockerd):
    s = suffix()
    o = {"up": "plc-up-" + s, "vol": "plc-v-" + s, "vol2": "plc-w-" + s, "net": "plc-n-" + s}
    assert dockerd.docker("run", "-d", "--name", o["up"], "busybox", "sleep", "600").returncode == 0
    dockerd.docker("volume", "create", "--label", "k=v", o["vol"])
    dockerd.docker("volume", "create", o["vol2"])
    dockerd.docker("network", "create", "--internal", "--label", "x=y", o["net"])
    yield o
    dockerd.docker("rm", "-f", o["up"])
    dockerd.docker("volume", "rm", "-f", o["vol"], o["vol2"])
    dockerd.docker("network", "rm", o["net"])


# -- volume ---------------------------------------------------------------------------
@pytest.mark.parametrize("args", [
    ["volume", "ls"], ["volume", "ls", "-q"], ["volume", "ls", "--format", "{{json .}}"],
    ["volume", "ls", "--format", "table {{.Name}}\\t{{.Labels}}\\t{{.Label \"k\"}}"],
    ["volume", "ls", "-f", "label=k"], ["volume", "ls", "-f", "bogus"],
    ["volume", "inspect", "{vol}"], ["volume", "inspect", "{vol}", "{vol2}"],
    ["volume", "inspect", "-f", "{{.Name}} {{.Labels}}", "{vol}"],
    ["volume", "inspect", "plc-nosuch", "{vol}"], ["volume", "rm", "plc-nosuch"],
    ["volume", "inspect"], ["volume", "nosuch"],
    ["volume", "ls", "extra"],
])
def test_volume_read_commands(dockerd, objs, args):
    same_as_docker(dockerd, *[a.format(**objs) for a in args])


def test_volume_create_rm_prune(dockerd):
    s = suffix()
    for tool, name in (("docker", "plcv-d-" + s), ("pallet", "plcv-p-" + s)):
        run = getattr(dockerd, tool)
        r = run("volume", "create", "-o", "type=tmpfs", "-o", "device=tmpfs", "--label", "a=1",
                name)
        assert (r.returncode, r.stdout) == (0, name + "\n"), r.stderr
        info = json.loads(run("volume", "inspect", name).stdout)[0]
        assert info["Options"] == {"type": "tmpfs", "device": "tmpfs"}
        assert info["Labels"] == {"a": "1"}
        r = run("volume", "rm", name)
        assert (r.returncode, r.stdout) == (0, name + "\n")
    # prune: answer no, then -f
    name = "plcv-x-" + s
    dockerd.pallet("volume", "create", name)
    r = dockerd.pallet("volume", "prune", input="n\n")
    assert r.returncode == 0 and r.stdout.startswith("WARNING! This will remove")
    assert r.stdout.endswith("Are you sure you want to continue? [y/N] ")
    assert name in dockerd.pallet("volume", "ls", "-q").stdout
    r = dockerd.pallet("volume", "prune", "-f")
    assert r.returncode == 0, r.stderr
    if name in r.stdout:  # API 1.41 prunes named volumes too; 1.42+ needs --all
        assert r.stdout.startswith("Deleted Volumes:\n")
        assert r.stdout.endswith("\nTotal reclaimed space: 0B\n")
    else:
        assert dockerd.pallet("volume", "rm", name).returncode == 0


# -- network --------------------------------------------------------------------------
@pytest.mark.parametrize("args", [
    ["network", "ls"], ["network", "ls", "-q"], ["network", "ls", "--no-trunc"],
    ["network", "ls", "--format", "{{json .}}"], ["network", "ls", "-f", "label=x"],
    ["network", "ls", "--format", "{{.Name}} {{.Internal}} {{.Label \"x\"}}"],
    ["network", "inspect", "{net}"], ["network", "inspect", "-f", "{{.Name}} {{.Internal}}", "{net}"],
    ["network", "inspect", "plc-nosuch"], ["network", "rm", "plc-nosuch"],
    ["network", "create"], ["network", "connect", "x"],
    ["network", "create", "--subnet", "10.77.0.0/24", "--gateway", "10.78.0.1", "x"],
    ["network", "create", "--gateway", "10.78.0.1", "x"],
    ["network", "create", "--subnet", "bogus", "x"],
])
def test_network_read_commands(dockerd, objs, args):
    same_as_docker(dockerd, *[a.format(**objs) for a in args])


def test_network_create_connect_rm_prune(dockerd, objs):
    s = suffix()
    net = "plcn-" + s
    r = dockerd.pallet("network", "create", "--subnet", "10.79.%d.0/24" % (int(s[:2], 16) % 250),
                       "--label", "t=1", net)
    assert r.returncode == 0 and len(r.stdout.strip()) == 64, r.stderr
    info = json.loads(dockerd.pallet("network", "inspect", net).stdout)[0]
    assert info["Labels"] == {"t": "1"} and info["IPAM"]["Config"][0]["Subnet"].startswith("10.79.")
    r = dockerd.pallet("network", "create", net)
    assert r.returncode == 1 and "already exists" in r.stderr
    r = dockerd.pallet("network", "connect", "--alias", "web", net, objs["up"])
    assert r.returncode == 0, r.stderr
    nets = json.loads(dockerd.pallet("inspect", objs["up"]).stdout)[0]["NetworkSettings"]["Networks"]
    assert "web" in (nets[net]["Aliases"] or [])
    r = dockerd.pallet("network", "disconnect", net, objs["up"])
    assert r.returncode == 0, r.stderr
    r = dockerd.pallet("network", "rm", net)
    assert (r.returncode, r.stdout) == (0, net + "\n")
    dockerd.pallet("network", "create", net + "-p")
    r = dockerd.pallet("network", "prune", "-f")
    assert r.returncode == 0 and ("Deleted Networks:\n" in r.stdout) and (net + "-p\n") in r.stdout


# -- events ---------------------------------------------------------------------------
def test_events_match_docker(dockerd, objs):
    until = str(int(time.time()))
    for fmt in ([], ["--format", "{{json .}}"],
                ["--format", "{{.Type}} {{.Action}} {{.Actor.ID}} {{.Actor.Attributes.name}}"],
                ["-f", "type=volume"], ["-f", "event=create", "-f", "type=container"]):
        same_as_docker(dockerd, "events", "--since", "0", "--until", until, *fmt)


def test_events_follow(dockerd):
    import subprocess
    import sys
    name = "plce-" + suffix()
    p = subprocess.Popen([sys.executable, "-m", "pallet.client.docker", "events", "-f",
                          "container=" + name, "--format", "{{.Action}}"],
                         stdout=subprocess.PIPE, text=True, env=dockerd.env())
    try:
        time.sleep(0.5)
        dockerd.pallet("run", "--rm", "--name", name, "busybox", "true")
        seen = []
        deadline = time.monotonic() + 30
        while "destroy" not in seen and time.monotonic() < deadline:
            seen.append(p.stdout.readline().strip())
        assert seen[:2] == ["create", "attach"] and "start" in seen and "die" in seen
    finally:
        p.terminate()
        p.wait(10)


# -- stats / top / df ---------------------------------------------------------------------
def test_stats_no_stream(dockerd, objs):
    r = dockerd.pallet("stats", "--no-stream")
    ref = dockerd.docker("stats", "--no-stream")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == ref.stdout.splitlines()[0]
    row = [ln for ln in r.stdout.splitlines() if objs["up"] in ln][0]
    assert row.split()[0] == dockerd.docker("inspect", "-f", "{{.Id}}", objs["up"]).stdout[:12]
    same_as_docker(dockerd, "stats", "--no-stream", "--format",
                   "{{.Name}} {{.Container}} {{.PIDs}} {{.NetIO}} {{.BlockIO}}", objs["up"])
    same_as_docker(dockerd, "stats", "--no-stream", "plc-nosuch")
    mine = json.loads(dockerd.pallet("stats", "--no-stream", "--format", "{{json .}}",
                                     objs["up"]).stdout)
    theirs = json.loads(dockerd.docker("stats", "--no-stream", "--format", "{{json .}}",
                                       objs["up"]).stdout)
    assert sorted(mine) == sorted(theirs)
    assert mine["MemUsage"].split(" / ")[1] == theirs["MemUsage"].split(" / ")[1]


@pytest.mark.parametrize("args", [
    ["top", "{up}"], ["top", "{up}", "-o", "pid,comm"], ["top", "plc-nosuch"],
    ["system", "df"], ["system", "df", "--format", "{{json .}}"],
    ["update", "{up}"], ["update", "--cpus", "0.5", "plc-nosuch"],
    ["update", "--memory", "bogus", "{up}"], ["cp", "a", "b"], ["cp", "{up}:/nosuch", "/tmp/x"],
    ["export", "plc-nosuch"], ["exec", "plc-nosuch", "true"],
])
def test_more_read_commands(dockerd, objs, args):
    same_as_docker(dockerd, *[a.format(**objs) for a in args])


def test_update(dockerd, objs):
    r = dockerd.pallet("update", "--memory", "64m", "--memory-swap", "128m", "--pids-limit", "99",
                       "--restart", "on-failure:3", objs["up"])
    assert (r.returncode, r.stdout) == (0, objs["up"] + "\n"), r.stderr
    hc = json.loads(dockerd.pallet("inspect", objs["up"]).stdout)[0]["HostConfig"]
    assert (hc["Memory"], hc["MemorySwap"], hc["PidsLimit"]) == (64 << 20, 128 << 20, 99)
    assert hc["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}


def test_container_prune(dockerd):
    name = "plcp-" + suffix()
    dockerd.pallet("run", "--name", name, "busybox", "true")
    cid = dockerd.pallet("inspect", "-f", "{{.Id}}", name).stdout.strip()
    r = dockerd.pallet("container", "prune", input="no\n")
    assert r.stdout == ("WARNING! This will remove all stopped containers.\n"
                        "Are you sure you want to continue? [y/N] ")
    assert dockerd.pallet("inspect", name).returncode == 0
    r = dockerd.pallet("container", "prune", "-f", "--filter", "until=1h")
    assert r.returncode == 0 and cid not in r.stdout  # younger than an hour
    r = dockerd.pallet("container", "prune", "-f")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Deleted Containers:\n") and cid + "\n" in r.stdout
    assert r.stdout.endswith("\nTotal reclaimed space: 0B\n")


# -- exec -------------------------------------------------------------------------------
def test_exec_status_streams_and_options(dockerd, objs):
    up = objs["up"]
    r = dockerd.pallet("exec", up, "sh", "-c", "echo out; echo err >&2; exit 7")
    assert (r.returncode, r.stdout, r.stderr) == (7, "out\n", "err\n")
    r = dockerd.pallet("exec", "-e", "A=1", "-w", "/tmp", "-u", "nobody", up, "sh", "-c",
                       "echo $A $(pwd) $(id -un)")
    assert (r.returncode, r.stdout) == (0, "1 /tmp nobody\n"), r.stderr
    r = dockerd.pallet("exec", "-i", up, "tr", "a-z", "A-Z", input="piped\n")
    assert (r.returncode, r.stdout) == (0, "PIPED\n")
    r = dockerd.pallet("exec", "-d", up, "sh", "-c", "echo bg > /tmp/bg")
    assert (r.returncode, r.stdout) == (0, "")
    deadline = time.monotonic() + 10
    while dockerd.pallet("exec", up, "cat", "/tmp/bg").stdout != "bg\n":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    for args in (["exec", up, "plc-nosuchcmd"], ["exec", up, "/etc"], ["exec", up],
                 ["exec", "-t", up, "true"]):
        mine = dockerd.pallet(*args)
        ref = dockerd.docker(*args)
        assert mine.returncode == ref.returncode, (args, mine.stderr, ref.stderr)


def test_exec_on_a_stopped_container(dockerd):
    name = "plcx-" + suffix()
    dockerd.pallet("create", "--name", name, "busybox", "true")
    try:
        same_as_docker(dockerd, "exec", name, "true")
    finally:
        dockerd.pallet("rm", name)


# -- cp / export --------------------------------------------------------------------------
def _tree(root):
    out = {}
    for dirpath, dirs, files in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        for d in dirs:
            out[os.path.normpath(os.path.join(rel, d))] = "dir"
        for f in files:
            with open(os.path.join(dirpath, f), "rb") as fh:
                out[os.path.normpath(os.path.join(rel, f))] = fh.read()
    return out


@pytest.mark.parametrize("src,dst,pre", [
    ("{c}:/tmp/src", "out", None),          # a directory to a new name
    ("{c}:/tmp/src", "out", "dir"),         # into an existing directory
    ("{c}:/tmp/src/.", "out", "dir"),       # its contents only
    ("{c}:/tmp/src/a", "out", None),        # a file to a new name
    ("{c}:/tmp/src/a", "out", "dir"),       # a file into a directory
    ("{c}:/tmp/src/a", "out/", None),       # a missing directory: error
    ("{c}:/tmp/src", "out", "file"),        # a directory onto a file: error
    ("{c}:/etc/hostname", "out", "file"),   # a file replacing a file
])
def test_cp_from_container_like_docker(dockerd, objs, tmp_path, src, dst, pre):
    c = objs["up"]
    dockerd.docker("exec", c, "sh", "-c", "mkdir -p /tmp/src/sub && echo a > /tmp/src/a && "
                   "echo b > /tmp/src/sub/b")
    results = []
    for tool in ("docker", "pallet"):
        base = tmp_path / tool
        base.mkdir()
        if pre == "dir":
            (base / "out").mkdir()
        elif pre == "file":
            (base / "out").write_text("old\n")
        r = getattr(dockerd, tool)("cp", src.format(c=c), str(base / dst))
        results.append((r.returncode, r.stderr.replace(str(base), "BASE").replace("docker", "pallet"),
                        _tree(str(base))))
    assert results[0] == results[1]


@pytest.mark.parametrize("src,dst", [
    ("dir", "/tmp/in-{t}"), ("dir", "/tmp"), ("dir/.", "/tmp/dot-{t}"), ("dir/f", "/tmp/f-{t}"),
    ("dir/f", "/tmp/nosuchdir-{t}/"), ("dir", "/etc/hostname"),
])
def test_cp_into_container_like_docker(dockerd, objs, tmp_path, src, dst):
    c = objs["up"]
    (tmp_path / "dir" / "sub").mkdir(parents=True)
    (tmp_path / "dir" / "f").write_text("f\n")
    (tmp_path / "dir" / "sub" / "g").write_text("g\n")
    results = []
    for tool in ("docker", "pallet"):
        d = dst.format(t=tool[0])
        r = getattr(dockerd, tool)("cp", str(tmp_path / src), "%s:%s" % (c, d))
        listing = dockerd.docker("exec", c, "sh", "-c",
                                 "cd %s 2>/dev/null && find . | sort && cat $(find . -type f) "
                                 "2>/dev/null" % d.rstrip("/")).stdout
        # docker logs its tar writer's complaints (before or, racing, after
        # its error): compare the last line that is not such a log line
        lines = [ln for ln in r.stderr.strip().splitlines() if not ln.startswith('time="')]
        last = (lines or [""])[-1]
        results.append((r.returncode, last.replace("docker", "pallet"),
                        listing if "/tmp/" in d else ""))
    assert results[0] == results[1]


def test_cp_tar_streams(dockerd, objs, tmp_path):
    c = objs["up"]
    r = dockerd.pallet("cp", "%s:/etc/passwd" % c, "-")
    assert r.returncode == 0
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        data = b"from a tar stream\n"
        info = tarfile.TarInfo("streamed")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    import subprocess
    import sys
    p = subprocess.run([sys.executable, "-m", "pallet.client.docker", "cp", "-", "%s:/tmp" % c],
                       input=buf.getvalue(), capture_output=True, env=dockerd.env(), timeout=60)
    assert p.returncode == 0, p.stderr
    assert dockerd.docker("exec", c, "cat", "/tmp/streamed").stdout == "from a tar stream\n"


def test_export(dockerd, objs, tmp_path):
    out = tmp_path / "fs.tar"
    r = dockerd.pallet("export", "-o", str(out), objs["up"])
    assert r.returncode == 0, r.stderr
    with tarfile.open(out) as tf:
        names = tf.getnames()
    assert "bin/busybox" in names or "./bin/busybox" in names
