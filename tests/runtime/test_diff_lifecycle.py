"""A container's life under pallet-runc and runc 1.1: create, start, run,
exec (and its options), kill, delete, state, list and ps, in every state the
container can be in; and the process attributes runc sets up on the way: its
cwd, umask, rlimits, oom_score_adj, no_new_privs, groups, hostname and
domainname, sysctls, and the fields of newer specs runc 1.1 ignores
(ioPriority, scheduler, personality)."""
from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import time

import pytest

from differential import Side, same

pytestmark = pytest.mark.root


def rewrite(rt: Side, **process) -> None:
    """Change the side's config.json between two commands of a scenario."""
    rt.bundle.spec["process"].update(process)
    with open(os.path.join(rt.bundle.path, "config.json"), "w") as f:
        json.dump(rt.bundle.spec, f)


def read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError as e:
        return f"<{e.strerror}>"


# --- the lifecycle commands in each state ---------------------------------------------------

def test_start_twice_and_start_of_a_stopped_container(diff_bundle, tmp_path):
    """start of a running container, and of one whose process has exited."""
    diff_bundle.args("sleep", "60")

    def scenario(rt: Side):
        seen = {"create": rt("create", rt.id).view(), "created": rt.norm_state()}
        seen["start"] = rt("start", rt.id).view()
        seen["again"] = rt("start", rt.id).view()
        seen["kill"] = rt("kill", rt.id, "KILL").view()
        seen["stopped"] = rt.wait_status("stopped")
        seen["start_stopped"] = rt("start", rt.id).view()
        seen["state"] = rt.norm_state()
        seen["delete"] = rt("delete", rt.id).view()
        return seen
    same(tmp_path, diff_bundle, scenario)


def test_commands_on_a_stopped_container(diff_bundle, tmp_path):
    """exec, kill, pause, resume, ps and delete once the process has exited."""
    diff_bundle.args("true")

    def scenario(rt: Side):
        seen = {"run": rt("run", "-d", rt.id).view(), "stopped": rt.wait_status("stopped")}
        for name, args in {"exec": ("exec", rt.id, "true"), "kill": ("kill", rt.id),
                           "kill_0": ("kill", rt.id, "0"),
                           "kill_all": ("kill", "--all", rt.id, "KILL"),
                           "pause": ("pause", rt.id), "resume": ("resume", rt.id),
                           "ps": ("ps", rt.id), "ps_json": ("ps", "-f", "json", rt.id),
                           "state": ("state", rt.id)}.items():
            done = rt(*args)
            seen[name] = (done.rc, done.err) if name == "state" else done.view()
        seen["norm_state"] = rt.norm_state()
        seen["delete"] = rt("delete", rt.id).view()
        seen["gone"] = rt.norm_state()
        return seen
    same(tmp_path, diff_bundle, scenario)


def test_commands_on_a_created_container(diff_bundle, tmp_path):
    """kill 0, ps, exec, pause of a container not started yet; kill KILL
    stops it without it ever running."""
    diff_bundle.args("sh", "-c", "echo started")

    def scenario(rt: Side):
        seen = {"create": rt("create", rt.id).view()}
        created = rt._n
        seen["kill_0"] = rt("kill", rt.id, "0").view()
        ps = rt("ps", "-f", "json", rt.id)
        seen["ps"] = (ps.rc, len(ps.json()) if ps.rc == 0 else ps.out, ps.err)
        seen["exec"] = rt("exec", rt.id, "echo", "in").view()
        seen["pause"] = rt("pause", rt.id).view()
        seen["state"] = rt.norm_state()
        seen["resume"] = rt("resume", rt.id).view()
        seen["kill"] = rt("kill", rt.id, "KILL").view()
        seen["stopped"] = rt.wait_status("stopped")
        seen["start"] = rt("start", rt.id).view()
        seen["delete"] = rt("delete", rt.id).view()
        seen["output"] = read(os.path.join(rt.scratch, f"{created}.out"))
        return seen
    same(tmp_path, diff_bundle, scenario)


def test_state_after_the_process_dies_behind_runcs_back(diff_bundle, tmp_path):
    """The process killed from outside: state says stopped with pid 0, and a
    plain delete works."""
    diff_bundle.args("sleep", "60")

    def scenario(rt: Side):
        seen = {"run": rt("run", "-d", rt.id).view()}
        os.kill(rt.pid(), 9)
        seen["stopped"] = rt.wait_status("stopped")
        seen["state"] = rt.norm_state()
        seen["delete"] = rt("delete", rt.id).view()
        return seen
    same(tmp_path, diff_bundle, scenario)


def test_kill_all_reaches_every_process(diff_bundle, tmp_path):
    """kill --all signals each process of the cgroup (exec'd ones too); kill
    without --all only the first."""
    diff_bundle.args("sh", "-c", "trap 'echo main-usr1' USR1; sleep 60 & wait; wait")

    def scenario(rt: Side):
        seen = {"run": rt("run", "-d", rt.id).view()}
        seen["exec"] = rt("exec", "-d", rt.id, "sleep", "61").view()
        seen["kill"] = rt("kill", rt.id, "TERM").view()
        seen["alive"] = rt.wait_status("stopped", timeout=0.5)
        seen["kill_all"] = rt("kill", "--all", rt.id, "KILL").view()
        seen["stopped"] = rt.wait_status("stopped")
        seen["delete"] = rt("delete", rt.id).view()
        return seen
    same(tmp_path, diff_bundle, scenario)


@pytest.mark.parametrize("how", ["run", "create"])
def test_pid_file(diff_bundle, tmp_path, how):
    """--pid-file holds the pid without a newline, relative to the cwd; it
    is written for create and run -d alike."""
    diff_bundle.args("sleep", "60")

    def scenario(rt: Side):
        args = ("run", "-d") if how == "run" else ("create",)
        seen = {how: rt(*args, "--pid-file", "pid.txt", rt.id).view()}
        with open(os.path.join(rt.bundle.path, "pid.txt")) as f:
            text = f.read()
        seen["pid_file"] = (text == str(rt.pid()), re.sub(r"\d+", "N", text),
                            oct(os.stat(os.path.join(rt.bundle.path, "pid.txt")).st_mode))
        seen["delete"] = rt("delete", "-f", rt.id).view()
        return seen
    same(tmp_path, diff_bundle, scenario)


def _list_rows(done) -> tuple:
    """list's table with the pid and creation time blanked (spacing kept,
    but for the CREATED column: Go drops a timestamp's trailing zeros, so its
    width varies)."""
    text = done.out.decode()
    text = re.sub(r"\d{4}-\d\d-\d\dT\S+\s+", "T ", text)
    text = re.sub(r"CREATED\s+", "CREATED ", text)
    text = re.sub(r"(?m)^(\S+\s+)(\d+\s+)", lambda m: m.group(1) + "P" + "_" *
                  (len(m.group(2)) - 1) if m.group(2).strip() != "0" else m.group(0), text)
    return (done.rc, text, done.err)


def test_list_in_every_state(diff_bundle, tmp_path):
    """list's table, -q, and --format json, with a created, a running, a
    paused and a stopped container."""
    diff_bundle.args("sleep", "60")

    def scenario(rt: Side):
        ids = [rt.id + s for s in ("-a", "-b", "-c", "-d")]
        seen = {"create": rt("create", ids[0]).view(), "run": rt("run", "-d", ids[1]).view(),
                "run2": rt("run", "-d", ids[2]).view(), "run3": rt("run", "-d", ids[3]).view(),
                "pause": rt("pause", ids[2]).view(), "kill": rt("kill", ids[3], "KILL").view()}
        for _ in range(200):
            if b"stopped" in rt("list").out:
                break
            time.sleep(0.02)
        seen["list"] = _list_rows(rt("list"))
        seen["quiet"] = rt("list", "-q").view()
        docs = rt("list", "--format", "json")
        listed = json.loads(docs.out)
        for doc in listed:
            doc["pid"] = "PID" if doc["pid"] else 0
            doc["created"] = "T"
            doc["bundle"] = doc["bundle"] == rt.bundle.path
        seen["json"] = (docs.rc, listed, docs.err)
        for cid in ids:
            seen["delete " + cid[-2:]] = rt("delete", "-f", cid).view()
        return seen
    same(tmp_path, diff_bundle, scenario, cid="dlist")


@pytest.mark.parametrize("args", [(), ("-o", "pid,comm"), ("-e", "-f"), ("x",)])
def test_ps_arguments(diff_bundle, tmp_path, args):
    """ps runs the host's ps with the arguments given and keeps the header
    and the container's processes' lines."""
    diff_bundle.args("sleep", "60")

    def scenario(rt: Side):
        seen = {"run": rt("run", "-d", rt.id).view()}
        done = rt("ps", rt.id, *args)
        lines = done.out.decode().split("\n")
        seen["ps"] = (done.rc, len(lines), lines[0],
                      [re.sub(r"\d", "N", " ".join(line.split()[-2:])) for line in lines[1:]],
                      done.err)
        seen["delete"] = rt("delete", "-f", rt.id).view()
        return seen
    same(tmp_path, diff_bundle, scenario)


# --- exec's options ---------------------------------------------------------------------------

def test_exec_options(diff_bundle, tmp_path):
    """--env, --cwd, --user, --additional-gids, --no-new-privs, --detach and
    --pid-file of exec."""
    diff_bundle.args("sleep", "60")
    probe = ("echo $A $B; pwd; id; grep -E '^(NoNewPrivs|Groups)' /proc/self/status; "
             "cat /proc/self/oom_score_adj; umask")

    def scenario(rt: Side):
        seen = {"run": rt("run", "-d", rt.id).view()}
        seen["plain"] = rt("exec", rt.id, "sh", "-c", probe).view()
        seen["options"] = rt("exec", "--env", "A=1", "--env", "B=2", "--cwd", "/tmp",
                             "--user", "1000:1000", "-g", "2000",
                             "-g", "65534", "--no-new-privs", rt.id, "sh", "-c",
                             probe).view()
        seen["user_only"] = rt("exec", "-u", "1000", rt.id, "sh", "-c", probe).view()
        seen["named_user"] = rt("exec", "-u", "user", rt.id, "id").view()
        seen["detach"] = rt("exec", "-d", "--pid-file", "exec.pid", rt.id, "sh", "-c",
                            "echo detached").view()
        with open(os.path.join(rt.bundle.path, "exec.pid")) as f:
            seen["pid_file"] = bool(re.fullmatch(r"\d+", f.read()))
        seen["delete"] = rt("delete", "-f", rt.id).view()
        return seen
    same(tmp_path, diff_bundle, scenario)


def test_exec_process_json_overrides_and_flags(diff_bundle, tmp_path):
    """exec -p with rlimits and the command-line flags given on top of it;
    the exec'd process gets the container's oom_score_adj whatever
    process.json says."""
    diff_bundle.args("sleep", "60", oomScoreAdj=123)

    def scenario(rt: Side):
        seen = {"run": rt("run", "-d", rt.id).view()}
        path = os.path.join(rt.scratch, "p.json")
        with open(path, "w") as f:
            # (not RLIMIT_NOFILE: runc's parent sets an exec's rlimits with
            # prlimit while its Go init raises its own soft NOFILE limit to the
            # hard one -- which of the two comes last varies run to run)
            json.dump({"args": ["sh", "-c", "echo $A; ulimit -c; ulimit -Hc; id; pwd; umask; "
                                            "cat /proc/self/oom_score_adj"],
                       "cwd": "/", "env": ["A=json", "PATH=/bin"],
                       "user": {"uid": 1000, "gid": 1000, "additionalGids": [2000]},
                       "rlimits": [{"type": "RLIMIT_CORE", "soft": 64, "hard": 128}]}, f)
        seen["json"] = rt("exec", "-p", path, rt.id).view()
        seen["flags"] = rt("exec", "-p", path, "-e", "A=flag", "--cwd", "/tmp", "-u", "0",
                           rt.id).view()
        seen["args_ignored"] = rt("exec", "-p", path, rt.id, "echo", "extra").view()
        with open(path, "w") as f:
            json.dump({"args": ["cat", "/proc/self/oom_score_adj"], "cwd": "/",
                       "oomScoreAdj": 50}, f)
        seen["own_oom_score"] = rt("exec", "-p", path, rt.id).view()
        seen["delete"] = rt("delete", "-f", rt.id).view()
        return seen
    same(tmp_path, diff_bundle, scenario)


@pytest.mark.parametrize("flags", [("--env", "A=1", "-e", "B=2"), ("-e", "A=1", "--env", "B=2"),
                                   ("--additional-gids", "1", "-g", "2"),
                                   ("-u", "0", "--user", "0"), ("-p", "x", "--process", "y"),
                                   ("-d", "--detach"), ("--cap", "CAP_KILL", "-c", "CAP_KILL")])
def test_two_forms_of_the_same_flag(diff_bundle, tmp_path, flags):
    """urfave/cli refuses a flag given by both its names, naming them."""
    def scenario(rt: Side):
        done = rt("exec", *flags, "nope", "true")
        return (done.rc, done.out.split(b"\n")[0], done.err)
    same(tmp_path, diff_bundle, scenario)


def test_exec_apparmor_without_apparmor(diff_bundle, tmp_path):
    diff_bundle.args("sleep", "60")

    def scenario(rt: Side):
        seen = {"run": rt("run", "-d", rt.id).view()}
        seen["exec"] = rt("exec", "--apparmor", "unconfined", rt.id, "true").view()
        seen["delete"] = rt("delete", "-f", rt.id).view()
        return seen
    same(tmp_path, diff_bundle, scenario)


def test_exec_inherits_rlimits_and_oom_score(diff_bundle, tmp_path):
    """An exec'd process gets the container's rlimits and oom_score_adj."""
    diff_bundle.args("sleep", "60", oomScoreAdj=200,
                     rlimits=[{"type": "RLIMIT_NOFILE", "soft": 100, "hard": 200},
                              {"type": "RLIMIT_NPROC", "soft": 300, "hard": 400}])

    def scenario(rt: Side):
        seen = {"run": rt("run", "-d", rt.id).view()}
        seen["exec"] = rt("exec", rt.id, "sh", "-c", "ulimit -n; ulimit -Hn; ulimit -u; "
                                                   "cat /proc/self/oom_score_adj").view()
        seen["delete"] = rt("delete", "-f", rt.id).view()
        return seen
    same(tmp_path, diff_bundle, scenario)


# --- process attributes ---------------------------------------------------------------------

@pytest.mark.parametrize("case", ["symlink", "symlink_missing", "dotdot", "file", "private",
                                  "private_exec_only", "trailing_slash"])
def test_cwd(diff_bundle, tmp_path, case):
    """process.cwd through symlinks (resolved inside the rootfs), missing
    parts made, a file, and a directory the user cannot enter."""
    def setup(rootfs):
        os.symlink("/tmp", rootfs + "/lnk")
        os.symlink("/nowhere/deep", rootfs + "/dangling")
        os.makedirs(rootfs + "/priv", mode=0o700)
        os.makedirs(rootfs + "/xonly", mode=0o711)
    diff_bundle.setups.append(setup)
    cwd, user = {"symlink": ("/lnk", 0), "symlink_missing": ("/dangling", 0),
                 "dotdot": ("/../../tmp/x", 0), "file": ("/etc/passwd", 0),
                 "private": ("/priv", 1000), "private_exec_only": ("/xonly", 1000),
                 "trailing_slash": ("/lnk/new/", 1000)}[case]
    diff_bundle.args("sh", "-c", "pwd; ls -ld . | cut -c1-10", cwd=cwd,
                     user={"uid": user, "gid": user})

    def scenario(rt: Side):
        seen = {"run": rt("run", rt.id).view(), "state": rt.norm_state()}
        seen["made"] = sorted(os.listdir(rt.bundle.rootfs + "/tmp")) \
            if os.path.isdir(rt.bundle.rootfs + "/tmp") else None
        seen["nowhere"] = os.path.isdir(rt.bundle.rootfs + "/nowhere/deep")
        rt("delete", "-f", rt.id)
        return seen
    same(tmp_path, diff_bundle, scenario)


def wait_lines(path: str, count: int, timeout: float = 5) -> str | None:
    """A detached container's output file once it has ``count`` lines."""
    deadline = time.monotonic() + timeout
    while True:
        text = read(path)
        if text.count("\n") >= count or time.monotonic() > deadline:
            return text
        time.sleep(0.02)


@pytest.mark.parametrize("umask", [None, 0o077, 0, 0o777])
def test_umask(diff_bundle, tmp_path, umask):
    """process.user.umask (0022 without one), for the process and the files
    it makes."""
    user = {"uid": 0, "gid": 0}
    if umask is not None:
        user["umask"] = umask
    diff_bundle.args("sh", "-c", "umask; touch /tmp/f; mkdir /tmp/d; stat -c '%a' /tmp/f /tmp/d",
                     user=user)
    same(tmp_path, diff_bundle, lambda rt: rt("run", rt.id).view())


@pytest.mark.parametrize("umask", [None, 0o077])
def test_exec_umask_is_the_callers(diff_bundle, tmp_path, umask):
    """runc's exec sets no umask: the exec'd process has the umask of the
    runc exec command, not the container's process.user.umask, nor 0022."""
    user = {"uid": 0, "gid": 0}
    if umask is not None:
        user["umask"] = umask
    diff_bundle.args("sleep", "60", user=user)

    def scenario(rt: Side):
        seen = {"run": rt("run", "-d", rt.id).view()}
        old = os.umask(0o027)
        try:
            seen["exec"] = rt("exec", rt.id, "sh", "-c", "umask").view()
        finally:
            os.umask(old)
        seen["exec_022"] = rt("exec", rt.id, "sh", "-c", "umask").view()
        seen["delete"] = rt("delete", "-f", rt.id).view()
        return seen
    same(tmp_path, diff_bundle, scenario)


@pytest.mark.parametrize("rlimits", [
    [{"type": "RLIMIT_NOFILE", "soft": 2048, "hard": 4096}],
    [{"type": "RLIMIT_NOFILE", "soft": 4096, "hard": 2048}],
    [{"type": "RLIMIT_NOFILE", "soft": 1 << 30, "hard": 1 << 30}],
    [{"type": "RLIMIT_CORE", "soft": 18446744073709551615, "hard": 18446744073709551615},
     {"type": "RLIMIT_STACK", "soft": 1 << 20, "hard": 1 << 22}],
    [{"type": "RLIMIT_NOFILE", "soft": 100, "hard": 100},
     {"type": "RLIMIT_NOFILE", "soft": 200, "hard": 300}],
    [{"type": "rlimit_nofile", "soft": 100, "hard": 100}],
    [],
], ids=["nofile", "soft_above_hard", "above_nr_open", "unlimited", "duplicate", "lowercase",
        "none"])
def test_rlimits(diff_bundle, tmp_path, rlimits):
    """process.rlimits set before the process runs; runc's errors for the
    ones the kernel refuses."""
    diff_bundle.args("sh", "-c", "ulimit -n; ulimit -Hn; ulimit -c; ulimit -s; ulimit -Hs",
                     rlimits=rlimits)
    same(tmp_path, diff_bundle, lambda rt: {"run": rt("run", rt.id).view(),
                                            "state": rt.norm_state()})


def test_nofile_without_an_rlimit_comes_from_the_caller(diff_bundle, tmp_path):
    """Without an RLIMIT_NOFILE in the spec the process has the caller's
    limits -- as runc 1.1.5 has them: a Go 1.19 program, it raised its own
    soft limit to the hard one at start, and passes that on (to exec'd
    processes too)."""
    diff_bundle.args("sh", "-c", "ulimit -n; ulimit -Hn; exec sleep 60", rlimits=[])
    old = resource.getrlimit(resource.RLIMIT_NOFILE)

    def scenario(rt: Side):
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(512, old[1]), old[1]))
        try:
            seen = {"run": rt("run", "-d", rt.id).view()}
            created = rt._n
            seen["exec"] = rt("exec", rt.id, "sh", "-c", "ulimit -n; ulimit -Hn").view()
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, old)
        seen["init"] = wait_lines(os.path.join(rt.scratch, f"{created}.out"), 2)
        seen["delete"] = rt("delete", "-f", rt.id).view()
        return seen
    same(tmp_path, diff_bundle, scenario)


@pytest.mark.parametrize("score", [None, -1000, 500, 1000, 1001, -1001])
def test_oom_score_adj(diff_bundle, tmp_path, score):
    """process.oomScoreAdj, and the errors of values the kernel refuses
    (lowering it needs CAP_SYS_RESOURCE, which this machine may lack)."""
    process = {} if score is None else {"oomScoreAdj": score}
    diff_bundle.args("cat", "/proc/self/oom_score_adj", **process)

    def scenario(rt: Side):
        rc, out, err = rt("run", rt.id).view()
        return {"run": (rc, out, re.sub(r"nsexec\[\d+\]", "nsexec[N]", err)),
                "state": rt.norm_state()}
    same(tmp_path, diff_bundle, scenario)


@pytest.mark.parametrize("nnp", [True, False])
def test_no_new_privileges(diff_bundle, tmp_path, nnp):
    diff_bundle.args("sleep", "60", noNewPrivileges=nnp)

    def scenario(rt: Side):
        seen = {"run": rt("run", "-d", rt.id).view()}
        probe = ("grep NoNewPrivs /proc/self/status",)
        seen["exec"] = rt("exec", rt.id, *probe).view()
        seen["exec_nnp"] = rt("exec", "--no-new-privs", rt.id, *probe).view()
        seen["delete"] = rt("delete", "-f", rt.id).view()
        return seen
    same(tmp_path, diff_bundle, scenario)


@pytest.mark.parametrize("gids", [[2000], [2000, 2000, 65534], [0], [4242], []])
def test_additional_gids(diff_bundle, tmp_path, gids):
    """user.additionalGids are the groups (the primary gid is not added)."""
    diff_bundle.args("sh", "-c", "id; grep Groups /proc/self/status",
                     user={"uid": 1000, "gid": 1000, "additionalGids": gids})
    same(tmp_path, diff_bundle, lambda rt: rt("run", rt.id).view())


def host_value(key: str) -> str:
    """A sysctl's value on the host: what a test sets where a runtime might
    (wrongly) reach the host's namespace, so that nothing changes there."""
    with open("/proc/sys/" + key.replace(".", "/")) as f:
        return f.read().strip()


@pytest.mark.parametrize("case", ["both", "no_uts", "domain_no_uts", "long", "empty"])
def test_hostname_and_domainname(diff_bundle, tmp_path, case):
    """hostname and domainname in the container's UTS namespace; without one
    runc refuses a hostname (the values are then the host's own, so that a
    runtime setting them there would change nothing)."""
    spec = diff_bundle.spec
    spec["hostname"], spec["domainname"] = "box", "example.org"
    if case in ("no_uts", "domain_no_uts"):
        spec["linux"]["namespaces"] = [n for n in spec["linux"]["namespaces"]
                                       if n["type"] != "uts"]
        spec["hostname"] = host_value("kernel.hostname")
        spec["domainname"] = host_value("kernel.domainname")
        if case == "domain_no_uts":
            del spec["hostname"]
    if case == "long":
        spec["hostname"] = "h" * 65
    if case == "empty":
        spec["hostname"], spec["domainname"] = "", ""
    diff_bundle.args("sh", "-c", "hostname; cat /proc/sys/kernel/domainname")
    before = (host_value("kernel.hostname"), host_value("kernel.domainname"))

    def scenario(rt: Side):
        return {"run": rt("run", rt.id).view(), "state": rt.norm_state(),
                "host_unchanged": (host_value("kernel.hostname"),
                                   host_value("kernel.domainname")) == before}
    same(tmp_path, diff_bundle, scenario)


@pytest.mark.parametrize("sysctl", [
    {"net.ipv4.ip_forward": "1"}, {"kernel.shmmax": "123456"}, {"kernel.msgmax": "4096"},
    {"fs.mqueue.msg_max": "20"}, {"net.ipv4.nope": "1"}, {"fs.file-max": None},
    {"kernel.domainname": "d.example"}, {"kernel.hostname": "hn"}, {"vm.swappiness": None},
    {"net/ipv4/ip_forward": "1"}, {"kernel.shmmax": "nope"},
], ids=lambda s: next(iter(s)) + "=" + str(next(iter(s.values()))))
def test_sysctl(diff_bundle, tmp_path, sysctl):
    """linux.sysctl: namespaced ones set, the others refused (those with the
    host's own value, in case a runtime wrote them)."""
    sysctl = {k: v if v is not None else host_value(k) for k, v in sysctl.items()}
    diff_bundle.spec["linux"]["sysctl"] = sysctl
    name = next(iter(sysctl)).replace(".", "/")
    diff_bundle.args("cat", "/proc/sys/" + name)
    same(tmp_path, diff_bundle, lambda rt: {"run": rt("run", rt.id).view(),
                                            "state": rt.norm_state()})


@pytest.mark.parametrize("key", ["net.ipv4.ip_forward", "kernel.shmmax", "kernel.hostname",
                                 "kernel.domainname", "fs.mqueue.msg_max"])
def test_sysctl_without_its_namespace(diff_bundle, tmp_path, key):
    """A sysctl of a namespace the container shares with the host is refused
    (set to the host's value, in case a runtime let it through)."""
    del diff_bundle.spec["hostname"]
    diff_bundle.spec["linux"]["namespaces"] = [
        n for n in diff_bundle.spec["linux"]["namespaces"]
        if n["type"] not in ("network", "ipc", "uts")]
    diff_bundle.spec["linux"]["sysctl"] = {key: host_value(key)}
    diff_bundle.args("true")
    same(tmp_path, diff_bundle, lambda rt: {"run": rt("run", rt.id).view(),
                                            "state": rt.norm_state()})


# --- fields runc 1.1 does not know ----------------------------------------------------------

def test_newer_process_fields_are_ignored(diff_bundle, tmp_path):
    """ioPriority, scheduler (runtime-spec 1.1) and linux.personality (runc
    1.2) are left alone by runc 1.1: the process keeps the defaults."""
    diff_bundle.spec["process"]["ioPriority"] = {"class": "IOPRIO_CLASS_IDLE", "priority": 0}
    diff_bundle.spec["process"]["scheduler"] = {"policy": "SCHED_IDLE", "nice": 5}
    diff_bundle.spec["linux"]["personality"] = {"domain": "LINUX32"}
    diff_bundle.args("sh", "-c", "ionice; grep -E '^policy' /proc/self/sched; uname -m; "
                                 "cat /proc/self/personality; cat /proc/self/stat | "
                                 "cut -d' ' -f19")
    same(tmp_path, diff_bundle, lambda rt: rt("run", rt.id).view())


@pytest.mark.parametrize("field, value", [
    ("ioPriority", {"class": "IOPRIO_CLASS_NOPE"}), ("scheduler", {"policy": "SCHED_NOPE"}),
    ("personality", {"domain": "NOPE"}),
])
def test_invalid_newer_fields(diff_bundle, tmp_path, field, value):
    if field == "personality":
        diff_bundle.spec["linux"][field] = value
    else:
        diff_bundle.spec["process"][field] = value
    diff_bundle.args("true")
    same(tmp_path, diff_bundle, lambda rt: rt("run", rt.id).view())


@pytest.mark.parametrize("where, value", [
    ("process.oomScoreAdj", "x"), ("process.user.uid", -1), ("process.user.umask", "0022"),
    ("process.rlimits", [{"type": "RLIMIT_NOFILE", "soft": "1", "hard": 1}]),
    ("hostname", 5), ("process.noNewPrivileges", "yes"), ("extra", {"a": 1}),
    ("process.extra", 1), ("linux.sysctl", {"kernel.shmmax": 5}),
])
def test_config_values_of_the_wrong_type(diff_bundle, tmp_path, where, value):
    """runc 1.1 decodes config.json into Go structs: a value of the wrong type
    is Go's unmarshal error, an unknown field is ignored."""
    node = diff_bundle.spec
    *parents, last = where.split(".")
    for key in parents:
        node = node[key]
    node[last] = value
    diff_bundle.args("true")
    same(tmp_path, diff_bundle, lambda rt: {"run": rt("run", rt.id).view(),
                                            "state": rt.norm_state()})


# --- more of the life of a container --------------------------------------------------------

def test_host_pid_namespace_with_its_init_gone(diff_bundle, tmp_path):
    """Without a PID namespace the container outlives its first process:
    state says stopped, and delete kills what is left of it."""
    diff_bundle.spec["linux"]["namespaces"] = [
        n for n in diff_bundle.spec["linux"]["namespaces"] if n["type"] != "pid"]
    diff_bundle.args("sleep", "60")

    def scenario(rt: Side):
        seen = {"run": rt("run", "-d", rt.id).view()}
        seen["exec"] = [rt("exec", "-d", rt.id, "sleep", "61").view() for _ in range(2)]
        ps = rt("ps", "-f", "json", rt.id)
        pids = ps.json()
        seen["ps"] = (ps.rc, len(pids), ps.err)
        init = rt.pid()
        os.kill(init, 9)
        seen["stopped"] = rt.wait_status("stopped")
        seen["state"] = rt.norm_state()
        after = rt("ps", "-f", "json", rt.id)
        seen["ps_after"] = after.view() if after.rc else (after.rc, len(after.json()), after.err)
        seen["exec_after"] = rt("exec", rt.id, "true").view()
        deleted = rt("delete", rt.id)
        # runc removes the cgroups while the processes it killed still exit:
        # its warnings of that race come and go
        seen["delete"] = (deleted.rc, deleted.out, "".join(
            line for line in deleted.err.splitlines(True)
            if "Failed to remove cgroup (will retry)" not in line))
        deadline = time.monotonic() + 5
        alive = [p for p in pids if p != init]
        while alive and time.monotonic() < deadline:
            alive = [p for p in alive if os.path.exists(f"/proc/{p}")
                     and read(f"/proc/{p}/stat").split()[2] != "Z"]
            time.sleep(0.02)
        seen["alive"] = len(alive)
        return seen
    same(tmp_path, diff_bundle, scenario)


def test_exec_as_root_into_a_cwd_only_the_user_enters(diff_bundle, tmp_path):
    """The container's user owns its cwd (0700); exec as another user still
    starts (runc chdirs before and after switching user) -- or says why."""
    def setup(rootfs):
        os.makedirs(rootfs + "/own", mode=0o700)
        os.chown(rootfs + "/own", 42, 42)
    diff_bundle.setups.append(setup)
    diff_bundle.args("sleep", "60", cwd="/own", user={"uid": 42, "gid": 42})

    def scenario(rt: Side):
        seen = {"run": rt("run", "-d", rt.id).view()}
        seen["as_root"] = rt("exec", "--user", "0", rt.id, "pwd").view()
        seen["as_owner"] = rt("exec", rt.id, "pwd").view()
        seen["as_other"] = rt("exec", "--user", "1000", rt.id, "pwd").view()
        seen["delete"] = rt("delete", "-f", rt.id).view()
        return seen
    same(tmp_path, diff_bundle, scenario)


@pytest.mark.parametrize("command", ["run", "exec"])
def test_socket_activation_fds(diff_bundle, tmp_path, command):
    """LISTEN_FDS and LISTEN_PID meant for runc: the fds are passed on from
    3 and the process is told LISTEN_FDS=n, LISTEN_PID=1."""
    probe = "echo $LISTEN_FDS $LISTEN_PID; cat <&3; cat <&4; ls /proc/self/fd | wc -l"
    diff_bundle.args(*(("sh", "-c", probe) if command == "run" else ("sleep", "60")))

    def scenario(rt: Side):
        seen = {}
        if command == "exec":
            seen["run"] = rt("run", "-d", rt.id).view()
        files = []
        for i in (3, 4):
            path = os.path.join(rt.scratch, f"fd{i}")
            with open(path, "w") as f:
                f.write(f"content {i}\n")
            files.append(path)
        args = [rt.binary, "--root", rt.root, command, rt.id]
        if command == "exec":
            args += ["sh", "-c", probe]
        done = subprocess.run(["sh", "-c", 'LISTEN_PID=$$ LISTEN_FDS=2 exec "$@" 3<"$F3" 4<"$F4"',
                               "sh", *args], capture_output=True, cwd=rt.bundle.path,
                              env={"PATH": os.environ["PATH"], "F3": files[0], "F4": files[1]},
                              timeout=30)
        seen[command + "_fds"] = (done.returncode, done.stdout,
                                  re.sub(r'time="[^"]*"', 'time="T"', done.stderr.decode()))
        rt("delete", "-f", rt.id)
        return seen
    same(tmp_path, diff_bundle, scenario)


@pytest.mark.parametrize("script", ["exit 3", "kill -TERM $$", "kill -KILL $$",
                                    "kill -SEGV $$", "trap '' TERM; kill -TERM $$; exit 4"])
def test_exit_statuses_of_run(diff_bundle, tmp_path, script):
    """run's status is the process's, 128+n for a signal; state after run -d."""
    diff_bundle.args("sh", "-c", script)

    def scenario(rt: Side):
        seen = {"run": rt("run", rt.id).view(), "gone": rt.norm_state()}
        seen["detached"] = rt("run", "-d", rt.id).view()
        seen["stopped"] = rt.wait_status("stopped")
        seen["state"] = rt.norm_state()
        seen["delete"] = rt("delete", rt.id).view()
        return seen
    same(tmp_path, diff_bundle, scenario)


@pytest.mark.parametrize("sig", ["TERM", "HUP", "INT", "USR1", "CONT"])
def test_signals_to_a_created_container(diff_bundle, tmp_path, sig):
    """A signal to a created container goes to runc's init, which waits on the
    exec fifo: HUP, INT and TERM end it, as any Go program (it is then
    stopped, never started); others it takes and ignores."""
    diff_bundle.args("echo", "started")

    def scenario(rt: Side):
        seen = {"create": rt("create", rt.id).view()}
        created = rt._n
        seen["kill"] = rt("kill", rt.id, sig).view()
        seen["status"] = rt.wait_status("stopped", timeout=1)
        seen["start"] = rt("start", rt.id).view()
        seen["after_start"] = rt.wait_status("stopped", timeout=1)
        seen["delete"] = rt("delete", "-f", rt.id).view()
        seen["output"] = read(os.path.join(rt.scratch, f"{created}.out"))
        return seen
    same(tmp_path, diff_bundle, scenario)
