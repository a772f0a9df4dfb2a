"""Pure logic of runtime_ns and init_tini: no namespaces needed."""
from __future__ import annotations

import os

import pytest

from pallet.plugins.init_tini.spec import ANNOTATION, add_init
from pallet.plugins.runtime_ns import cgroups, linux
from pallet.commands.runc import Fatal, parse_signal
from pallet.commands.runc_flags import (BOOL, INT, STRING, Flag, UsageError, parse_duration,
                                        parse_flags, parse_int, reorder)
from pallet.plugins.runtime_ns.mounts import parse_options, secure_join
from pallet.plugins.runtime_ns.state import valid_id


def test_secure_join_stays_inside(tmp_path):
    root = str(tmp_path)
    os.makedirs(root + "/etc")
    os.symlink("/", root + "/abs")
    os.symlink("../../../..", root + "/etc/up")
    os.symlink("/etc", root + "/etclink")
    assert secure_join(root, "/abs/x") == root + "/x"
    assert secure_join(root, "/etc/up/y") == root + "/y"
    assert secure_join(root, "/../../z") == root + "/z"
    assert secure_join(root, "/etclink/passwd") == root + "/etc/passwd"
    assert secure_join(root, "/missing/./a/../b") == root + "/missing/b"
    os.symlink("loop", root + "/loop")
    with pytest.raises(Exception, match="too many levels of symbolic links"):
        secure_join(root, "/loop")


def test_parse_mount_options():
    flags, prop, data = parse_options(["rbind", "ro", "nosuid", "rprivate", "mode=755", "size=1m"])
    assert flags == linux.MS_BIND | linux.MS_REC | linux.MS_RDONLY | linux.MS_NOSUID
    assert prop == linux.MS_PRIVATE | linux.MS_REC
    assert data == "mode=755,size=1m"
    flags, _, _ = parse_options(["ro", "rw", "nodev", "dev"])
    assert flags == 0


def test_cap_mask_skips_what_runc_does_not_know():
    assert linux.cap_mask(["CAP_KILL", "CAP_NET_BIND_SERVICE"]) == (1 << 5) | (1 << 10)
    assert linux.cap_mask(["CAP_NOPE", "cap_kill", "KILL"]) == 0
    assert linux.unknown_capabilities({"bounding": ["CAP_KILL", "cap_kill"],
                                       "effective": ["CAP_NOPE"]}) == {"cap_kill", "CAP_NOPE"}


def test_valid_ids():
    assert valid_id("abc-DEF_1.2+3")
    for bad in ("", ".", "..", "a/b", "a b", "x" * 1025):
        assert not valid_id(bad)


def test_signals():
    assert parse_signal("9") == 9 and parse_signal("KILL") == 9 and parse_signal("SIGTERM") == 15
    assert parse_signal("sighup") == 1
    # runc takes any number as is: the kernel judges it
    assert parse_signal("0") == 0 and parse_signal("999") == 999
    for bad in ("BADSIG", "SIG_DFL", "x9"):
        with pytest.raises(Fatal, match="unknown signal"):
            parse_signal(bad)


def test_cli_parser_as_go_and_urfave():
    flags = [Flag("bundle, b", STRING, ""), Flag("detach, d", BOOL, ""),
             Flag("preserve-fds", INT, "", 0)]
    assert parse_flags(flags, ["-d", "--bundle=/x", "id", "--not-a-flag"]) == (
        {"detach": True, "bundle": "/x"}, ["id", "--not-a-flag"])
    assert parse_flags(flags, ["-b", "/y", "id"]) == ({"bundle": "/y"}, ["id"])
    assert parse_flags(flags, ["-bundle", "/z", "--", "-d"]) == ({"bundle": "/z"}, ["-d"])
    assert parse_flags(flags, ["--preserve-fds", "0x10", "x"])[0] == {"preserve-fds": 16}
    for args, message in ((["--nope"], "flag provided but not defined: -nope"),
                          (["-b"], "flag needs an argument: -b"),
                          (["-d=maybe"], 'invalid boolean value "maybe" for -d: parse error'),
                          (["--preserve-fds", "1x"], 'invalid value "1x" for flag '
                                                      "-preserve-fds: parse error"),
                          (["-b", "a", "--bundle", "c"], "Cannot use two forms of the same "
                                                         "flag: b bundle")):
        with pytest.raises(UsageError, match=message):
            parse_flags(flags, args)
    # flags after the arguments move before them, with their values
    assert reorder(flags, ["id", "--bundle", "/b", "-d"]) == ["--bundle", "/b", "-d", "id"]
    assert reorder(flags, ["id", "--", "-d"]) == ["--", "id", "-d"]


def test_go_values():
    assert [parse_int(t) for t in ("10", "0x10", "010", "1_000", "-5", "1x", "", "08")] == \
        [10, 16, 8, 1000, -5, None, None, None]
    assert parse_duration("1h2m0.5s") == 3720.5 and parse_duration("500ms") == 0.5
    assert parse_duration("1") is None


def test_cgroup_paths():
    assert cgroups.normalize("system.slice:pallet:abc") == "system.slice:pallet:abc"
    assert cgroups.normalize("/docker/abc") == "/docker/abc"
    assert cgroups.normalize("a/../../b") == "b"  # relative stays relative, as runc's CleanPath
    paths = cgroups.paths_for("/pallet-x/abc")
    for name, path in paths.items():
        assert path == os.path.join(cgroups.mounts()[name], "pallet-x/abc")


def test_devices_emulator_writes_the_fewest_rules():
    from pallet.plugins.runtime_ns.devices import Emulator, rules_of
    target = Emulator.from_rules(rules_of([{"allow": False, "access": "rwm"}]))
    # from a new (allow-all) cgroup: deny everything, then the allowances
    moves = Emulator.from_list("a *:* rwm").transition(target)
    assert moves[0] == (False, "a *:* rwm") and (True, "c 1:3 rwm") in moves
    # from the same rules: nothing to write (update leaves them alone)
    current = "\n".join(text for allow, text in moves[1:])
    assert Emulator.from_list(current).transition(target) == []
    # one permission less: only that one is taken away
    fewer = Emulator.from_rules(rules_of([{"allow": False, "access": "rwm"},
                                          {"allow": False, "type": "c", "major": 1, "minor": 3,
                                           "access": "w"}]))
    assert Emulator.from_list(current).transition(fewer) == []  # the defaults allow it again
    assert Emulator.from_list(current + "\nc 1:11 rwm").transition(target) == \
        [(False, "c 1:11 rwm")]


def test_go_json():
    from pallet.oci import jsonlite
    assert jsonlite.go_dumps({"a": "<&>", "b": [1, {}], "c": None}) == \
        '{"a":"\\u003c\\u0026\\u003e","b":[1,{}],"c":null}'
    assert jsonlite.go_dumps({"x": [1]}, "  ") == '{\n  "x": [\n    1\n  ]\n}'
    assert jsonlite.first_value('{"a": 1} trailing') == ({"a": 1}, 8)
    for text, message in (("nope", "invalid character 'o' in literal null (expecting 'u')"),
                          ("{x", "invalid character 'x' looking for beginning of object key"),
                          ('{"a":', "unexpected EOF"), ("", "EOF")):
        with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
            jsonlite.first_value(text)


def test_default_spec_is_runcs():
    from pallet.oci import jsonlite
    from pallet.oci.spec import default_spec, rootless_spec
    text = jsonlite.go_dumps(default_spec(), "\t")
    assert text.startswith('{\n\t"ociVersion": "1.0.2-dev",\n\t"process": {\n\t\t"terminal": true')
    rootless = rootless_spec(1000, 1000)
    assert [ns["type"] for ns in rootless["linux"]["namespaces"]] == ["pid", "ipc", "uts",
                                                                     "mount", "user"]
    assert list(rootless["linux"])[:3] == ["uidMappings", "gidMappings", "namespaces"]


def test_add_init_builtin_and_binary():
    spec = {"process": {"args": ["sh"]}, "mounts": []}
    add_init(spec, None)
    assert spec["annotations"][ANNOTATION] == "builtin" and spec["process"]["args"] == ["sh"]
    spec = {"process": {"args": ["sh", "-c", "x"]}}
    add_init(spec, "/usr/bin/tini-static")
    assert spec["process"]["args"] == ["/sbin/docker-init", "--", "sh", "-c", "x"]
    assert spec["mounts"] == [{"destination": "/sbin/docker-init", "type": "bind",
                               "source": "/usr/bin/tini-static", "options": ["bind", "ro"]}]


class _FakeKernel:
    class paths:
        runtime_root = "/run/pallet-test/containerd/runtime"

    def __init__(self, config, roles):
        self.config = config
        self.roles = roles
        self.provided = []

    def plugin_config(self, name):
        return dict(self.config.get(name, {}))

    def has_role(self, role):
        return role in self.roles

    def provide(self, role):
        self.provided.append(role)
        from pallet.plugins.init_tini import plugin as init_plugin
        return init_plugin.pallet_provide_init(self)


def test_plugin_wiring():
    from pallet.plugins.init_tini import plugin as init_plugin
    from pallet.plugins.runtime_ns import plugin as rt_plugin

    assert rt_plugin.PALLET_ROLE == "runtime" and init_plugin.PALLET_ROLE == "init"
    kernel = _FakeKernel({}, {"runtime", "init"})
    rt = rt_plugin.pallet_provide_runtime(kernel)
    # the init role is asked for only when a spec needs it (or when pickled for the shim)
    assert kernel.provided == []
    assert rt.root == "/run/pallet-test/containerd/runtime"
    import pickle
    shipped = pickle.loads(pickle.dumps(rt))
    assert shipped.init is not None and kernel.provided == ["init"]
    assert shipped.root == rt.root and rt.with_root("/tmp/x").root == "/tmp/x"
    kernel = _FakeKernel({"runtime_ns": {"root": "/tmp/elsewhere"}}, {"runtime"})
    rt = rt_plugin.pallet_provide_runtime(kernel)
    assert rt.root == "/tmp/elsewhere" and rt.init is None

    spec = {"process": {"args": ["sh"]}}
    init_plugin.pallet_provide_init(kernel).prepare_spec(spec)
    assert spec["annotations"][ANNOTATION] == "builtin"
    kernel = _FakeKernel({"init_tini": {"init_path": "/usr/bin/tini-static"}}, set())
    spec = {"process": {"args": ["sh"]}}
    init_plugin.pallet_provide_init(kernel).prepare_spec(spec)
    assert spec["process"]["args"][0] == "/sbin/docker-init"


def test_plugin_module_is_light():
    import subprocess
    import sys
    code = ("import sys; import pallet.plugins.runtime_ns.plugin, pallet.plugins.init_tini.plugin;"
            "print([m for m in sys.modules if m.startswith('pallet.plugins') and "
            "m.rsplit('.', 1)[-1] not in ('plugins', 'runtime_ns', 'init_tini', 'plugin')]);"
            "sys.modules.pop('pallet.plugins.init_tini.plugin');"
            "print('pluggy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    lines = out.stdout.split()
    assert lines[0] == "[]"


def test_runtime_plugin_loads_without_pluggy():
    """The fast path imports runtime_ns's wiring: it must not pull in pluggy."""
    import subprocess
    import sys
    code = ("import sys; import pallet.plugins.runtime_ns.plugin; "
            "print(sorted(m for m in ('pluggy', 'attrs', 'stevedore') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_unmarked_hooks_are_found_by_the_kernel():
    """A plugin may leave its hooks unmarked (runtime_ns does): pluggy's manager
    of the kernel takes every pallet_* function named in the hook specs."""
    import types

    from pallet.core.kernel import _plugin_manager
    pm = _plugin_manager()
    plugin = types.ModuleType("p")
    plugin.pallet_provide_runtime = lambda kernel: "rt"
    plugin.pallet_helper = lambda: None  # no such hook: left alone
    pm.register(plugin, name="p")
    assert pm.hook.pallet_provide_runtime(kernel=None) == "rt"
    assert not hasattr(pm.hook, "pallet_helper")


def test_schema_patterns_without_re_agree_with_re():
    import re

    from pallet.plugins.runtime_ns._oci_schema import SCHEMAS
    from pallet.plugins.runtime_ns.validate import _KNOWN_PATTERNS, _matches
    found = set()

    def walk(node):
        if isinstance(node, dict):
            if isinstance(node.get("pattern"), str):
                found.add(node["pattern"])
            found.update(k for k in (node.get("patternProperties") or {}))
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
    walk(SCHEMAS)
    assert found <= set(_KNOWN_PATTERNS)
    samples = ["", "CAP_SYS_ADMIN", "CAP_", "cap_x", "RLIMIT_NOFILE", "RLIMIT_NO_FILE", "c", "cb",
               "u", "0-3,5", "0-3;5", "2MB", "64kB", "1GB", "02MB", "MB:0=100", "MB:0\n=1", "x",
               "\n", "a\nb", "2 MB"]
    for pattern in found:
        for s in samples:
            assert _matches(pattern, s) == bool(re.search(pattern, s)), (pattern, s)


def test_jsonlite_matches_json():
    import json

    import pytest

    from pallet.oci import jsonlite as _jsonlite
    doc = {"a": [1, 2.5, None, True, "é\n\"x"], "b": {"c": -1e300}, "d": ""}
    assert _jsonlite.loads(json.dumps(doc)) == doc
    assert _jsonlite.dumps(doc) == json.dumps(doc)
    assert _jsonlite.loads(b' {"x": [ ] } \n') == {"x": []}
    for bad in ("", "{", '{"a": 1} x', "[1,]"):
        with pytest.raises(ValueError):
            _jsonlite.loads(bad)


def test_runc_cli_imports_no_enum_re_or_json():
    """pallet-runc's start-up: the create path imports neither json, re nor enum
    (nor the socket module, which imports enum), nor threading, array (which
    loads collections) or zlib."""
    import subprocess
    import sys
    # an editable install's import hook may have loaded some of them already:
    # make any new import of them fail instead
    code = ("import sys\n"
            "for m in ('json', 're', 'enum', 'signal', 'subprocess', 'socket', 'tempfile',\n"
            "          'attrs', 'pluggy', 'stevedore', 'typing', 'threading', 'array',\n"
            "          'collections', 'zlib'): sys.modules[m] = None\n"
            "from pallet.commands import runc, runc_flags, runc_help, runc_console, runc_exec\n"
            "from pallet.commands import runc_update\n"
            "from pallet.commands import kernel_cache\n"
            "from pallet.plugins.runtime_ns import plugin, runtime, process, spawn, validate, "
            "_oci_schema, state, hooks, seccomp, cgroups, devices, mounts, features\n"
            "from pallet.plugins.init_tini import init\n"
            "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "ok", out.stderr


def test_seccomp_compiles_for_aarch64_and_x86_64():
    import json
    import os
    import struct

    from pallet.plugins.runtime_ns import seccomp
    from pallet.plugins.runtime_ns._syscalls import TABLES
    assert TABLES["aarch64"]["unshare"] == 97 and TABLES["aarch64"]["mount"] == 40
    assert TABLES["x86_64"]["unshare"] == 272 and TABLES["x86_64"]["keyctl"] == 250
    shared = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "specs",
                          "docker-default-seccomp.json")
    if not os.path.exists(shared):
        return
    with open(shared) as f:
        docker = json.load(f)
    for arch, audit in (("SCMP_ARCH_AARCH64", 0xC00000B7), ("SCMP_ARCH_X86_64", 0xC000003E)):
        profile = seccomp.from_docker_profile(docker, ["CAP_KILL"], arch=arch)
        prog = seccomp.compile_profile(profile, arch=arch)
        assert 0 < len(prog) // 8 <= 4096
        # the first architecture tested is the native one asked for
        code, jt, jf, k = struct.unpack_from("=HBBI", prog, 8)
        assert k == audit


def test_device_node_from_stat():
    """The one builder of ``linux.devices`` entries (docker's --device, CRI's devices)."""
    from pallet.oci.spec import device_node

    st = os.stat("/dev/null")
    assert device_node(st, "/dev/x") == {
        "path": "/dev/x", "type": "c", "major": 1, "minor": 3,
        "fileMode": st.st_mode & 0o7777, "uid": st.st_uid, "gid": st.st_gid}
    assert device_node(os.stat("/"), "/x") is None


def test_join_namespace_and_bind_file():
    """What the network plugins (net_bridge, net_cni) do to a container's spec."""
    from pallet.oci.spec import bind_file, join_namespace

    spec = {"linux": {"namespaces": [{"type": "network"}, {"type": "uts"}]},
            "mounts": [{"destination": "/etc/hosts", "type": "bind", "source": "/a",
                        "options": ["rbind", "rprivate"]}]}
    join_namespace(spec, "network", "/run/netns/x")
    join_namespace(spec, "ipc", "/proc/1/ns/ipc")
    assert spec["linux"]["namespaces"] == [{"type": "network", "path": "/run/netns/x"},
                                           {"type": "uts"},
                                           {"type": "ipc", "path": "/proc/1/ns/ipc"}]
    bind_file(spec, "/etc/hosts", "/b")
    bind_file(spec, "/etc/hostname", "/c")
    assert spec["mounts"] == [
        {"destination": "/etc/hosts", "type": "bind", "source": "/b", "options": ["rbind", "rprivate"]},
        {"destination": "/etc/hostname", "type": "bind", "source": "/c",
         "options": ["rbind", "rprivate"]}]


def test_cgroupfs_readers(tmp_path):
    """The one reader of cgroup files (runtime_ns, the shim's metrics, docker stats)."""
    from pallet.linux import cgroupfs

    (tmp_path / "memory.stat").write_text("cache 10\nrss 20\nbad x\nthree 1 2\n")
    (tmp_path / "memory.max").write_text("max\n")
    (tmp_path / "pids.current").write_text("7\n")
    assert cgroupfs.read_keyed(str(tmp_path / "memory.stat")) == {"cache": 10, "rss": 20}
    assert cgroupfs.read_keyed(str(tmp_path / "missing")) == {}
    assert cgroupfs.read_int(str(tmp_path / "memory.max"), -1) == -1
    assert cgroupfs.read_int(str(tmp_path / "pids.current")) == 7
    assert cgroupfs.read_int(str(tmp_path / "missing")) == 0


def test_cgroupfs_membership_and_mounts():
    """The one reader of /proc/<pid>/cgroup and of the cgroup mounts, checked
    against the kernel's own files for this process."""
    from pallet.linux import cgroupfs

    with open("/proc/self/cgroup") as f:
        lines = [line.split(":", 2) for line in f.read().splitlines()]
    assert cgroupfs.membership() == [(names, path) for _id, names, path in lines]
    assert cgroupfs.membership(os.getpid()) == cgroupfs.membership()
    mine = cgroupfs.by_controller()
    for _id, names, path in lines:
        for name in names.split(",") if names else [""]:
            assert mine[name] == path
    with pytest.raises(OSError):
        cgroupfs.membership(2 ** 22 + 1)   # above pid_max: no such process
    points = cgroupfs.mount_points()
    for kind, options, _root, point in cgroupfs.cgroup_mounts():
        assert os.path.ismount(point)
        if kind == "cgroup":
            assert all(points[opt] for opt in options)
    if any(kind == "cgroup2" for kind, *_ in cgroupfs.cgroup_mounts()):
        assert os.path.exists(os.path.join(points[""], "cgroup.procs"))
    if "memory" in mine and "memory" in points:
        assert os.path.isdir(points["memory"] + mine["memory"]) or mine["memory"] == "/"
