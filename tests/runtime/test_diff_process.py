"""The container's process under pallet-runc and runc 1.1: its terminal, its
environment, its capabilities, its hooks and seccomp filter, its file
descriptors, and the errors and exit statuses of run, create and exec."""
from __future__ import annotations

import array
import json
import os
import pty
import re
import select
import socket
import subprocess
import time

import pytest

from differential import Side, same

pytestmark = pytest.mark.root


def on_pty(rt: Side, *args, input: bytes = b"", timeout: float = 20) -> tuple[int, bytes]:
    """Run a command with a pty as its stdio (a terminal user's); (status, bytes read)."""
    master, slave = pty.openpty()
    proc = rt.popen(*args, stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    out = b""
    if input:
        time.sleep(0.3)
        os.write(master, input)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:
                break
            if not data:
                break
            out += data
        elif proc.poll() is not None:
            break
    os.close(master)
    return proc.wait(timeout=10), out


class ConsoleReceiver:
    """A --console-socket: takes the pty master and reads what it gives."""

    def __init__(self, path: str):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(1)
        self.master = -1

    def receive(self) -> None:
        self.sock.settimeout(20)
        conn, _ = self.sock.accept()
        fds = array.array("i")
        _m, anc, _f, _a = conn.recvmsg(64, socket.CMSG_SPACE(fds.itemsize))
        conn.close()
        for _level, _kind, data in anc:
            fds.frombytes(data[:fds.itemsize])
        self.master = fds[0]

    def read_all(self, timeout: float = 20) -> bytes:
        out = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.master], [], [], 0.2)
            if not ready:
                continue
            try:
                data = os.read(self.master, 65536)
            except OSError:
                break
            if not data:
                break
            out += data
        return out

    def close(self):
        self.sock.close()
        if self.master >= 0:
            os.close(self.master)


TTY_PROBE = "echo hi; stat -c '%u %g %a' $(tty); stty -a | grep -o -- '-*onlcr'"


@pytest.mark.parametrize("user", [(0, 0), (1000, 1000), (1000, 2000)])
def test_run_on_a_terminal(diff_bundle, tmp_path, user):
    """run in the foreground with process.terminal: runc's own pty handling
    clears ONLCR (output reads "hi\\n") and the pty belongs to the process's
    uid and to the tty group, gid 5."""
    diff_bundle.args("sh", "-c", TTY_PROBE, terminal=True,
                     user={"uid": user[0], "gid": user[1]})

    def scenario(rt: Side):
        return {"run": on_pty(rt, "run", rt.id), "state": rt.norm_state()}
    same(tmp_path, diff_bundle, scenario)


@pytest.mark.parametrize("user", ["", "1000", "1000:2000"])
def test_exec_on_a_terminal(diff_bundle, tmp_path, user):
    diff_bundle.args("sleep", "60")

    def scenario(rt: Side):
        seen = {"run": rt("run", "-d", rt.id).view()}
        flags = ["-u", user] if user else []
        # runc 1.1 clears ONLCR from a goroutine of its own while the exec'd
        # process already runs: output written at once may still get "\r\r\n"
        # (a race of runc's; pallet-runc clears it before the exec)
        seen["exec"] = on_pty(rt, "exec", "-t", *flags, rt.id, "sh", "-c",
                              "sleep 0.3; " + TTY_PROBE)
        seen["delete"] = rt("delete", "-f", rt.id).view()
        return seen
    same(tmp_path, diff_bundle, scenario)


def test_console_socket_keeps_onlcr(diff_bundle, tmp_path):
    """With --console-socket the pty is the caller's to set up: runc leaves
    ONLCR on (a TTY through containerd and dockerd reads "\\r\\n")."""
    diff_bundle.args("sh", "-c", TTY_PROBE, terminal=True, user={"uid": 1000, "gid": 1000})

    def scenario(rt: Side):
        receiver = ConsoleReceiver(os.path.join(rt.scratch, "console.sock"))
        try:
            proc = rt.popen("create", "--console-socket", receiver.path, rt.id,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
            receiver.receive()
            seen = {"create": proc.wait(timeout=20), "start": rt("start", rt.id).view()}
            seen["output"] = receiver.read_all()
            rt.wait_status("stopped")
            seen["delete"] = rt("delete", rt.id).view()
            return seen
        finally:
            receiver.close()
    same(tmp_path, diff_bundle, scenario)


def test_terminal_needs_a_console(diff_bundle, tmp_path):
    diff_bundle.args("true", terminal=True)

    def scenario(rt: Side):
        return {"detached": rt("run", "-d", rt.id).view(), "create": rt("create", rt.id).view(),
                "no_tty": rt("run", rt.id).view(),
                "socket_without_tty": rt("exec", "--console-socket", "/x", rt.id, "true").view(),
                "state": rt.norm_state()}
    same(tmp_path, diff_bundle, scenario)


@pytest.mark.parametrize("env, user", [
    (["PATH=/bin"], 0), (["PATH=/bin", "HOME="], 0), (["PATH=/bin"], 1000),
    (["PATH=/bin", "HOME=/x"], 1000), (["PATH=/bin"], 4242),
    (["A=1", "PATH=/bin", "B=2", "A=3", "PATH=/usr/bin:/bin"], 0),
    (["PATH=/bin", "FOO"], 0), (["PATH=/bin", "=x"], 0), (["PATH=/bin", "E="], 0),
])
def test_environment(diff_bundle, tmp_path, env, user):
    """HOME from the user's /etc/passwd entry when unset or empty ("/" without
    one), later duplicates replacing earlier ones in place, runc's errors."""
    diff_bundle.args("env", env=env, user={"uid": user, "gid": user})

    def scenario(rt: Side):
        seen = {"run": rt("run", rt.id).view()}
        rt.bundle.spec["process"]["args"] = ["sleep", "60"]
        with open(os.path.join(rt.bundle.path, "config.json"), "w") as f:
            json.dump(rt.bundle.spec, f)
        started = rt("run", "-d", rt.id)
        seen["started"] = started.view()
        if started.rc == 0:
            seen["exec_env"] = rt("exec", "-e", "X=1", "-e", "X=2", rt.id, "env").view()
            rt("delete", "-f", rt.id)
        return seen
    same(tmp_path, diff_bundle, scenario)


HOOK_ENV = "env | grep -v -e '^SHLVL=' -e '^PWD=' -e '^OLDPWD=' | sort"


def test_hooks_environment_and_order(diff_bundle, tmp_path):
    """Each kind of hook runs where runc runs it (poststart at the end of
    create), with the environment it inherits (the runtime's, or the
    container's for startContainer) when it has none of its own."""
    log = str(tmp_path / "hooks.log")

    def hook(kind, env=None):
        h = {"path": "/bin/sh", "args": ["sh", "-c", f"echo {kind} $(cat | head -c 300 | "
                                                     f"grep -o '\"status\":\"[a-z]*\"') "
                                                     f"$(pwd) >> {log}; {HOOK_ENV} >> {log}"]}
        if env is not None:
            h["env"] = env
        return [h]
    diff_bundle.spec["hooks"] = {"prestart": hook("prestart"), "createRuntime": hook("cr", []),
                                 "createContainer": hook("cc"), "poststart": hook("poststart"),
                                 "poststop": hook("poststop", ["Z=1"])}
    diff_bundle.args("true")

    def scenario(rt: Side):
        if os.path.exists(log):
            os.unlink(log)
        seen = {"create": rt("create", rt.id).view()}
        with open(log) as f:
            seen["after_create"] = f.read()
        seen["start"] = rt("start", rt.id).view()
        rt.wait_status("stopped")
        seen["delete"] = rt("delete", rt.id).view()
        with open(log) as f:
            seen["all"] = f.read()
        return seen
    same(tmp_path, diff_bundle, scenario)


def test_start_container_hook_inherits_the_environment(diff_bundle, tmp_path):
    diff_bundle.spec["hooks"] = {"startContainer": [
        {"path": "/bin/sh", "args": ["sh", "-c", f"{HOOK_ENV} > /tmp/hook.env; pwd >> /tmp/hook.env"]}]}
    diff_bundle.args("cat", "/tmp/hook.env", env=["PATH=/bin", "A=1"], cwd="/tmp",
                     user={"uid": 1000, "gid": 1000})
    same(tmp_path, diff_bundle, lambda rt: rt("run", rt.id).view())


@pytest.mark.parametrize("kind", ["prestart", "createRuntime", "createContainer", "poststart",
                                  "startContainer", "poststop"])
def test_failing_hooks(diff_bundle, tmp_path, kind):
    diff_bundle.spec["hooks"] = {kind: [
        {"path": "/bin/sh", "args": ["sh", "-c", "echo out; echo err >&2; exit 3"]}]}
    diff_bundle.args("true")

    def scenario(rt: Side):
        return {"run": rt("run", rt.id).view(), "state": rt.norm_state(),
                "missing": None}
    same(tmp_path, diff_bundle, scenario)


def test_hook_timeout_and_missing_hook(diff_bundle, tmp_path):
    diff_bundle.spec["hooks"] = {"createRuntime": [{"path": "/bin/sleep", "args": ["sleep", "5"],
                                                    "timeout": 1}]}
    diff_bundle.args("true")

    def scenario(rt: Side):
        seen = {"timeout": rt("run", rt.id).view()}
        rt.bundle.spec["hooks"] = {"prestart": [{"path": "/nonexistent/hook"}]}
        with open(os.path.join(rt.bundle.path, "config.json"), "w") as f:
            json.dump(rt.bundle.spec, f)
        seen["missing"] = rt("run", rt.id).view()
        return seen
    same(tmp_path, diff_bundle, scenario)


@pytest.mark.parametrize("nnp", [True, False])
def test_seccomp_is_in_force_for_start_container_hooks(diff_bundle, tmp_path, nnp):
    diff_bundle.spec["linux"]["seccomp"] = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                      "errnoRet": 1}]}
    diff_bundle.spec["hooks"] = {"startContainer": [{"path": "/bin/sh", "args": [
        "sh", "-c", "mkdir /tmp/by-hook 2>/dev/null && echo allowed > /tmp/hook || "
                    "echo denied > /tmp/hook"]}]}
    diff_bundle.args("sh", "-c", "cat /tmp/hook; mkdir /tmp/x || echo main-denied",
                     noNewPrivileges=nnp)
    same(tmp_path, diff_bundle, lambda rt: rt("run", rt.id).view())


SCRIPT = "#!/nonexistent/interpreter\necho never\n"


@pytest.mark.parametrize("args", [["/run.sh"], ["nope"], ["/nope"], ["/etc"], ["/etc/passwd"],
                                  ["/bin/nope/x"]])
def test_exec_failures_and_statuses(diff_bundle, tmp_path, args):
    """A program that cannot be found fails create; one whose execve fails
    (its interpreter is missing) fails at start, as runc's init reports it."""
    def setup(rootfs):
        with open(rootfs + "/run.sh", "w") as f:
            f.write(SCRIPT)
        os.chmod(rootfs + "/run.sh", 0o755)
    diff_bundle.setups.append(setup)
    diff_bundle.args(*args)

    def scenario(rt: Side):
        seen = {"run": rt("run", rt.id).view(), "left": rt.norm_state()}
        seen["create"] = rt("create", rt.id).view()
        created = rt._n
        if seen["create"][0] == 0:
            seen["start"] = rt("start", rt.id).view()
            rt.wait_status("stopped")
            with open(os.path.join(rt.scratch, f"{created}.err")) as f:
                seen["container_stderr"] = f.read()
            rt("delete", rt.id)
        rt.bundle.spec["process"]["args"] = ["sleep", "60"]
        with open(os.path.join(rt.bundle.path, "config.json"), "w") as f:
            json.dump(rt.bundle.spec, f)
        rt("run", "-d", rt.id)
        seen["exec"] = rt("exec", rt.id, *args).view()
        rt("delete", "-f", rt.id)
        return seen
    same(tmp_path, diff_bundle, scenario)


def test_exec_errors(diff_bundle, tmp_path):
    diff_bundle.args("sleep", "60")

    def scenario(rt: Side):
        seen = {"run": rt("run", "-d", rt.id).view()}
        for name, args in {
            "pid_file": ("--pid-file", "/nonexistent/dir/pid", rt.id, "true"),
            "cwd": ("--cwd", "/nope", rt.id, "pwd"), "user_gid": ("-u", "1000:", rt.id, "id"),
            "user_x": ("-u", "x", rt.id, "id"), "user_uid": ("-u", "1000", rt.id, "id"),
            "env": ("-e", "FOO", rt.id, "true"), "gids": ("-g", "-1", rt.id, "true"),
            "no_args": (rt.id,), "process": ("-p", "/nonexistent.json", rt.id),
            "status": (rt.id, "sh", "-c", "exit 7"), "signal": (rt.id, "sh", "-c", "kill -9 $$"),
            "rel_cwd": ("--cwd", "rel", rt.id, "true"),
        }.items():
            seen[name] = rt("exec", *args).view()
        bad = rt("exec", "--preserve-fds", "x", rt.id, "true")
        seen["preserve"] = (bad.rc, bad.err, bad.out.split(b"\n")[0])
        seen["delete"] = rt("delete", "-f", rt.id).view()
        return seen
    same(tmp_path, diff_bundle, scenario)


def test_exec_process_json(diff_bundle, tmp_path):
    diff_bundle.args("sleep", "60")

    def scenario(rt: Side):
        seen = {"run": rt("run", "-d", rt.id).view()}
        path = os.path.join(rt.scratch, "process.json")
        for name, doc in (("ok", {"args": ["sh", "-c", "echo $X; pwd"], "cwd": "/tmp",
                                  "env": ["X=1", "PATH=/bin"], "user": {"uid": 0, "gid": 0}}),
                          ("no_cwd", {"args": ["true"]}), ("rel_cwd", {"args": ["true"],
                                                                      "cwd": "x"}),
                          ("no_args", {"cwd": "/"}), ("bad_json", "{")):
            with open(path, "w") as f:
                f.write(doc if isinstance(doc, str) else json.dumps(doc))
            seen[name] = rt("exec", "-p", path, rt.id).view()
        seen["delete"] = rt("delete", "-f", rt.id).view()
        return seen
    same(tmp_path, diff_bundle, scenario)


def _caps() -> str:
    return "grep -E '^Cap(Inh|Prm|Eff|Bnd|Amb)' /proc/self/status"


@pytest.mark.parametrize("inheritable", [False, True])
def test_exec_cap(diff_bundle, tmp_path, inheritable):
    """exec --cap: bounding, effective and permitted; ambient only when the
    spec has an inheritable set; the inheritable set itself untouched."""
    if inheritable:
        diff_bundle.spec["process"]["capabilities"]["inheritable"] = ["CAP_KILL"]
    diff_bundle.args("sleep", "60")

    def scenario(rt: Side):
        seen = {"run": rt("run", "-d", rt.id).view()}
        seen["exec"] = rt("exec", "--cap", "CAP_SYS_ADMIN", "--cap", "CAP_NET_RAW", rt.id,
                          "sh", "-c", _caps()).view()
        seen["unknown"] = rt("exec", "--cap", "CAP_NOPE", "--cap", "cap_chown", rt.id, "sh",
                             "-c", _caps()).view()
        seen["delete"] = rt("delete", "-f", rt.id).view()
        return seen
    same(tmp_path, diff_bundle, scenario)


def test_unknown_capabilities_are_skipped_with_a_warning(diff_bundle, tmp_path):
    caps = diff_bundle.spec["process"]["capabilities"]
    caps["bounding"] += ["CAP_NOPE", "cap_chown", "CAP_CHOWN"]
    caps["effective"] += ["CAP_ALSO_NOPE", "CAP_CHOWN"]
    caps["permitted"] += ["CAP_CHOWN"]
    diff_bundle.args("sh", "-c", _caps())
    same(tmp_path, diff_bundle, lambda rt: rt("run", rt.id).view())


@pytest.mark.parametrize("preserve", [0, 2])
def test_no_descriptor_leaks_into_the_container(diff_bundle, tmp_path, preserve):
    """The container's process holds its stdio and the preserved fds, nothing
    else -- seen from inside, as a process there would look."""
    # the loop runs in the container's first process itself (its glob holds one
    # directory fd); a pipeline there would race its own pipe ends into the list
    probe = "for f in /proc/self/fd/*; do echo $f $(readlink $f | cut -d: -f1); done"
    diff_bundle.args("sh", "-c", f"{probe}; sleep 60")

    def scenario(rt: Side):
        # the fds to preserve are opened by a shell just before it becomes the runtime
        opens = " ".join(f"{3 + i}</dev/null" for i in range(preserve))
        out, err = (os.path.join(rt.scratch, name) for name in ("create.out", "create.err"))
        with open(out, "wb") as o, open(err, "wb") as e:
            created = subprocess.run(["sh", "-c", f"exec {opens} \"$@\"" if opens else
                                      'exec "$@"', "sh", rt.binary, "--root", rt.root, "create",
                                      "--preserve-fds", str(preserve), rt.id],
                                     stdin=subprocess.DEVNULL, stdout=o, stderr=e,
                                     cwd=rt.bundle.path, timeout=30)
        seen = {"create": created.returncode, "start": rt("start", rt.id).view()}
        time.sleep(0.5)
        with open(out) as f:
            seen["inside"] = f.read().replace(rt.scratch, "<scratch>")
        seen["exec"] = rt("exec", rt.id, "sh", "-c", "ls /proc/1/fd | tr '\\n' ' '; "
                                                     "ls /proc/self/fd | tr '\\n' ' '").view()
        seen["delete"] = rt("delete", "-f", rt.id).view()
        return seen
    same(tmp_path, diff_bundle, scenario)


@pytest.mark.parametrize("preserve", [0, 2])
def test_no_descriptor_leaks_into_an_exec(diff_bundle, tmp_path, preserve):
    """An exec'd process holds its stdio and the fds ``exec --preserve-fds``
    names, nothing else: none of the runtime's own, none of the caller's
    beyond them (seen from inside, through /proc/self/fd and what each is)."""
    diff_bundle.args("sleep", "60")
    probe = "for f in /proc/self/fd/*; do echo $f $(readlink $f | cut -d: -f1); done"

    def scenario(rt: Side):
        seen = {"run": rt("run", "-d", rt.id).view()}
        # the caller holds fds 3..6; only the first ``preserve`` may come in
        opens = " ".join(f"{3 + i}</dev/null" for i in range(4))
        r = subprocess.run(["sh", "-c", f'exec {opens} "$@"', "sh", rt.binary, "--root", rt.root,
                            "exec", "--preserve-fds", str(preserve), rt.id, "sh", "-c", probe],
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
        seen["exec"] = (r.returncode, r.stdout, r.stderr)
        seen["delete"] = rt("delete", "-f", rt.id).view()
        return seen
    same(tmp_path, diff_bundle, scenario)


def test_foreground_stdio_are_pipes(diff_bundle, tmp_path):
    """run and exec in the foreground give the process pipes of their own
    (owned by the process's user), never the caller's files."""
    probe = ("for f in 0 1 2; do echo $f $(readlink /proc/self/fd/$f | cut -d: -f1) "
             "$(stat -L -c %u /proc/self/fd/$f); done")
    diff_bundle.args("sh", "-c", probe, user={"uid": 1000, "gid": 1000})

    def scenario(rt: Side):
        seen = {"run": rt("run", rt.id).view()}
        seen["detached"] = rt("run", "-d", rt.id).rc
        detached = os.path.join(rt.scratch, f"{rt._n}.out")
        rt.wait_status("stopped")
        with open(detached) as f:
            seen["detached_out"] = f.read().replace(rt.scratch, "<scratch>")
        seen["file_owner"] = os.stat(detached).st_uid
        rt("delete", rt.id)
        return seen
    same(tmp_path, diff_bundle, scenario)


def test_debug_lines(diff_bundle, tmp_path):
    """--debug: runc's debug lines, in text or JSON, to --log or stderr."""
    diff_bundle.args("true")
    wanted = ("nsexec[N]: => nsexec container setup", "nsexec-N[N]: <= nsexec container setup",
              "child process in init()", "init: closing the pipe to signal completion",
              "process exited")

    def lines(text: str, fmt: str):
        out = set()
        for line in text.splitlines():
            if fmt == "json":
                doc = json.loads(line)
                level, msg = doc["level"], doc["msg"]
            else:
                m = re.match(r'time="T" level=(\w+) msg=(".*?(?<!\\)"|\S+)', line)
                assert m, line
                level, msg = m.group(1), m.group(2).strip('"')
            msg = re.sub(r"\d+", "N", msg)
            if msg in wanted:
                out.add((level, msg))
        return sorted(out)

    def scenario(rt: Side):
        text = rt("--debug", "run", rt.id)
        as_json = rt("--debug", "--log-format", "json", "run", rt.id)
        log = os.path.join(rt.scratch, "debug.log")
        to_file = rt("--debug", "--log", log, "run", rt.id)
        from differential import normalize_err
        with open(log) as f:
            logged = normalize_err(f.read())
        return {"rc": [text.rc, as_json.rc, to_file.rc], "text": lines(text.err, "text"),
                "json": lines(as_json.err, "json"), "file": lines(logged, "text"),
                "file_stderr": to_file.err}
    same(tmp_path, diff_bundle, scenario)


@pytest.mark.parametrize("case", ["bad_id", "exists", "no_rootfs", "rootfs_link", "rel_cwd",
                                  "no_args", "missing_cwd", "no_config", "bad_json", "selinux",
                                  "rlimit"])
def test_create_errors(diff_bundle, tmp_path, case):
    spec = diff_bundle.spec
    cid_suffix = ""
    if case == "no_rootfs":
        spec["root"]["path"] = "nope"
    if case == "rootfs_link":
        spec["root"]["path"] = "link"
        diff_bundle.setups.append(lambda rootfs: os.symlink("rootfs", rootfs + "/../link"))
    if case == "rel_cwd":
        spec["process"]["cwd"] = "rel"
    if case == "no_args":
        spec["process"]["args"] = []
    if case == "missing_cwd":
        spec["process"]["cwd"] = "/not/there/yet"
        spec["process"]["args"] = ["pwd"]
    if case == "selinux":
        spec["process"]["selinuxLabel"] = "system_u:system_r:container_t:s0"
    if case == "rlimit":
        spec["process"]["rlimits"].append({"type": "RLIMIT_NOPE", "soft": 1, "hard": 1})
    if case == "bad_id":
        cid_suffix = "/x"
    if case not in ("missing_cwd",):
        spec["process"]["args"] = spec["process"]["args"] or []
    if case == "no_args":
        spec["process"]["args"] = []
    elif case != "missing_cwd":
        spec["process"]["args"] = ["true"]

    def scenario(rt: Side):
        if case == "no_config":
            os.unlink(os.path.join(rt.bundle.path, "config.json"))
        if case == "bad_json":
            with open(os.path.join(rt.bundle.path, "config.json"), "w") as f:
                f.write("{nope")
        if case == "exists":
            rt("run", "-d", rt.id)
        seen = {"run": rt("run", rt.id + cid_suffix).view(), "state": rt.norm_state()}
        rt("delete", "-f", rt.id)
        return seen
    same(tmp_path, diff_bundle, scenario)
