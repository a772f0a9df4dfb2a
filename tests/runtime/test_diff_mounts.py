"""The container's mounts under pallet-runc and runc 1.1: what /proc/self/mountinfo
shows inside, modes of tmpfs, /dev read-only, symlinks in the rootfs,
bind mounts through dangling symlinks, their order, user namespaces, and
--no-pivot."""
from __future__ import annotations

import os
import re
import subprocess

import pytest

from differential import Side, same

pytestmark = pytest.mark.root

#: the container's mount table without ids and devices (which differ run to run)
MOUNTS = ("awk '{ sep=0; out=$4\" \"$5\" \"$6; for (i=7; i<=NF; i++) { if ($i==\"-\") sep=1; "
          "if (sep) out=out\" \"$i } print out }' /proc/self/mountinfo")

USERNS = {"uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
          "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}]}


def _userns(bundle):
    bundle.spec["linux"]["namespaces"].append({"type": "user"})
    bundle.spec["linux"].update(USERNS)
    bundle.setups.append(lambda rootfs: _chown_tree(rootfs, 100000))


def _chown_tree(top: str, uid: int) -> None:
    for d, dirs, files in os.walk(top):
        os.lchown(d, uid, uid)
        for name in dirs + files:
            os.lchown(os.path.join(d, name), uid, uid)


def _run(rt: Side, *extra):
    return {"run": rt("run", *extra, rt.id).scrubbed(rt.bundle.path), "state": rt.norm_state()}


def _run_quiet(rt: Side):
    """``_run`` for a run that may fail in runc's nsexec: its pids and socket
    number masked, and without the warnings of runc's cgroup removal racing
    the killed process (which come or not, run to run)."""
    rc, out, err = rt("run", rt.id).scrubbed(rt.bundle.path)
    err = "".join(line for line in err.splitlines(True)
                  if "Failed to remove cgroup (will retry)" not in line)
    err = re.sub(r"unix socket \d+", "unix socket N", re.sub(r"(nsexec-\d)\[\d+\]", r"\1[N]", err))
    return {"run": (rc, out, err), "state": rt.norm_state()}


@pytest.mark.parametrize("no_pivot", [False, True])
def test_default_mount_table(diff_bundle, tmp_path, no_pivot):
    """The mounts runc makes from its default spec, seen from inside; with
    --no-pivot no other procfs or sysfs of the host stays reachable."""
    diff_bundle.args("sh", "-c", MOUNTS)
    same(tmp_path, diff_bundle, lambda rt: _run(rt, *(["--no-pivot"] if no_pivot else [])))


def test_no_pivot_leaves_no_host_procfs_or_sysfs(diff_bundle, tmp_path):
    """--no-pivot chroots into the rootfs: runc takes the host's full procfs
    and sysfs mounts away from the container's mount namespace first."""
    diff_bundle.args("sleep", "60")

    def scenario(rt: Side):
        seen = {"run": rt("run", "-d", "--no-pivot", rt.id).view()}
        ns = f"/proc/{rt.pid()}/ns/mnt"
        table = subprocess.run(["nsenter", f"--mount={ns}", "cat", "/proc/self/mountinfo"],
                               capture_output=True, text=True).stdout
        seen["host_pseudo"] = sorted(
            line.split()[4] for line in table.splitlines()
            if line.split(" - ")[1].split()[0] in ("proc", "sysfs")
            and not line.split()[4].startswith(rt.bundle.rootfs))
        seen["delete"] = rt("delete", "-f", rt.id).view()
        return seen
    same(tmp_path, diff_bundle, scenario)


@pytest.mark.parametrize("no_pivot", [False, True])
def test_no_fresh_procfs_from_a_nested_user_namespace(diff_bundle, tmp_path, no_pivot):
    """A process of the container that makes a user, mount and PID namespace
    of its own may mount a procfs only where a full one is visible: with
    --no-pivot the host's must not be (runc's no_pivot.bats)."""
    for kind in ("bounding", "permitted", "effective"):
        diff_bundle.spec["process"]["capabilities"][kind].append("CAP_SETFCAP")
    diff_bundle.args("unshare", "-mrpf", "sh", "-c",
                     "mount -t proc none /proc && echo mounted && head -c 1 /proc/sysrq-trigger")
    same(tmp_path, diff_bundle, lambda rt: _run(rt, *(["--no-pivot"] if no_pivot else [])))


def test_read_only_dev_with_devpts_under_it(diff_bundle, tmp_path):
    diff_bundle.spec["mounts"][1]["options"].append("ro")
    diff_bundle.args("sh", "-c", f"{MOUNTS} | grep ' /dev'; ls /dev/pts; ls /dev | tr '\\n' ' ';"
                                 " touch /dev/x 2>&1")
    same(tmp_path, diff_bundle, _run)


def test_tmpfs_modes(diff_bundle, tmp_path):
    """A tmpfs without mode= is 1777; over an existing directory it takes
    that directory's mode, mode= or not (runc chmods it back)."""
    diff_bundle.spec["mounts"] += [
        {"destination": "/t1", "type": "tmpfs", "source": "tmpfs"},
        {"destination": "/t2", "type": "tmpfs", "source": "tmpfs"},
        {"destination": "/t3", "type": "tmpfs", "source": "tmpfs", "options": ["mode=700"]},
        {"destination": "/t4", "type": "tmpfs", "source": "tmpfs", "options": ["mode=700"]},
        {"destination": "/t5", "type": "tmpfs", "source": "tmpfs", "options": ["ro"]}]

    def setup(rootfs):
        for name, mode in (("t2", 0o750), ("t3", 0o711), ("t5", 0o1755)):
            os.mkdir(os.path.join(rootfs, name))
            os.chmod(os.path.join(rootfs, name), mode)
    diff_bundle.setups.append(setup)
    diff_bundle.args("sh", "-c", "stat -c '%a %n' /t1 /t2 /t3 /t4 /t5; touch /t5/x 2>&1")
    same(tmp_path, diff_bundle, _run)


@pytest.mark.parametrize("link", ["proc", "sys", "proc-unmounted"])
def test_proc_or_sys_as_a_symlink_is_refused(diff_bundle, tmp_path, link):
    name = link.split("-")[0]
    if link == "proc-unmounted":
        diff_bundle.spec["mounts"] = [m for m in diff_bundle.spec["mounts"]
                                      if m["destination"] != "/proc"]

    def setup(rootfs):
        os.rmdir(os.path.join(rootfs, name))
        os.symlink("/tmp", os.path.join(rootfs, name))
    diff_bundle.setups.append(setup)
    diff_bundle.args("true")
    same(tmp_path, diff_bundle, _run)


@pytest.mark.parametrize("case", ["trailing", "component", "escaping", "file", "chain"])
def test_bind_mounts_through_dangling_symlinks(diff_bundle, tmp_path, case):
    """Destinations are resolved inside the rootfs (filepath-securejoin):
    a dangling symlink leads to where it points, which is made there."""
    src = str(tmp_path / "src")
    os.makedirs(src, exist_ok=True)
    with open(src + "/f", "w") as f:
        f.write("host\n")
    links = {"trailing": ("dangle", "/target", "/dangle", src),
             "component": ("comp", "/real", "/comp/sub", src),
             "escaping": ("esc", "../../../../x", "/esc", src),
             "file": ("fl", "/tgt.txt", "/fl", src + "/f"),
             "chain": ("c1", "c2", "/c1/in", src)}
    name, target, dest, source = links[case]

    def setup(rootfs):
        os.symlink(target, os.path.join(rootfs, name))
        if case == "chain":
            os.symlink("/deep/er", os.path.join(rootfs, "c2"))
    diff_bundle.setups.append(setup)
    diff_bundle.spec["mounts"].append({"destination": dest, "type": "bind", "source": source,
                                       "options": ["rbind"]})
    diff_bundle.args("sh", "-c", "for p in /dangle /target /comp /real /real/sub /esc /x /fl "
                                 "/tgt.txt /c1 /c2 /deep /deep/er /deep/er/in; do "
                                 "[ -e $p -o -L $p ] && echo $p $(stat -c %F $p); done; "
                                 f"cat {dest}/f {dest} 2>/dev/null")
    same(tmp_path, diff_bundle, _run)


@pytest.mark.parametrize("userns", [False, True])
def test_bind_source_made_by_an_earlier_mount(open_diff_bundle, tmp_path, userns):
    """A bind source under the rootfs that an earlier mount of the spec covers:
    runc binds what is there at that moment, except in a user namespace,
    where it opened every source beforehand (the directory under it then)."""
    diff_bundle = open_diff_bundle
    rootfs = os.path.join(diff_bundle.path, "rootfs")
    diff_bundle.spec["mounts"] += [
        {"destination": "/a", "type": "tmpfs", "source": "tmpfs"},
        {"destination": "/b", "type": "bind", "source": rootfs + "/a", "options": ["rbind"]},
        {"destination": "/c", "type": "bind", "source": rootfs + "/a", "options": ["rbind",
                                                                                    "idmap"]}]

    def setup(rootfs):
        os.makedirs(rootfs + "/a", exist_ok=True)
        with open(rootfs + "/a/m", "w") as f:
            f.write("from the rootfs\n")
    diff_bundle.setups.append(setup)
    if userns:
        _userns(diff_bundle)
    diff_bundle.args("sh", "-c", "ls /a /b /c; cat /b/m /c/m 2>&1")
    same(tmp_path, diff_bundle, _run)


def test_user_namespace_with_an_inaccessible_bind_source(open_diff_bundle, tmp_path):
    diff_bundle = open_diff_bundle
    secret = tmp_path / "secret"
    secret.mkdir(mode=0o700)
    (secret / "f").write_text("s3\n")
    diff_bundle.spec["mounts"].append({"destination": "/s", "type": "bind",
                                       "source": str(secret), "options": ["rbind"]})
    _userns(diff_bundle)
    diff_bundle.args("sleep", "60")

    def scenario(rt: Side):
        seen = {"run": rt("run", "-d", rt.id).view()}
        seen["exec"] = rt("exec", rt.id, "sh", "-c", "ls -ld /s | cut -c1-10; cat /s/f 2>&1; "
                                                     "id; cat /proc/self/uid_map").view()
        seen["exec_user"] = rt("exec", "-u", "1000", rt.id, "id").view()
        seen["delete"] = rt("delete", "-f", rt.id).view()
        return seen
    same(tmp_path, diff_bundle, scenario)


def test_masked_and_read_only_paths(diff_bundle, tmp_path):
    diff_bundle.spec["linux"]["maskedPaths"] += ["/etc/hostname", "/missing", "/tmp"]
    diff_bundle.spec["linux"]["readonlyPaths"] += ["/home", "/missing-too"]
    diff_bundle.args("sh", "-c", f"{MOUNTS}; ls -A /tmp; touch /home/x 2>&1; "
                                 "cat /proc/kcore 2>&1 | head -c 10")
    same(tmp_path, diff_bundle, _run)


def _host_modes(rootfs: str, paths) -> dict:
    """Mode (octal) and kind of ``paths`` in the rootfs, seen from the host after the run."""
    out = {}
    for p in paths:
        full = os.path.join(rootfs, p.lstrip("/"))
        try:
            st = os.lstat(full)
        except FileNotFoundError:
            out[p] = None
            continue
        out[p] = (oct(st.st_mode), os.readlink(full) if os.path.islink(full) else "")
    return out


@pytest.mark.parametrize("case", ["jump", "trailing-file", "trailing-dir"])
def test_bind_targets_through_chained_dangling_symlinks(diff_bundle, tmp_path, case):
    """A destination whose symlinks lead through other dangling symlinks: made
    where the chain ends, inside the rootfs, file or directory as the source is."""
    src_dir = tmp_path / "srcdir"
    src_dir.mkdir(exist_ok=True)
    (src_dir / "inside").write_text("dir\n")
    src_file = tmp_path / "srcfile"
    src_file.write_text("file\n")

    def setup(rootfs):
        if case == "jump":
            os.symlink("/tmp/foo/bar", rootfs + "/jump")
            os.symlink("/jump/baz/hosts", rootfs + "/etc/hosts")
        else:
            os.symlink("/tmp/hosts", rootfs + "/etc/hosts")
    diff_bundle.setups.append(setup)
    real = "/tmp/foo/bar/baz/hosts" if case == "jump" else "/tmp/hosts"
    source = str(src_dir) if case == "trailing-dir" else str(src_file)
    diff_bundle.spec["mounts"].append({"destination": "/etc/hosts", "source": source,
                                       "options": ["bind"]})
    diff_bundle.args("sh", "-c", f"stat -c '%n %F %s' {real}; cat {real} {real}/inside 2>/dev/null;"
                                 f" awk '$2 == \"{real}\" {{print $2, $4}}' /proc/self/mounts;"
                                 " ls -l /etc/hosts | cut -c1-10")

    def scenario(rt: Side):
        seen = _run(rt)
        seen["host"] = _host_modes(rt.bundle.rootfs, ["/tmp/foo", "/tmp/foo/bar", "/tmp/foo/bar/baz",
                                                      real, "/etc/hosts"])
        return seen
    same(tmp_path, diff_bundle, scenario)


@pytest.mark.parametrize("opts", ["", "userns", "idmap", "userns,idmap"])
def test_mount_order_of_a_bind_tree(open_diff_bundle, tmp_path, opts):
    """A tree of bind mounts whose later sources are earlier mounts in the
    container (through symlinked sources too), finally bound elsewhere whole:
    the mounts are made in the spec's order, each seeing the ones before."""
    diff_bundle = open_diff_bundle
    rootfs = os.path.join(diff_bundle.path, "rootfs")
    top = tmp_path / "bind-src"
    for sub in ("a/x", "b/y", "c/z"):
        (top / sub).mkdir(parents=True, exist_ok=True)
        (top / sub / "file").write_text(sub + "\n")
        if not (top / f"sym-{sub[0]}").is_symlink():
            os.symlink(sub[0], top / f"sym-{sub[0]}")
    os.chmod(top, 0o750)  # a container's user cannot reach the sources itself
    ctr = ["rbind", "rprivate"] + (["idmap"] if "idmap" in opts else [])
    idmap = USERNS if "idmap" in opts else {}

    def bind(src, dst, options=("rbind", "rprivate"), **extra):
        return {"source": src, "destination": dst, "type": "bind", "options": list(options),
                **extra}
    diff_bundle.spec["mounts"] += [
        bind(f"{top}/a", "/mnt"), bind(f"{top}/sym-b", "/mnt/x"), bind(f"{top}/c", "/mnt/x/y"),
        bind(f"{top}/sym-a", "/mnt/x/y/z"),
        bind(f"{rootfs}/mnt/x", f"{rootfs}/mnt/x/y/z/x", ctr, **idmap),
        bind(f"{rootfs}/mnt/x/y", f"{rootfs}/mnt/x/y/z", ctr, **idmap),
        bind(f"{rootfs}/mnt", f"{rootfs}/final", ctr, **idmap)]

    def setup(root):
        os.makedirs(root + "/mnt", exist_ok=True)
        os.makedirs(root + "/final", exist_ok=True)
    diff_bundle.setups.append(setup)
    if "userns" in opts:
        _userns(diff_bundle)
    diff_bundle.args("sh", "-c", "find /final | sort | tr '\\n' ' '; echo; "
                                 "cat /final/x/y/z/z/x/y/z/x/file 2>&1")

    def scenario(rt: Side):
        seen = _run_quiet(rt)
        # runc makes each mount point at the destination joined to the rootfs
        # whole (under the rootfs, a copy of the rootfs' own path), then mounts
        # with that prefix stripped
        made = os.path.join(rt.bundle.rootfs, "tmp")
        seen["made"] = sorted(os.path.relpath(d, made) for d, _dirs, _files in os.walk(made))
        return seen
    same(tmp_path, diff_bundle, scenario)


@pytest.mark.parametrize("case", ["symlink", "setgid", "missing"])
def test_tmpfs_destinations_made_in_the_rootfs(diff_bundle, tmp_path, case):
    """tmpfs destinations under an absolute symlink, under a setgid directory
    and under missing directories: where they are made and with which modes."""
    dest = {"symlink": "/conf/stack", "setgid": "/setgid/a/b/c",
            "missing": "/non-existent/foo/bar/baz"}[case]

    def setup(rootfs):
        if case == "symlink":
            os.makedirs(rootfs + "/real/conf")
            os.symlink("/real/conf", rootfs + "/conf")
        elif case == "setgid":
            os.mkdir(rootfs + "/setgid")
            os.chmod(rootfs + "/setgid", 0o7755)
    diff_bundle.setups.append(setup)
    diff_bundle.spec["mounts"].append({"destination": dest, "type": "tmpfs", "source": "tmpfs",
                                       "options": ["ro", "nodev", "nosuid"]})
    diff_bundle.args("sh", "-c", f"stat -c '%n %a' {dest}; "
                                 f"awk '$2 ~ \"^/(real|conf|setgid|non-existent)\" {{print $2, $4}}'"
                                 " /proc/self/mounts")

    def scenario(rt: Side):
        os.umask(0o022)
        seen = _run(rt)
        parts = dest.strip("/").split("/")
        seen["host"] = _host_modes(rt.bundle.rootfs, ["/" + "/".join(parts[:i + 1])
                                                      for i in range(len(parts))]
                                   + ["/real/conf/stack"])
        return seen
    same(tmp_path, diff_bundle, scenario)
