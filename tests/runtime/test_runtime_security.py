"""The container is hostile: each test here tries an attack and checks it fails.

* the runtime, while it sits in the container's namespaces (PID 1 waiting
  for start), is not dumpable: its /proc/PID/exe, environ, mem and fds
  cannot be opened from inside;
* no file descriptor of the runtime reaches the container beyond stdio and
  --preserve-fds, and its cwd is not a host directory (CVE-2024-21626);
* ``exec`` into a container whose /proc is a fake one keeps the bounding
  set the process asked for (the runtime never trusts the container's /proc);
* a mount destination swapped for a symlink out of the rootfs while the
  runtime mounts never lands outside it (CVE-2021-30465).
"""
from __future__ import annotations

import os
import signal
import threading

import pytest

from rt_helpers import new_id, run_container, wait_status

pytestmark = pytest.mark.root


def _spec_caps(bundle, caps):
    bundle.spec["process"]["capabilities"] = {k: list(caps) for k in
                                              ("bounding", "effective", "permitted")}


def test_runtime_in_the_container_is_not_dumpable(runtime, bundle, output, tmp_path):
    # the container's root, with the same uid and capabilities as PID 1 (no
    # CAP_SYS_PTRACE, as in docker's default set): only non-dumpability keeps
    # it out, as the control on a dumpable sibling shows
    _spec_caps(bundle, ["CAP_KILL", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_SETUID"])
    bundle.write(["true"])
    cid = new_id()
    pid = runtime.create(cid, bundle.path, stdout=output.fd, stderr=output.fd)
    # PID 1 is the runtime itself, waiting on exec.fifo inside the container
    out = tmp_path / "probe"
    fd = os.open(out, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        # the container's mount namespace is where PID 1 sits: probe from an
        # exec'd process inside (joins at once, no exec.fifo)
        probe = dict(bundle.spec["process"], args=[
            "sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '; echo; "
                        "readlink /proc/1/exe && echo exe-open; "
                        "head -c 1 /proc/1/environ >/dev/null 2>&1 && echo environ-open; "
                        "head -c 1 /proc/1/mem >/dev/null 2>&1 && echo mem-open; "
                        "for f in /proc/1/fd/*; do readlink $f >/dev/null 2>&1 && echo fd-open; done; "
                        "readlink /proc/1/cwd >/dev/null 2>&1 && echo cwd-open; "
                        "ls /proc/1/root/ >/dev/null 2>&1 && echo root-open; "
                        "grep -q . /proc/1/maps 2>/dev/null && echo maps-open; "
                        "sleep 5 & readlink /proc/$!/exe >/dev/null && readlink /proc/$!/cwd >/dev/null "
                        "&& echo control-open; "
                        "kill $!; echo done"])
        epid = runtime.exec(cid, probe, stdout=fd, stderr=fd)
        assert wait_status(epid) == 0
    finally:
        os.close(fd)
    text = out.read_text()
    assert "python" in text.split("\n")[0]          # it is the runtime we probed
    for leak in ("exe-open", "environ-open", "mem-open", "fd-open", "cwd-open", "root-open",
                 "maps-open"):
        assert leak not in text, text
    assert "control-open" in text and text.strip().endswith("done")
    runtime.delete(cid, force=True)
    wait_status(pid)


def test_no_descriptor_or_host_cwd_leaks_in(runtime, bundle, output, tmp_path):
    # descriptors the caller holds without O_CLOEXEC, and a cwd outside the rootfs
    leaked = [os.open("/etc/hostname", os.O_RDONLY), os.open(str(tmp_path), os.O_RDONLY)]
    for fd in leaked:
        os.set_inheritable(fd, True)
    old_cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        bundle.write(["sh", "-c", "ls /proc/self/fd; echo --; readlink /proc/self/cwd; "
                                  "readlink /proc/1/cwd; ls -la /proc/self/fd 2>/dev/null | grep -c ' -> /etc'; "
                                  "true"])
        assert run_container(runtime, bundle.path, output) == 0
        text = output.read().split("--\n")
        # 0 1 2 and the fd ls itself opens
        assert sorted(text[0].split()) == ["0", "1", "2", "3"]
        lines = text[1].split()
        assert lines[0] == "/" and lines[1] == "/"
        assert lines[2] == "0"
        # and for exec
        bundle.write(["sleep", "30"])
        cid = new_id()
        pid = runtime.create(cid, bundle.path, stdout=output.fd, stderr=output.fd)
        runtime.start(cid)
        out = tmp_path / "exec"
        fd = os.open(out, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            epid = runtime.exec(cid, dict(bundle.spec["process"], args=[
                "sh", "-c", "ls /proc/self/fd; readlink /proc/self/cwd"], cwd="/tmp"),
                stdout=fd, stderr=fd)
            assert wait_status(epid) == 0
        finally:
            os.close(fd)
        got = out.read_text().split()
        assert sorted(got[:-1]) == ["0", "1", "2", "3"] and got[-1] == "/tmp"
        runtime.delete(cid, force=True)
        wait_status(pid)
    finally:
        os.chdir(old_cwd)
        for fd in leaked:
            os.close(fd)


def test_exec_does_not_trust_a_fake_proc(runtime, bundle, output, tmp_path):
    """The container replaces /proc with a tmpfs whose sys/kernel/cap_last_cap
    says 0: a runtime reading it after joining would drop no capability from
    the bounding set but CAP_CHOWN."""
    from test_runtime_spec import _own_capabilities
    _spec_caps(bundle, _own_capabilities())
    bundle.write(["sh", "-c", "umount -l /proc && mount -t tmpfs none /proc && "
                              "mkdir -p /proc/sys/kernel /proc/self/fd && "
                              "echo 0 > /proc/sys/kernel/cap_last_cap && "
                              "echo faked > /tmp/ready; sleep 30"])
    cid = new_id()
    pid = runtime.create(cid, bundle.path, stdout=output.fd, stderr=output.fd)
    runtime.start(cid)
    ready = os.path.join(bundle.rootfs, "tmp", "ready")
    import time
    deadline = time.monotonic() + 10
    while not os.path.exists(ready) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert os.path.exists(ready), output.read()
    proc = dict(bundle.spec["process"], args=["sleep", "5"],
                capabilities={k: ["CAP_KILL"] for k in ("bounding", "effective", "permitted")})
    epid = runtime.exec(cid, proc, stdout=output.fd, stderr=output.fd)
    try:
        with open(f"/proc/{epid}/status") as f:   # the host's view of the exec'd process
            status = dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
        assert int(status["CapBnd"], 16) == 1 << 5, status["CapBnd"]
        assert int(status["CapEff"], 16) == 1 << 5
    finally:
        # the exec'd process is our child: PID 1 of the dying PID namespace
        # waits for it to be reaped (zap_pid_ns_processes) before it goes
        runtime.kill(cid, signal.SIGKILL, all=True)
        wait_status(epid)
        wait_status(pid)
        runtime.delete(cid, force=True)


def test_mount_destination_swapped_for_a_symlink(runtime, bundle, output, tmp_path):
    """A thread flips rootfs/race between a directory and a symlink to a host
    directory while containers are created with a tmpfs at /race: the tmpfs is
    either inside the rootfs or create fails; never on the host directory."""
    outside = tmp_path / "outside"
    outside.mkdir()
    race = os.path.join(bundle.rootfs, "race")
    bundle.spec["mounts"].append({"destination": "/race", "type": "tmpfs", "source": "tmpfs",
                                  "options": ["size=1m"]})
    bundle.write(["sh", "-c", "sleep 30"])
    stop = threading.Event()

    def flip():
        tmp = race + ".new"
        while not stop.is_set():
            try:
                os.symlink(str(outside), tmp)
                os.rename(tmp, race)          # a symlink out of the rootfs
            except OSError:
                pass
            try:
                os.unlink(race)
                os.mkdir(race)                # a plain directory again
            except OSError:
                pass

    worker = threading.Thread(target=flip)
    worker.start()
    outcomes = {"inside": 0, "refused": 0}
    try:
        for _ in range(25):
            cid = new_id()
            try:
                pid = runtime.create(cid, bundle.path, stdout=output.fd, stderr=output.fd)
            except Exception as e:
                assert "race" in str(e) or "symlink" in str(e) or "outside the rootfs" in str(e), e
                outcomes["refused"] += 1
                continue
            with open(f"/proc/{pid}/mountinfo") as f:
                points = [line.split()[4] for line in f]
            assert str(outside) not in points
            outcomes["inside"] += 1
            runtime.delete(cid, force=True)
            wait_status(pid)
    finally:
        stop.set()
        worker.join()
    assert outcomes["inside"] + outcomes["refused"] == 25
    assert os.listdir(outside) == []


def test_escaping_symlinks_in_destinations_stay_inside(runtime, bundle, output, tmp_path):
    host_dir = tmp_path / "host-target"
    host_dir.mkdir()
    os.symlink("../../../../../../../../" + str(host_dir).lstrip("/"),
               os.path.join(bundle.rootfs, "rel-escape"))
    os.symlink(str(host_dir), os.path.join(bundle.rootfs, "abs-escape"))
    src = tmp_path / "src"
    src.mkdir()
    (src / "payload").write_text("bound\n")
    bundle.spec["mounts"] += [
        {"destination": "/rel-escape", "type": "bind", "source": str(src), "options": ["rbind"]},
        {"destination": "/abs-escape/sub", "type": "tmpfs", "source": "tmpfs",
         "options": ["size=1m"]}]
    bundle.write(["sh", "-c", "cat /rel-escape/payload 2>/dev/null || "
                              f"cat {host_dir}/payload; grep -c tmpfs /proc/self/mountinfo"])
    assert run_container(runtime, bundle.path, output) == 0
    assert output.read().split("\n")[0] == "bound"
    assert os.listdir(host_dir) == []


def test_scratch_image_with_one_static_binary_and_the_builtin_init(runtime, tmp_path, output):
    """No Python, no shell, no init binary in the image: the builtin init comes
    from the runtime's own (already loaded) code."""
    import json
    import shutil

    from pallet.plugins.init_tini.spec import add_init
    from pallet.oci.spec import default_spec
    bundle = tmp_path / "scratch"
    rootfs = bundle / "rootfs"
    rootfs.mkdir(parents=True)
    shutil.copy("/bin/busybox", rootfs / "busybox")
    spec = default_spec()
    spec["process"].update(terminal=False, args=["/busybox", "sh", "-c",
                                                 "echo pid1=$(/busybox cat /proc/1/cmdline | "
                                                 "/busybox tr '\\0' ' '); exit 9"])
    spec["root"]["readonly"] = False
    add_init(spec, None)
    (bundle / "config.json").write_text(json.dumps(spec))
    assert sorted(os.listdir(rootfs)) == ["busybox"]
    assert run_container(runtime, str(bundle), output) == 9
    assert "python" in output.read()      # PID 1 is the runtime's init, not the program


def test_kill_signals_only_the_container(runtime, bundle, output):
    bundle.write(["sleep", "30"])
    cid = new_id()
    pid = runtime.create(cid, bundle.path, stdout=output.fd, stderr=output.fd)
    runtime.start(cid)
    runtime.kill(cid, signal.SIGKILL, all=True)
    assert wait_status(pid) == 128 + 9
    runtime.delete(cid)
