"""``pallet build``, ``pallet commit``, ``pallet image history`` and
``pallet builder prune``: docker's flags, output and exit codes; a context
made by the pallet CLI is the docker CLI's (the same cache keys)."""
from __future__ import annotations

import os
import subprocess
import sys

from build_helpers import docker_build, image_tree, write_context

PALLET = os.path.join(os.path.dirname(sys.executable), "pallet")


def pallet(engine, *args, input=None):
    return subprocess.run([PALLET, "-H", f"unix://{engine.sock}", *args], input=input,
                          capture_output=True, timeout=300)


def test_build_like_the_docker_cli(palletd, ctx, tmp_path):
    write_context(ctx, {"Dockerfile": "FROM busybox\nARG A\nCOPY . /ctx\nRUN echo $A > /a\n",
                        ".dockerignore": "*.tmp\n", "x": "x", "y.tmp": "y", "sub/z": "z"})
    r = pallet(palletd, "build", "-t", "pcli:1", "--build-arg", "A=1", "--label", "k=v",
               "--iidfile", str(tmp_path / "iid"), str(ctx))
    assert r.returncode == 0, r.stderr.decode()
    out = r.stdout.decode()
    assert out.startswith("Sending build context to Docker daemon  ")
    assert "Step 1/5 : FROM busybox\n ---> " in out
    assert "Step 5/5 : LABEL \"k\"='v'" in out and "Successfully tagged pcli:1" in out
    iid = (tmp_path / "iid").read_text()
    assert iid.startswith("sha256:") and iid[7:19] in out
    tree = image_tree(palletd, "pcli:1")
    assert sorted(k for k in tree if k.startswith("ctx/")) == \
        ["ctx/.dockerignore", "ctx/Dockerfile", "ctx/sub", "ctx/sub/z", "ctx/x"]
    # the docker CLI's context of the same directory hits the same cache
    r = docker_build(palletd, str(ctx), "--build-arg", "A=1", "--label", "k=v")
    assert r.returncode == 0 and r.stdout.decode().count("Using cache") == 4


def test_quiet_stdin_and_outside_dockerfile(palletd, ctx, tmp_path):
    write_context(ctx, {"f": "f"})
    (tmp_path / "Outside.df").write_text("FROM busybox\nCOPY f /f\n")
    r = pallet(palletd, "build", "-q", "-f", str(tmp_path / "Outside.df"), str(ctx))
    assert r.returncode == 0 and r.stdout.decode().startswith("sha256:"), r.stderr.decode()
    assert r.stdout.decode().count("\n") == 1
    r = pallet(palletd, "build", "-t", "pcli:stdin", "-", input=b"FROM busybox\nRUN true\n")
    assert r.returncode == 0, r.stderr.decode()
    r = pallet(palletd, "build", "-f", "-", "-t", "pcli:stdindf", str(ctx),
               input=b"FROM busybox\nCOPY . /c\n")
    assert r.returncode == 0, r.stderr.decode()
    assert sorted(k for k in image_tree(palletd, "pcli:stdindf") if k.startswith("c/")) == \
        ["c/f"]


def test_errors_and_exit_codes(palletd, ctx):
    write_context(ctx, {"Dockerfile": "FROM busybox\nRUN exit 5\n"})
    r = pallet(palletd, "build", str(ctx))
    assert r.returncode == 5
    assert r.stderr.decode().strip().endswith(
        "The command '/bin/sh -c exit 5' returned a non-zero code: 5")
    write_context(ctx, {"Dockerfile": "FROM busybox\nNOPE\n"})
    r = pallet(palletd, "build", str(ctx))
    assert r.returncode == 1
    assert "Error response from daemon: dockerfile parse error line 2: unknown instruction: " \
        "NOPE" in r.stderr.decode()
    r = pallet(palletd, "build", str(ctx / "missing"))
    assert r.returncode == 1 and "unable to prepare context" in r.stderr.decode()


def test_commit_history_and_prune(palletd):
    r = pallet(palletd, "run", "-d", "--name", "pc1", "--network", "none", "busybox", "sh",
               "-c", "echo c > /c; sleep 60")
    assert r.returncode == 0, r.stderr.decode()
    try:
        import time
        time.sleep(0.5)
        r = pallet(palletd, "commit", "-c", "ENV X=1", "-m", "note", "pc1", "pcommit:1")
        assert r.returncode == 0 and r.stdout.decode().startswith("sha256:")
        r = pallet(palletd, "image", "history", "pcommit:1")
        lines = r.stdout.decode().splitlines()
        assert lines[0].split() == ["IMAGE", "CREATED", "CREATED", "BY", "SIZE", "COMMENT"]
        assert "note" in lines[1] and "sh -c echo c > /c; sleep 60" in lines[1]
        r = pallet(palletd, "container", "commit", "nosuch")
        assert r.returncode == 1 and "No such container: nosuch" in r.stderr.decode()
    finally:
        pallet(palletd, "rm", "-f", "pc1")
    r = pallet(palletd, "builder", "prune", "-f")
    assert r.returncode == 0 and "Total reclaimed space:" in r.stdout.decode()
