"""The rest of the OCI spec: validation, user and time namespaces, hooks,
seccomp, sysctl, tmpfs options, devices, propagation."""
from __future__ import annotations

import json
import os
import signal

import pytest

from pallet.core.errors import InvalidArgument
from rt_helpers import new_id, run_container, wait_status

pytestmark = pytest.mark.root

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "specs")
needs_shared = pytest.mark.skipif(not os.path.isdir(SHARED), reason="../shared/specs is not there")
DOCKER_CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
               "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
               "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"]


# --- validation ---------------------------------------------------------------------------

@pytest.mark.parametrize("change, field", [
    # runc decodes into Go structs first (Go's words), then turns the spec into
    # its configuration and validates that (runc's words); the schema, for
    # what runc reads, comes between them
    (lambda s: s["process"].update(args="sh"), "json: cannot unmarshal string into Go struct "
                                               "field Process.process.args of type []string"),
    (lambda s: s["linux"]["namespaces"].append({"type": "bogus"}),
     'namespace {"bogus" ""} does not exist'),
    (lambda s: s["process"]["user"].update(uid=-1), "json: cannot unmarshal number -1 into Go "
                                                    "struct field User.process.user.uid of type "
                                                    "uint32"),
    (lambda s: s.pop("ociVersion"), "ociVersion: is required"),
    (lambda s: s["linux"].update(sysctl={"net.ipv4.ip_forward": "1"}) or
     s["linux"]["namespaces"].remove({"type": "network"}),
     'sysctl "net.ipv4.ip_forward" not allowed in host network namespace'),
    (lambda s: s["linux"]["namespaces"].append({"type": "pid"}),
     'malformed spec file: duplicated ns {"pid" ""}'),
    (lambda s: s["linux"].update(seccomp={"defaultAction": "SCMP_ACT_NOPE"}),
     "string SCMP_ACT_NOPE is not a valid action for seccomp"),
])
def test_invalid_bundles_name_the_field(runtime, bundle, state_root, change, field):
    bundle.spec["process"]["args"] = ["true"]
    change(bundle.spec)
    bundle.write()
    schema = field == "ociVersion: is required"  # the one only the schema catches
    with pytest.raises(InvalidArgument, match=("invalid configuration .*config.json: " if schema
                                               else "^") + _re(field)):
        runtime.create(new_id(), bundle.path)
    assert runtime.list() == []   # nothing was created


def _re(text):
    import re
    return re.escape(text)


@needs_shared
def test_schema_examples_of_the_spec():
    import glob

    from pallet.plugins.runtime_ns.validate import SchemaError, validate_config
    base = os.path.join(SHARED, "oci-runtime-spec", "test", "config")
    for path in glob.glob(os.path.join(base, "good", "*.json")):
        with open(path) as f:
            validate_config(json.load(f))
    bad = 0
    for path in glob.glob(os.path.join(base, "bad", "*.json")):
        try:
            with open(path) as f:
                doc = json.load(f)
        except ValueError:
            continue
        with pytest.raises(SchemaError):
            validate_config(doc)
        bad += 1
    assert bad >= 3


# --- user and time namespaces ----------------------------------------------------------------

@pytest.fixture
def open_bundle(applets):
    """A bundle under a directory every user may traverse (a user namespace's
    root is an unprivileged user on the host: pytest's 0700 tmp is closed to it)."""
    import shutil
    import tempfile

    from rt_helpers import Bundle
    top = tempfile.mkdtemp(prefix="pl-uns-")
    os.chmod(top, 0o755)
    os.mkdir(os.path.join(top, "b"))
    yield Bundle(os.path.join(top, "b"), applets)
    shutil.rmtree(top, ignore_errors=True)


def test_user_namespace_with_mappings(runtime, open_bundle, output):
    bundle = open_bundle
    bundle.spec["linux"]["namespaces"].append({"type": "user"})
    bundle.spec["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 200000, "size": 65536}]
    bundle.spec["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 200000, "size": 65536}]
    bundle.spec["hostname"] = "in-userns"
    bundle.write(["sh", "-c", "id -u; cat /proc/self/uid_map; cat /proc/self/gid_map; hostname; "
                              "echo $$; touch /tmp/made-in-userns; ls /proc | grep -c -x 1"])
    cid = new_id()
    pid = runtime.create(cid, bundle.path, stdout=output.fd, stderr=output.fd)
    # the container process is reparented to us (a subreaper) by now
    with open(f"/proc/{pid}/status") as f:
        status = f.read()
    assert "\nUid:\t200000\t200000\t200000\t200000" in status
    assert os.readlink(f"/proc/{pid}/ns/user") != os.readlink("/proc/self/ns/user")
    runtime.start(cid)
    assert wait_status(pid) == 0, output.read()
    runtime.delete(cid)
    out = output.read().split("\n")
    assert out[0] == "0"
    assert out[1].split() == ["0", "200000", "65536"]
    assert out[2].split() == ["0", "200000", "65536"]
    assert out[3:5] == ["in-userns", "1"]
    assert os.stat(os.path.join(bundle.rootfs, "tmp", "made-in-userns")).st_uid == 200000


def test_time_namespace_offsets(runtime, bundle, output):
    if not os.path.exists("/proc/self/ns/time"):
        pytest.skip("no time namespaces in this kernel")
    bundle.spec["linux"]["namespaces"].append({"type": "time"})
    bundle.spec["linux"]["timeOffsets"] = {"boottime": {"secs": 86400 * 400, "nanosecs": 0}}
    bundle.write(["cat", "/proc/uptime"])
    assert run_container(runtime, bundle.path, output) == 0, output.read()
    with open("/proc/uptime") as f:
        host = float(f.read().split()[0])
    inside = float(output.read().split()[0])
    assert inside - host > 86400 * 399


# --- hooks ---------------------------------------------------------------------------------

def _hook_script(tmp_path, name, body):
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return str(path)


def test_hooks_run_in_order_with_the_state(runtime, bundle, output, tmp_path):
    log = tmp_path / "hooks.log"
    hooks = {}
    for kind in ("prestart", "createRuntime", "createContainer", "poststart", "poststop"):
        script = _hook_script(tmp_path, kind, f'read -r state; echo "{kind} $1 $state" >> {log}')
        hooks[kind] = [{"path": script, "args": [kind, "arg-" + kind]}]
    # startContainer runs inside the container, after pivot_root: a busybox shell
    hooks["startContainer"] = [{"path": "/bin/sh", "args": ["sh", "-c", "cat > /tmp/start-state"]}]
    bundle.spec["hooks"] = hooks
    bundle.write(["sh", "-c", "cat /tmp/start-state"])
    cid = new_id()
    pid = runtime.create(cid, bundle.path, stdout=output.fd, stderr=output.fd)
    runtime.start(cid)
    assert wait_status(pid) == 0
    runtime.delete(cid)
    lines = log.read_text().splitlines()
    kinds = [line.split()[0] for line in lines]
    assert kinds == ["prestart", "createRuntime", "createContainer", "poststart", "poststop"]
    states = {line.split()[0]: json.loads(line.split(" ", 2)[2]) for line in lines}
    assert all(line.split()[1] == "arg-" + line.split()[0] for line in lines)
    assert states["createRuntime"]["status"] == "creating"
    assert states["createRuntime"]["id"] == cid and states["createRuntime"]["pid"] == pid
    # runc 1.1 runs poststart at the end of create (the spec says after start)
    assert states["poststart"]["status"] == "created"
    assert states["poststop"]["status"] == "stopped"
    assert states["createRuntime"]["bundle"] == bundle.path
    assert json.loads(output.read())["id"] == cid


def test_failing_and_slow_hooks_stop_create(runtime, bundle, tmp_path):
    bundle.spec["hooks"] = {"createRuntime": [{"path": _hook_script(tmp_path, "fail", "exit 3")}]}
    bundle.write(["true"])
    with pytest.raises(Exception, match=r"error running hook #0: error running hook: exit status 3"):
        runtime.create(new_id(), bundle.path)
    bundle.spec["hooks"] = {"prestart": [{"path": _hook_script(tmp_path, "slow", "sleep 20"),
                                          "timeout": 1}]}
    bundle.write(["true"])
    with pytest.raises(Exception, match=r"error running hook #0: hook ran past specified timeout "
                                        r"of 1.0s"):
        runtime.create(new_id(), bundle.path)
    assert runtime.list() == []


# --- seccomp ---------------------------------------------------------------------------------

def _own_capabilities() -> list[str]:
    from pallet.plugins.runtime_ns.linux import CAPABILITIES, last_cap
    with open("/proc/self/status") as f:
        bnd = int(next(line for line in f if line.startswith("CapBnd:")).split()[1], 16)
    return [CAPABILITIES[n] for n in range(last_cap() + 1) if bnd >> n & 1]


def _docker_profile(caps=DOCKER_CAPS):
    from pallet.plugins.runtime_ns.seccomp import from_docker_profile
    with open(os.path.join(SHARED, "docker-default-seccomp.json")) as f:
        return from_docker_profile(json.load(f), caps)


@needs_shared
def test_docker_default_seccomp_in_a_container(runtime, bundle, output):
    # every capability we have, so that without the filter unshare and mount would work
    caps = _own_capabilities()
    bundle.spec["process"]["capabilities"] = {k: caps for k in ("bounding", "effective",
                                                                  "permitted")}
    bundle.spec["process"]["noNewPrivileges"] = False
    bundle.spec["linux"]["seccomp"] = _docker_profile()
    bundle.write(["sh", "-c", "unshare -n true; echo unshare=$?; "
                              "mount -t tmpfs none /tmp; echo mount=$?; "
                              "ls / > /dev/null; echo ls=$?; echo hi | grep -c hi; "
                              "grep Seccomp: /proc/self/status"])
    assert run_container(runtime, bundle.path, output) == 0
    out = output.read()
    assert "unshare=1" in out and "mount=1" in out and "ls=0" in out
    assert "Operation not permitted" in out
    assert "\n1\n" in out and "Seccomp:\t2" in out


def test_seccomp_applies_to_exec_too(runtime, bundle, output, tmp_path):
    bundle.spec["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}
    bundle.write(["sleep", "30"])
    cid = new_id()
    pid = runtime.create(cid, bundle.path, stdout=output.fd, stderr=output.fd)
    runtime.start(cid)
    epid = runtime.exec(cid, dict(bundle.spec["process"], args=["mkdir", "/tmp/x"]),
                        stdout=output.fd, stderr=output.fd)
    assert wait_status(epid) == 1
    assert "Permission denied" in output.read()
    runtime.kill(cid, signal.SIGKILL)
    wait_status(pid)
    runtime.delete(cid)


def _in_child(program: bytes, calls) -> dict:
    """Install ``program`` in a forked child and run raw syscalls there."""
    import ctypes

    from pallet.plugins.runtime_ns import seccomp
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            seccomp.install(program)
            out = {}
            for name, nr, args in calls:
                res = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) for a in args])
                out[name] = -ctypes.get_errno() if res == -1 else "ok"
            os.write(w, json.dumps(out).encode())
        finally:
            os._exit(0)
    os.close(w)
    data = os.read(r, 65536)
    os.close(r)
    os.waitpid(pid, 0)
    return json.loads(data)


@needs_shared
@pytest.mark.skipif(os.uname().machine != "x86_64", reason="syscall numbers of x86_64")
def test_docker_profile_blocks_keyctl_unshare_mount_directly():
    from pallet.plugins.runtime_ns.seccomp import compile_profile
    program = compile_profile(_docker_profile())
    got = _in_child(program, [("unshare", 272, (0x20000,)), ("mount", 165, (0, 0, 0, 0, 0)),
                              ("keyctl", 250, (0, 0, 0, 0, 0)), ("getppid", 110, ()),
                              ("clone3", 435, (0, 0)), ("personality_query", 135, (0xFFFFFFFF,)),
                              ("personality_set", 135, (0x1234,)), ("socket_vsock", 41, (40, 1, 0)),
                              ("uname", 63, (0,))])
    assert got["unshare"] == got["mount"] == got["keyctl"] == -1          # EPERM
    assert got["clone3"] == -38                                             # ENOSYS: glibc falls back
    assert got["getppid"] == "ok" and got["personality_query"] == "ok"
    assert got["personality_set"] == -1 and got["socket_vsock"] == -1
    assert got["uname"] == -14                                              # allowed: EFAULT


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="syscall numbers of x86_64")
def test_seccomp_argument_conditions():
    from pallet.plugins.runtime_ns.seccomp import compile_profile
    big = 0x1_0000_0005
    profile = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["getpriority"], "action": "SCMP_ACT_ERRNO", "errnoRet": 11,
         "args": [{"index": 0, "op": "SCMP_CMP_GT", "value": 1}]},
        {"names": ["setpriority"], "action": "SCMP_ACT_ERRNO", "errnoRet": 12,
         "args": [{"index": 0, "op": "SCMP_CMP_MASKED_EQ", "value": 0xF0, "valueTwo": 0x30},
                  {"index": 1, "op": "SCMP_CMP_LE", "value": big}]},
        {"names": ["getpgid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
         "args": [{"index": 0, "op": "SCMP_CMP_NE", "value": big}]},
    ]}
    program = compile_profile(profile)
    got = _in_child(program, [
        ("gp_gt", 140, (2, 0)), ("gp_le", 140, (1, 0)),
        ("sp_match", 141, (0x37, big, 0)), ("sp_mask_no", 141, (0x47, 0, 0)),
        ("sp_big", 141, (0x37, big + 1, 0)),
        ("pg_ne", 121, (5,)), ("pg_eq", 121, (big,)),
    ])
    assert got["gp_gt"] == -11 and got["gp_le"] != -11
    assert got["sp_match"] == -12 and got["sp_mask_no"] != -12 and got["sp_big"] != -12
    assert got["pg_ne"] == -13 and got["pg_eq"] != -13


def test_seccomp_errors_are_clear(runtime, bundle):
    bundle.spec["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW", "architectures":
                                       ["SCMP_ARCH_X86_64"], "syscalls": [
        {"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 7, "value": 1,
                                                                   "op": "SCMP_CMP_EQ"}]}]}
    bundle.write(["true"])
    with pytest.raises(InvalidArgument, match=r"syscall read: syscalls only have up to 6 "
                                              r"arguments \(7 given\)"):
        runtime.create(new_id(), bundle.path)


# --- sysctl, tmpfs, devices, propagation, domainname, annotations --------------------------------

def test_sysctl_domainname_tmpfs_and_devices(runtime, bundle, output, tmp_path):
    # runc 1.1 knows no domainname field (runtime-spec 1.1's): it is left
    # alone; the sysctl sets it, in the container's UTS namespace
    bundle.spec["domainname"] = "ignored.test"
    bundle.spec["linux"]["sysctl"] = {"net.ipv4.ip_unprivileged_port_start": "99",
                                      "kernel.shmmni": "1000",
                                      "kernel.domainname": "example.test"}
    bundle.spec["mounts"].append({"destination": "/scratch", "type": "tmpfs", "source": "tmpfs",
                                  "options": ["size=2m", "mode=1770", "noexec", "nosuid"]})
    bundle.spec["linux"]["devices"] = [{"path": "/dev/pallet-null", "type": "c", "major": 1,
                                        "minor": 3, "fileMode": 0o640, "uid": 1000, "gid": 2000}]
    bundle.spec["annotations"] = {"org.example.key": "value"}
    bundle.write(["sh", "-c", "cat /proc/sys/net/ipv4/ip_unprivileged_port_start "
                              "/proc/sys/kernel/shmmni /proc/sys/kernel/domainname; stat -c '%a' /scratch; "
                              "grep ' /scratch ' /proc/self/mountinfo; "
                              "stat -c '%t %T %a %u %g' /dev/pallet-null; ls -l /dev/fd /dev/stdin"])
    cid = new_id()
    pid = runtime.create(cid, bundle.path, stdout=output.fd, stderr=output.fd)
    assert runtime.state(cid)["annotations"] == {"org.example.key": "value"}
    runtime.start(cid)
    assert wait_status(pid) == 0, output.read()
    runtime.delete(cid)
    out = output.read().split("\n")
    assert out[0:3] == ["99", "1000", "example.test"]
    assert out[3] == "1770"
    assert "noexec" in out[4] and "nosuid" in out[4] and "size=2048k" in out[4]
    assert out[5] == "1 3 640 1000 2000"
    assert "/dev/fd -> /proc/self/fd" in out[6] and "/dev/stdin -> /proc/self/fd/0" in out[7]


def test_mount_propagation_shared_and_private(runtime, bundle, output, tmp_path):
    """A "rshared" bind shows a mount made later on the host; "rprivate" does not."""
    import subprocess
    shared_src = tmp_path / "shared"
    private_src = tmp_path / "private"
    for d in (shared_src, private_src):
        d.mkdir()
    # make the sources mount points of their own, shared with peers
    for d in (shared_src, private_src):
        subprocess.run(["mount", "--bind", str(d), str(d)], check=True)
        subprocess.run(["mount", "--make-shared", str(d)], check=True)
    try:
        bundle.spec["linux"]["rootfsPropagation"] = "slave"
        bundle.spec["mounts"] += [
            {"destination": "/s", "type": "bind", "source": str(shared_src),
             "options": ["rbind", "rslave"]},
            {"destination": "/p", "type": "bind", "source": str(private_src),
             "options": ["rbind", "rprivate"]}]
        bundle.write(["sh", "-c", "ls /s/sub; echo --; ls /p/sub"])
        cid = new_id()
        pid = runtime.create(cid, bundle.path, stdout=output.fd, stderr=output.fd)
        for d in (shared_src, private_src):
            (d / "sub").mkdir()
            subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(d / "sub")],
                           check=True)
            (d / "sub" / "f").write_text("x")
        runtime.start(cid)
        assert wait_status(pid) == 0
        runtime.delete(cid)
        # /s/sub/f came through the slave mount; /p/sub is the bare directory
        assert output.read().split() == ["f", "--"]
    finally:
        for d in (shared_src, private_src):
            subprocess.run(["umount", "-R", str(d)], check=False)


def test_security_settings_pallet_cannot_apply_fail_as_with_runc(runtime, bundle, output):
    """runc refuses an SELinux label without SELinux, and fails to apply an
    AppArmor profile the kernel does not know: so does the runtime."""
    bundle.spec["process"]["selinuxLabel"] = "system_u:system_r:container_t:s0"
    bundle.write(["true"])
    with pytest.raises(InvalidArgument, match="selinux label is specified in config, but "
                                              "selinux is disabled or not supported"):
        runtime.create(new_id(), bundle.path)
    del bundle.spec["process"]["selinuxLabel"]
    bundle.spec["process"]["apparmorProfile"] = "pallet-no-such-profile"
    bundle.write(["true"])
    with pytest.raises(Exception, match="unable to apply apparmor profile: apparmor failed to "
                                        "apply profile: write /proc/self/attr/"):
        runtime.create(new_id(), bundle.path)
    assert runtime.list() == []
