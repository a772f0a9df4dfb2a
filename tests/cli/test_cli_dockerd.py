"""The ``pallet`` CLI against a real dockerd, compared with the real docker CLI."""

import json
import os
import subprocess
import sys
import time

import shutil
import uuid

import pytest

DOCKER_CLI = shutil.which("docker")


def suffix():
    return uuid.uuid4().hex[:8]


needs_docker_cli = pytest.mark.skipif(not DOCKER_CLI, reason="docker CLI not installed")


def _as_pallet(text):
    """docker's output with the program name swapped, for byte comparisons."""
    return text.replace("docker", "pallet")


def _same_as_docker(d, *args, attempts=3):
    """pallet's (stdout, stderr, status) equals docker's for the same arguments.

    Times in columns ('2 seconds ago') can tick between the two runs, so
    docker runs before and after pallet and either answer counts.
    """
    for _ in range(attempts):
        before = d.docker(*args)
        mine = d.pallet(*args)
        after = d.docker(*args)
        for ref in (before, after):
            if (mine.stdout, mine.stderr, mine.returncode) == (
                    _as_pallet(ref.stdout), _as_pallet(ref.stderr), ref.returncode):
                return mine
    assert (mine.returncode, mine.stdout, mine.stderr) == (
        after.returncode, _as_pallet(after.stdout), _as_pallet(after.stderr))
    return mine


# -- run ----------------------------------------------------------------------
def test_run_rm_echo_hello(dockerd, name):
    r = dockerd.pallet("run", "--rm", "--name", name, "busybox", "echo", "hello")
    assert (r.returncode, r.stdout, r.stderr) == (0, "hello\n", "")
    # --rm: the container is gone once run returns (wait condition=removed)
    ps = dockerd.pallet("ps", "-a", "--filter", "name=" + name, "-q")
    assert ps.returncode == 0 and ps.stdout == ""


def test_run_exit_status_and_streams(dockerd):
    r = dockerd.pallet("run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (r.returncode, r.stdout, r.stderr) == (3, "out\n", "err\n")


@pytest.mark.parametrize("argv,code,text", [
    (["busybox", "nosuchcmd"], 127, "executable file not found"),
    (["busybox", "/etc/passwd"], 126, "permission denied"),
])
def test_run_start_failures(dockerd, argv, code, text):
    r = dockerd.pallet("run", "--rm", *argv)
    assert r.returncode == code
    assert r.stderr.startswith("pallet: Error response from daemon: ")
    assert text in r.stderr
    assert r.stderr.endswith("\n\nRun 'pallet run --help' for more information\n")


def test_run_bad_flag_is_125(dockerd):
    r = dockerd.pallet("run", "--bogus", "busybox")
    assert r.returncode == 125
    assert r.stderr.startswith("unknown flag: --bogus\n\nUsage:  pallet run [OPTIONS] IMAGE")


def test_run_unknown_image_pull_never(dockerd):
    ref = "nosuch-%s:x" % suffix()
    r = dockerd.pallet("run", "--rm", "--pull", "never", ref, "true")
    assert r.returncode == 125
    assert r.stderr == ("pallet: Error response from daemon: No such image: %s\n\n"
                        "Run 'pallet run --help' for more information\n" % ref)


def test_run_unknown_image_tries_pull(dockerd):
    # a registry on a closed loopback port: the pull fails at once, no traffic leaves the host
    ref = "127.0.0.1:1/nosuch-%s" % suffix()
    r = dockerd.pallet("run", "--rm", ref, "true")
    assert r.returncode == 125
    lines = r.stderr.splitlines()
    assert lines[0] == "Unable to find image '%s:latest' locally" % ref
    assert lines[1].startswith("pallet: Error response from daemon: ")
    assert lines[-1] == "Run 'pallet run --help' for more information"


@needs_docker_cli
def test_run_unknown_image_matches_docker(dockerd):
    ref = "127.0.0.1:1/nosuch-%s" % suffix()
    _same_as_docker(dockerd, "run", "--rm", ref, "true")


def test_run_options_reach_the_container(dockerd, tmp_path):
    env_file = tmp_path / "env"
    env_file.write_text("# comment\nFROM_FILE=yes\n")
    r = dockerd.pallet("run", "--rm", "-e", "FOO=bar", "--env-file", str(env_file),
                       "-w", "/tmp", "-u", "nobody", "-h", "plhost", "--init",
                       "-l", "com.example.k=v", "--network", "none", "busybox", "sh", "-c",
                       "echo $FOO $FROM_FILE; pwd; id -u; hostname; "
                       "tr '\\0' ' ' </proc/1/cmdline; echo; ls /sys/class/net")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "bar yes"
    assert lines[1] == "/tmp"
    assert lines[2] == "65534"
    assert lines[3] == "plhost"
    assert "init" in lines[4].split()[0] and lines[4].split()[1] == "--"
    assert lines[5:] == ["lo"]


def test_run_entrypoint_and_stdin(dockerd):
    r = dockerd.pallet("run", "--rm", "--entrypoint", "echo", "busybox", "hi", "there")
    assert (r.returncode, r.stdout) == (0, "hi there\n")
    r = dockerd.pallet("run", "--rm", "-i", "busybox", "sh", "-c", "cat; echo done",
                       input="a\nb\n")
    assert (r.returncode, r.stdout) == (0, "a\nb\ndone\n")
    r = dockerd.pallet("run", "--rm", "-it", "busybox", "true", input="")
    assert (r.returncode, r.stderr) == (1, "the input device is not a TTY\n")


def test_run_detached_and_lifecycle(dockerd, name):
    r = dockerd.pallet("run", "-d", "--name", name, "busybox", "sh", "-c",
                       "trap 'exit 7' TERM; echo ready; while true; do sleep 0.1; done")
    assert r.returncode == 0, r.stderr
    cid = r.stdout.strip()
    assert len(cid) == 64
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if dockerd.pallet("logs", name).stdout == "ready\n":
                break
            time.sleep(0.1)
        assert dockerd.pallet("logs", name).stdout == "ready\n"
        ps = dockerd.pallet("ps", "--filter", "name=" + name, "--format", "{{.ID}} {{.Names}} {{.State}}")
        assert ps.stdout == "%s %s running\n" % (cid[:12], name)
        top = dockerd.pallet("top", name)
        assert top.returncode == 0 and top.stdout.startswith("UID ")
        ex = dockerd.pallet("exec", "-w", "/tmp", "-e", "A=1", name, "sh", "-c", "pwd; echo $A; exit 4")
        assert (ex.returncode, ex.stdout) == (4, "/tmp\n1\n")
        ex = dockerd.pallet("exec", name, "nosuch")
        assert ex.returncode in (126, 127)
        assert dockerd.pallet("pause", name).stdout == name + "\n"
        st = dockerd.pallet("inspect", "-f", "{{.State.Status}}", name)
        assert st.stdout == "paused\n"
        assert dockerd.pallet("unpause", name).stdout == name + "\n"
        new = name + "-renamed"
        assert dockerd.pallet("rename", name, new).returncode == 0
        assert dockerd.pallet("stop", "-t", "5", new).stdout == new + "\n"
        w = dockerd.pallet("wait", new)
        assert (w.returncode, w.stdout) == (0, "7\n")
        ps = dockerd.pallet("ps", "-a", "--filter", "name=" + new, "--format", "{{.Status}}")
        assert ps.stdout.startswith("Exited (7) ")
        st = dockerd.pallet("start", new)
        assert (st.returncode, st.stdout) == (0, new + "\n")
        k = dockerd.pallet("kill", "-s", "KILL", new)
        assert k.returncode == 0
        assert dockerd.pallet("wait", new).stdout == "137\n"
        rm = dockerd.pallet("rm", "-v", new)
        assert (rm.returncode, rm.stdout) == (0, new + "\n")
    finally:
        dockerd.pallet("rm", "-f", cid)


def test_create_start_attach(dockerd, name):
    r = dockerd.pallet("create", "--name", name, "busybox", "sh", "-c", "echo started; exit 4")
    assert r.returncode == 0 and len(r.stdout.strip()) == 64
    try:
        r = dockerd.pallet("start", "-a", name)
        assert (r.returncode, r.stdout) == (4, "started\n")
        r = dockerd.pallet("logs", "--tail", "1", "-t", name)
        assert r.returncode == 0 and r.stdout.endswith("Z started\n")
    finally:
        dockerd.pallet("rm", "-f", name)


def test_daemon_errors(dockerd):
    missing = "nosuch-" + suffix()
    r = dockerd.pallet("rm", missing)
    assert (r.returncode, r.stderr) == (1, "Error response from daemon: No such container: %s\n" % missing)
    r = dockerd.pallet("stop", missing, missing + "2")
    assert r.returncode == 1 and r.stderr.count("No such container") == 2
    r = dockerd.pallet("inspect", missing)
    assert (r.returncode, r.stdout, r.stderr) == (1, "[]\n", "Error: No such object: %s\n" % missing)


def test_cannot_connect(tmp_path):
    sock = str(tmp_path / "none.sock")
    env = dict(os.environ, PALLET_HOST="unix://" + sock)
    env.pop("DOCKER_HOST", None)
    cmd = [sys.executable, "-m", "pallet.client.docker"]
    r = subprocess.run(cmd + ["ps"], capture_output=True, text=True, env=env, timeout=30)
    assert (r.returncode, r.stderr) == (
        1, "Cannot connect to the Docker daemon at unix://%s. Is the docker daemon running?\n" % sock)
    r = subprocess.run(cmd + ["-H", "unix://" + sock, "run", "busybox"], capture_output=True,
                       text=True, env=env, timeout=30)
    assert r.returncode == 125
    assert r.stderr.startswith("pallet: Cannot connect to the Docker daemon at unix://%s." % sock)


# -- columns and formats compared with docker -------------------------------------
@pytest.fixture(scope="module")
def some_containers(dockerd):
    sfx = suffix()
    names = ["plt-up-" + sfx, "plt-exit-" + sfx, "plt-new-" + sfx]
    dockerd.pallet("run", "-d", "--name", names[0], "-l", "a=b", "busybox", "sleep", "300")
    dockerd.pallet("run", "--name", names[1], "busybox", "sh", "-c", "exit 2")
    dockerd.pallet("create", "--name", names[2], "busybox", "echo", "hi", "x y", "a'b")
    yield names
    dockerd.pallet("rm", "-f", *names)


@needs_docker_cli
@pytest.mark.parametrize("args", [
    ["ps"], ["ps", "-a"], ["ps", "-a", "--no-trunc"], ["ps", "-s"], ["ps", "-aq"], ["ps", "-l"],
    ["ps", "-n", "2"], ["ps", "-a", "--format", "{{json .}}"],
    ["ps", "-a", "--format", "table {{.ID}}\\t{{.Names}}\\t{{.Label \"a\"}}\\t{{.State}}"],
    ["ps", "-a", "--filter", "status=exited"], ["ps", "--format", "{{.Nope}}"],
    ["images"], ["images", "--digests"], ["images", "--no-trunc"], ["images", "-q"],
    ["images", "--format", "{{json .}}"], ["images", "busybox"],
    ["ps", "extra"], ["ps", "--bogus"], ["logs"],
])
def test_lists_match_docker(dockerd, some_containers, args):
    _same_as_docker(dockerd, *args)


@needs_docker_cli
def test_inspect_matches_docker(dockerd, some_containers):
    up, exited, new = some_containers
    for args in (["inspect", up], ["inspect", "busybox"], ["inspect", new, "busybox"],
                 ["inspect", "--type", "image", "busybox"],
                 ["inspect", "-f", "{{.Name}} {{.State.Status}} {{json .Config.Cmd}} {{.Config.Labels}}",
                  up, exited],
                 ["inspect", "-f", "{{index .Config.Labels \"a\"}}|{{range .Config.Env}}{{.}};{{end}}", up],
                 ["inspect", "-f", "{{.Config.Nope}}", up],
                 ["inspect", "--type", "container", "busybox"]):
        _same_as_docker(dockerd, *args)
    mine = json.loads(dockerd.pallet("inspect", up).stdout)
    assert mine[0]["Name"] == "/" + up and mine[0]["State"]["Running"] is True


@needs_docker_cli
def test_images_columns(dockerd):
    r = dockerd.pallet("images", "busybox")
    header, row = r.stdout.splitlines()[:2]
    assert header.split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert row.split()[:3] == ["busybox", "latest", dockerd.busybox_id[7:19]]


def test_load_from_stdin(dockerd):
    with open(dockerd.busybox_tar, "rb") as f:
        data = f.read()
    r = subprocess.run([sys.executable, "-m", "pallet.client.docker", "load"], input=data,
                       capture_output=True, env=dockerd.env(), timeout=60)
    assert (r.returncode, r.stdout) == (0, b"Loaded image: busybox:latest\n"), r.stderr


def test_tag_and_rmi(dockerd):
    ref = "pltag-%s:v1" % suffix()
    assert dockerd.pallet("tag", "busybox", ref).returncode == 0
    r = dockerd.pallet("images", "--format", "{{.Repository}}:{{.Tag}}", ref.split(":")[0])
    assert r.stdout == ref + "\n"
    r = dockerd.pallet("rmi", ref)
    assert (r.returncode, r.stdout) == (0, "Untagged: %s\n" % ref)
    r = dockerd.pallet("rmi", ref)
    assert r.returncode == 1 and r.stderr.startswith("Error response from daemon: ")


def test_version_and_info(dockerd):
    r = dockerd.pallet("version")
    assert r.returncode == 0
    assert r.stdout.startswith("Client:\n Version:           ")
    assert "\nServer:\n Engine:\n  Version:          " in r.stdout
    r = dockerd.pallet("version", "-f", "{{.Server.ApiVersion}}")
    assert r.stdout.strip() == "1.41"
    r = dockerd.pallet("info")
    assert r.returncode == 0 and "\nServer:\n Containers: " in r.stdout
    assert " Docker Root Dir: %s/data\n" % dockerd.root in r.stdout


# -- start-up cost ----------------------------------------------------------------------
_HEAVY = ("aiohttp", "grpc", "argparse", "asyncio")

_PROBE = r"""
import sys
sys.argv = ["pallet"] + sys.argv[1:]
from pallet.client.docker import main
try:
    main()
except SystemExit:
    pass
sys.stdout.flush()
print("HEAVY=" + ",".join(m for m in %r if m in sys.modules), file=sys.stderr)
""" % (_HEAVY,)


def _probe(args, env):
    r = subprocess.run([sys.executable, "-c", _PROBE, *args], capture_output=True, text=True,
                       env=env, timeout=60)
    line = [ln for ln in r.stderr.splitlines() if ln.startswith("HEAVY=")]
    assert line, r.stderr
    return line[-1][len("HEAVY="):]


def test_lazy_imports_help(tmp_path):
    env = dict(os.environ, PALLET_HOST="unix://%s/none.sock" % tmp_path)
    assert _probe(["--help"], env) == ""
    assert _probe(["ps"], env) == ""  # without a daemon


def test_lazy_imports_ps(dockerd):
    assert _probe(["ps"], dockerd.env()) == ""
    assert _probe(["images"], dockerd.env()) == ""
