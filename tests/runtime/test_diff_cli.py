"""pallet-runc's command line against runc 1.1's: version, help, usage errors,
flag parsing and log lines.  No container is started here."""
from __future__ import annotations

import json
import os

import pytest

from differential import Side, same

pytestmark = pytest.mark.root

#: every command runc 1.1 lists in its help
COMMANDS = ("checkpoint", "create", "delete", "events", "exec", "kill", "list", "pause", "ps",
            "restore", "resume", "run", "spec", "start", "state", "update", "features")


def help_shape(text: str) -> dict:
    """What a help text must agree on: its NAME and USAGE lines, the commands
    it lists and every flag spelling of its OPTIONS (the prose is pallet's own)."""
    lines = text.split("\n")
    shape = {"name": None, "usage": None, "commands": [], "flags": []}
    section = None
    for i, line in enumerate(lines):
        if line in ("NAME:", "USAGE:", "COMMANDS:", "OPTIONS:", "GLOBAL OPTIONS:"):
            section = line
            if line in ("NAME:", "USAGE:"):
                shape[line[:-1].lower()] = lines[i + 1]
            continue
        if section == "COMMANDS:" and line.startswith("   ") and line.strip():
            shape["commands"].append(line.split("  ")[1].strip())
        if section in ("OPTIONS:", "GLOBAL OPTIONS:") and line.startswith("   --"):
            spellings = line.strip().split("  ")[0]
            shape["flags"].append(spellings)
    shape["name"] = (shape["name"] or "").split(" - ")[0]
    return shape


def test_version_lines(diff_bundle, tmp_path):
    def scenario(rt: Side):
        done = rt("--version")
        lines = done.out.decode().split("\n")
        return {"rc": done.rc, "err": done.err,
                "prefixes": [line.split(" ")[0] for line in lines[:3]],
                "spec": lines[2], "first": lines[0].startswith("runc version ")}
    same(tmp_path, diff_bundle, scenario)
    out = Side("pallet", __import__("differential").PALLET_RUNC, str(tmp_path), "x",
               diff_bundle)("-v").out.decode()
    assert len(out.splitlines()) == 3, out


@pytest.mark.parametrize("command", COMMANDS)
def test_command_help(diff_bundle, tmp_path, command):
    def scenario(rt: Side):
        dash_h = rt(command, "-h")
        long = rt(command, "--help")
        topic = rt("help", command)
        return {"rc": [dash_h.rc, long.rc, topic.rc], "err": [dash_h.err, long.err, topic.err],
                "shape": help_shape(dash_h.out.decode()),
                "same": dash_h.out == long.out == topic.out}
    same(tmp_path, diff_bundle, scenario)


def test_main_help(diff_bundle, tmp_path):
    def scenario(rt: Side):
        outs = [rt(*args) for args in (("--help",), ("-h",), ("help",), ("h",), ())]
        return {"rc": [o.rc for o in outs], "err": [o.err for o in outs],
                "shape": help_shape(outs[0].out.decode()),
                "same": len({o.out for o in outs}) == 1}
    same(tmp_path, diff_bundle, scenario)


@pytest.mark.parametrize("args", [
    ("state",), ("state", "a", "b"), ("kill",), ("kill", "a", "b", "c"), ("exec",), ("ps",),
    ("events",), ("events", "a", "b"), ("pause",), ("resume",), ("start", "a", "b"),
    ("spec", "a"), ("features", "x"), ("list", "x"), ("run",), ("create",), ("delete",),
    ("update",), ("update", "nope", "--memory"), ("update", "--bogus", "nope"),
    ("update", "--pids-limit", "x", "nope"), ("create", "--preserve-fds", "x", "nope"),
    ("list", "--format"), ("delete", "-x", "nope"), ("kill", "--all=maybe", "nope"),
    ("update", "--blkio-weight", "-3", "nope"), ("events", "--interval", "1", "nope"),
    ("events", "--interval", "x", "nope"), ("exec", "--preserve-fds", "1x", "nope", "true"),
])
def test_usage_errors(diff_bundle, tmp_path, args):
    """urfave/cli's "Incorrect Usage" on stdout with the command's help, one
    error line, status 1."""
    def scenario(rt: Side):
        done = rt(*args)
        first, _, rest = done.out.decode().partition("\n\n")
        helped = rt(args[0], "-h").out.decode()
        return {"rc": done.rc, "err": done.err, "first": first,
                "help_follows": rest == helped or not done.out}
    same(tmp_path, diff_bundle, scenario)


@pytest.mark.parametrize("args", [
    ("--bogus",), ("-x", "list"), ("--log-format", "xml", "list"), ("nope",),
    ("--root",), ("--debug=maybe", "list"), ("help", "nope"),
])
def test_global_usage_errors(diff_bundle, tmp_path, args):
    def scenario(rt: Side):
        done = rt(*args)
        out = done.out.decode()
        return {"rc": done.rc, "err": done.err, "first": out.split("\n")[0],
                "help": help_shape(out.partition("\n\n")[2]) if out else None}
    same(tmp_path, diff_bundle, scenario)


@pytest.mark.parametrize("args", [
    ("state", "nope"), ("start", "nope"), ("kill", "nope"), ("delete", "nope"), ("pause", "nope"),
    ("resume", "nope"), ("ps", "nope"), ("events", "nope"), ("events", "--stats", "nope"),
    ("update", "nope"), ("exec", "nope", "true"), ("delete", "--force", "nope"),
    ("checkpoint", "nope"), ("list", "-f", "x"), ("list",), ("list", "-q"),
    ("list", "--format", "json"), ("state", "bad/id"), ("delete", "-f", "bad/id"),
    ("kill", "nope", "NOSIG"), ("update", "-r", "/nonexistent", "nope"),
])
def test_missing_container_and_list(diff_bundle, tmp_path, args):
    def scenario(rt: Side):
        return rt(*args).view()
    same(tmp_path, diff_bundle, scenario)


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_log_file_and_format(diff_bundle, tmp_path, fmt):
    """The error goes to --log in the chosen format, and bare to stderr."""
    def scenario(rt: Side):
        log = os.path.join(rt.scratch, "runc.log")
        done = rt("--log", log, "--log-format", fmt, "state", "nope")
        with open(log) as f:
            logged = f.read()
        from differential import normalize_err
        return {"result": done.view(), "log": normalize_err(logged)}
    same(tmp_path, diff_bundle, scenario)


def test_debug_error_line_names_its_caller(diff_bundle, tmp_path):
    """With --debug, logrus reports the caller of the final error (func, file)."""
    def scenario(rt: Side):
        return [rt("--debug", "state", "nope").view(),
                rt("--debug", "--log-format", "json", "state", "nope").view()]
    same(tmp_path, diff_bundle, scenario)


def test_spec_command(diff_bundle, tmp_path):
    def scenario(rt: Side):
        target = os.path.join(rt.scratch, "spec")
        os.makedirs(target, exist_ok=True)
        first = rt("spec", "--bundle", target)
        with open(os.path.join(target, "config.json"), "rb") as f:
            written = f.read()
        again = rt("spec", "-b", target)
        rootless = os.path.join(rt.scratch, "rootless")
        os.makedirs(rootless, exist_ok=True)
        rl = rt("spec", "--rootless", "-b", rootless)
        with open(os.path.join(rootless, "config.json"), "rb") as f:
            rootless_written = f.read()
        return {"first": first.view(), "written": written, "again": again.view(),
                "rootless": rl.view(), "rootless_written": rootless_written}
    same(tmp_path, diff_bundle, scenario)


def test_features_document(diff_bundle, tmp_path):
    """The same keys as runc's features (values say what pallet implements)."""
    def scenario(rt: Side):
        done = rt("features")
        doc = json.loads(done.out)

        def keys(d, prefix=""):
            out = []
            for k, v in d.items():
                out.append(prefix + k)
                if isinstance(v, dict) and prefix.count(".") < 1:
                    out += keys(v, prefix + k + ".")
            return out
        return {"rc": done.rc, "err": done.err, "keys": sorted(k for k in keys(doc)
                                                               if not k.startswith("annotations")),
                "indent": done.out.decode().split("\n")[1][:5]}
    same(tmp_path, diff_bundle, scenario)
