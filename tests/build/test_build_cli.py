"""``docker build`` (the docker CLI 28, classic builder path) against palletd:
the cache, stages, RUN's mounts and heredocs, COPY/ADD's options, contexts
from stdin, URLs and subdirectories, and errors as dockerd reports them."""
from __future__ import annotations

import gzip
import http.server
import io
import json
import re
import tarfile
import threading

import pytest

from build_helpers import docker_build, image_tree, inspect_image, write_context


def text(r) -> str:
    return r.stdout.decode() + r.stderr.decode()


def ok(r) -> str:
    assert r.returncode == 0, text(r)
    return r.stdout.decode()


def steps_cached(output: str) -> list[bool]:
    """For each ``Step`` after the first, whether it came from the cache."""
    out = []
    for chunk in output.split("Step ")[2:]:
        out.append(" ---> Using cache" in chunk)
    return out


def run(engine, image: str, *cmd: str) -> str:
    r = engine.docker("run", "--rm", "--network", "none", image, *cmd, check=False)
    assert r.returncode == 0, r.stderr.decode()
    return r.stdout.decode()


def test_build_cache_and_one_changed_file(palletd, ctx):
    write_context(ctx, {"Dockerfile": "FROM busybox\nENV A=1\nCOPY a /a\nRUN cat /a > /b\n"
                                      "COPY c /c\nCMD [\"cat\", \"/b\"]\n",
                        "a": "one\n", "c": "c\n"})
    first = ok(docker_build(palletd, str(ctx), "-t", "cache:1"))
    assert not any(steps_cached(first)) and "Successfully tagged cache:latest" not in first
    assert "Successfully tagged cache:1" in first
    assert run(palletd, "cache:1") == "one\n"
    again = ok(docker_build(palletd, str(ctx), "-t", "cache:1"))
    assert steps_cached(again) == [True] * 5
    # a changed file invalidates exactly the steps from its COPY on
    (ctx / "a").write_text("two\n")
    changed = ok(docker_build(palletd, str(ctx), "-t", "cache:1"))
    assert steps_cached(changed) == [True, False, False, False, False]
    assert run(palletd, "cache:1") == "two\n"
    nocache = ok(docker_build(palletd, str(ctx), "--no-cache", "-t", "cache:2"))
    assert not any(steps_cached(nocache))
    # no intermediate image shows, no step container is left
    listed = palletd.docker("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.decode()
    # (the image cache:1 named before the change is <none> now, as with dockerd)
    assert sorted(x for x in listed.split() if x != "<none>:<none>") == \
        ["busybox:latest", "cache:1", "cache:2"]
    assert palletd.docker("ps", "-aq").stdout.decode().strip() == ""


def test_history_is_the_classic_builders(palletd, ctx):
    write_context(ctx, {"Dockerfile": "FROM busybox\nARG V=1\nLABEL a=b\nRUN echo $V > /v\n"
                                      "WORKDIR /w\nCOPY f /w/\nEXPOSE 80 443/udp\n"
                                      'CMD ["sh"]\n', "f": "f"})
    ok(docker_build(palletd, str(ctx), "-t", "hist"))
    rows = json.loads(palletd.api("GET", "/images/hist/history")[2]) \
        if hasattr(palletd, "api") else None
    out = palletd.docker("history", "--no-trunc", "--format", "{{.CreatedBy}}", "hist")
    lines = out.stdout.decode().splitlines()
    assert lines[:7] == [
        '/bin/sh -c #(nop)  CMD ["sh"]',
        "/bin/sh -c #(nop)  EXPOSE 443/udp 80",
        lines[2],
        "/bin/sh -c #(nop) WORKDIR /w",
        "|1 V=1 /bin/sh -c echo $V > /v",
        "/bin/sh -c #(nop)  LABEL a=b",
        "/bin/sh -c #(nop)  ARG V=1"]
    assert re.fullmatch(r"/bin/sh -c #\(nop\) COPY file:[0-9a-f]{64} in /w/ ", lines[2])
    info = inspect_image(palletd, "hist")
    # WORKDIR made /w: a layer; ARG, LABEL, EXPOSE, CMD: none
    assert len(info["RootFS"]["Layers"]) == 4
    assert info["Config"]["WorkingDir"] == "/w" and info["Config"]["Cmd"] == ["sh"]
    assert rows is None or rows


def test_targets_and_skipped_stages(palletd, ctx):
    write_context(ctx, {"Dockerfile": "FROM busybox AS base\nRUN echo base > /base\n"
                                      "FROM busybox AS broken\nRUN exit 9\n"
                                      "FROM base AS final\nCOPY --from=base /base /copied\n"
                                      "FROM busybox AS other\nRUN echo other > /o\n"})
    out = ok(docker_build(palletd, str(ctx), "--target", "final", "-t", "tgt"))
    assert "exit 9" not in out and "/o" not in out  # stages the target does not need
    assert run(palletd, "tgt", "cat", "/copied") == "base\n"
    r = docker_build(palletd, str(ctx), "--target", "nope")
    assert r.returncode == 1
    assert "failed to reach build target nope in Dockerfile" in r.stderr.decode()


def test_run_mounts(palletd, ctx):
    write_context(ctx, {"Dockerfile": """FROM busybox AS tools
RUN mkdir -p /opt/tool && echo tool > /opt/tool/t
FROM busybox
RUN --mount=type=cache,target=/cache,id=c1 sh -c 'echo x >> /cache/log; wc -l < /cache/log > /count'
RUN --mount=type=tmpfs,target=/scratch sh -c 'echo t > /scratch/f && cat /scratch/f > /tmpfs-seen'
RUN --mount=type=bind,source=data,target=/data cat /data/d > /bound
RUN --mount=type=bind,from=tools,source=/opt/tool,target=/t cat /t/t > /from-stage
RUN --mount=type=bind,source=data,target=/data,rw sh -c 'echo w > /data/d && cat /data/d > /rw'
RUN ls -d /cache /scratch /data /t 2>&1 > /stubs || true
""", "data/d": "data\n"})
    ok(docker_build(palletd, str(ctx), "-t", "mnt:1"))
    ok(docker_build(palletd, str(ctx), "--no-cache", "-t", "mnt:2"))
    # the cache directory outlived the first build
    assert run(palletd, "mnt:2", "cat", "/count").strip() == "2"
    assert run(palletd, "mnt:2", "cat", "/tmpfs-seen", "/bound", "/from-stage", "/rw") == \
        "t\ndata\ntool\nw\n"
    tree = image_tree(palletd, "mnt:2")
    # mount points are not part of the layers, and a rw bind changes nothing
    assert not any(k.split("/")[0] in ("cache", "scratch", "data", "t") for k in tree)
    assert (ctx / "data" / "d").read_text() == "data\n"


def test_heredocs(palletd, ctx):
    write_context(ctx, {"Dockerfile": """FROM busybox
ARG WHO=world
RUN <<EOF
echo "hello $WHO" > /hello
echo second >> /hello
EOF
RUN <<EOF
#!/bin/sh
echo "script $0" > /script
EOF
RUN cat <<EOT > /complex && echo done >> /complex
in complex
EOT
COPY <<EOF <<'RAW' /etc/
value ${WHO}
EOF
kept ${WHO}
RAW
COPY --chmod=755 <<-EOF /bin/hi
	#!/bin/sh
	echo hi
	EOF
"""})
    ok(docker_build(palletd, str(ctx), "-t", "here"))
    assert run(palletd, "here", "cat", "/hello") == "hello world\nsecond\n"
    assert run(palletd, "here", "cat", "/script") == "script /dev/pipes/EOF\n"
    assert run(palletd, "here", "cat", "/complex") == "in complex\ndone\n"
    assert run(palletd, "here", "cat", "/etc/EOF", "/etc/RAW") == "value world\nkept ${WHO}\n"
    assert run(palletd, "here", "hi") == "hi\n"
    tree = image_tree(palletd, "here")
    assert tree["etc/EOF"][1:4] == (0o644, 0, 0) and tree["bin/hi"][1] == 0o755


def test_copy_options(palletd, ctx):
    write_context(ctx, {"Dockerfile": "FROM busybox\nCOPY --chown=1:2 --chmod=600 f /o/f\n"
                                      "COPY --link d /linked/\nCOPY --chown=nobody d/ /n/\n"
                                      "ADD arch.tgz /x/\nCOPY * /all/\n",
                        "f": "f", "d/a": "a", "d/s/b": ("b", 0o700), "arch.tgz": _tgz()})
    ok(docker_build(palletd, str(ctx), "-t", "copyopts"))
    tree = image_tree(palletd, "copyopts")
    assert tree["o/f"][1:4] == (0o600, 1, 2)
    assert tree["linked/a"][4] == b"a" and tree["linked/s/b"][1] == 0o700
    assert tree["n/a"][2] == 65534 and tree["n"][2] == 65534
    assert tree["x/t/one"][1:4] == (0o640, 42, 0) and tree["x/t/ln"][4] == ("link", "one")
    assert "all/f" in tree and "all/a" in tree and "all/arch.tgz" in tree
    # --link's layer does not depend on what is below it
    write_context(ctx, {"Dockerfile": "FROM busybox\nRUN echo other > /other\n"
                                      "COPY --link d /linked/\n"})
    ok(docker_build(palletd, str(ctx), "-t", "copyopts2"))
    a = inspect_image(palletd, "copyopts")["RootFS"]["Layers"]
    b = inspect_image(palletd, "copyopts2")["RootFS"]["Layers"]
    assert a[2] == b[2]


def _tgz() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        ti = tarfile.TarInfo("t/one")
        ti.size, ti.uid, ti.mode = 1, 42, 0o640
        tf.addfile(ti, io.BytesIO(b"1"))
        ti = tarfile.TarInfo("t/ln")
        ti.type, ti.linkname = tarfile.SYMTYPE, "one"
        tf.addfile(ti)
    return buf.getvalue()


@pytest.fixture
def web(tmp_path):
    """A local HTTP server of ``tmp_path/www`` (ADD URLs, remote contexts)."""
    root = tmp_path / "www"
    root.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(root), **kw)

        def log_message(self, *a):
            pass
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_add_url_and_remote_contexts(palletd, ctx, web):
    root, url = web
    (root / "file.bin").write_bytes(b"downloaded")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in (("Dockerfile", b"FROM busybox\nCOPY in.txt /in.txt\n"),
                           ("in.txt", b"from a remote tarball\n")):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    (root / "ctx.tar.gz").write_bytes(gzip.compress(buf.getvalue()))
    (root / "Dockerfile").write_text("FROM busybox\nRUN echo plain > /plain\n")
    write_context(ctx, {"Dockerfile": f"FROM busybox\nADD {url}/file.bin /dl/\n"})
    ok(docker_build(palletd, str(ctx), "-t", "addurl"))
    assert image_tree(palletd, "addurl")["dl/file.bin"][1:] == (0o600, 0, 0, b"downloaded")
    ok(docker_build(palletd, f"{url}/ctx.tar.gz", "-t", "remote1"))
    assert run(palletd, "remote1", "cat", "/in.txt") == "from a remote tarball\n"
    ok(docker_build(palletd, f"{url}/Dockerfile", "-t", "remote2"))
    assert run(palletd, "remote2", "cat", "/plain") == "plain\n"
    r = docker_build(palletd, f"{url}/missing.tar", "-t", "remote3")
    assert r.returncode != 0 and "404" in r.stderr.decode()


def test_stdin_subdir_and_dockerignore(palletd, ctx):
    write_context(ctx, {"build/Dockerfile.dev": "FROM busybox\nCOPY . /ctx\nRUN ls -aR /ctx\n",
                        ".dockerignore": "*.log\n!keep.log\nbuild\nsecret/\n",
                        "a.log": "no", "keep.log": "yes", "secret/key": "k", "app/x": "x"})
    out = ok(docker_build(palletd, str(ctx), "-f", str(ctx / "build" / "Dockerfile.dev"),
                          "-t", "ign"))
    tree = image_tree(palletd, "ign")
    files = sorted(k for k in tree if k.startswith("ctx/"))
    # .dockerignore excluded the Dockerfile's directory: the CLI sends it all the same
    # and the daemon drops it (its directory stays), as with dockerd
    assert files == ["ctx/.dockerignore", "ctx/app", "ctx/app/x", "ctx/build",
                     "ctx/keep.log"], out
    r = docker_build(palletd, "-", input=b"FROM busybox\nRUN echo stdin > /s\n")
    ok(r)
    r = docker_build(palletd, str(ctx), "-f", "-", "-t", "stdindf",
                     input=b"FROM busybox\nCOPY keep.log /k\n")
    ok(r)
    assert run(palletd, "stdindf", "cat", "/k") == "yes"


def test_quiet_and_iidfile(palletd, ctx, tmp_path):
    write_context(ctx, {"Dockerfile": "FROM busybox\nRUN echo quiet\n"})
    iid = tmp_path / "iid"
    r = docker_build(palletd, str(ctx), "-q", "--iidfile", str(iid))
    out = ok(r)
    assert out == iid.read_text() and out.startswith("sha256:")
    assert "quiet" not in out


@pytest.mark.parametrize("dockerfile,code,message", [
    ("FROM busybox\nRUN true\nFOO bar\n", 1,
     "dockerfile parse error line 3: unknown instruction: FOO"),
    ("FROM busybox\nRUN exit 3\n", 3, "The command '/bin/sh -c exit 3' returned a non-zero "
     "code: 3"),
    ("FROM busybox\nCOPY nope /x\n", 1, "COPY failed: file not found in build context or "
     "excluded by .dockerignore: stat nope: file does not exist"),
    ("FROM busybox\nCOPY ../../etc/passwd /x\n", 1, "COPY failed: file not found in build "
     "context or excluded by .dockerignore: stat ../../etc/passwd: file does not exist"),
    ("FROM busybox\nCOPY a b /x\n", 1, "When using COPY with more than one source file, the "
     "destination must be a directory and end with a /"),
    ("FROM busybox\nARG X\nWORKDIR ${X:?must be set}\n", 1,
     'failed to process "${X:?must be set}": X: must be set'),
    ("FROM scratch\n", 1, "No image was generated. Is your Dockerfile empty?"),
])
def test_errors(palletd, ctx, dockerfile, code, message):
    write_context(ctx, {"Dockerfile": dockerfile, "a": "a", "b": "b"})
    r = docker_build(palletd, str(ctx))
    assert r.returncode == code, text(r)
    assert message in r.stderr.decode(), text(r)


def test_build_args(palletd, ctx):
    write_context(ctx, {"Dockerfile": "ARG BASE=busybox\nFROM $BASE\nARG A=default\nARG B\n"
                                      "ENV E=$A\nRUN echo $A $B $http_proxy > /args\n"})
    r = docker_build(palletd, str(ctx), "--build-arg", "B=given", "--build-arg", "UNUSED=1",
                     "--build-arg", "http_proxy=http://proxy", "-t", "args")
    out = ok(r)
    assert "[Warning] One or more build-args [UNUSED] were not consumed" in out
    assert run(palletd, "args", "cat", "/args") == "default given http://proxy\n"
    history = palletd.docker("history", "--no-trunc", "--format", "{{.CreatedBy}}", "args")
    # the proxy argument is in the step's environment, not in its cache key or history
    assert "|2 A=default B=given /bin/sh -c echo $A $B $http_proxy > /args" in \
        history.stdout.decode()


def test_failed_step_container_is_kept_unless_forcerm(palletd, ctx):
    write_context(ctx, {"Dockerfile": "FROM busybox\nRUN echo partial > /p && exit 1\n"})
    before = set(palletd.docker("ps", "-aq").stdout.decode().split())
    docker_build(palletd, str(ctx))
    kept = set(palletd.docker("ps", "-aq").stdout.decode().split()) - before
    assert len(kept) == 1  # as dockerd: for a look at what failed
    docker_build(palletd, str(ctx), "--force-rm")
    assert set(palletd.docker("ps", "-aq").stdout.decode().split()) - before == kept
    palletd.docker("rm", *kept)


def test_builder_prune(palletd, ctx):
    write_context(ctx, {"Dockerfile": "FROM busybox\nRUN echo prune > /p\n"})
    ok(docker_build(palletd, str(ctx)))
    r = palletd.docker("builder", "prune", "-f", check=False)
    assert r.returncode == 0 and "Total reclaimed space" in r.stdout.decode()
    again = ok(docker_build(palletd, str(ctx)))
    assert steps_cached(again) == [False]


def test_step_container_options(palletd, ctx):
    write_context(ctx, {"Dockerfile": """FROM busybox
RUN grep -q 'myhost' /etc/hosts && echo hosts-ok > /hosts
RUN ip link | grep -c '^[0-9]' > /links
RUN --network=host ip link | grep -c '^[0-9]' > /host-links
RUN df -k /dev/shm | tail -1 | awk '{print $2}' > /shm
RUN cat /sys/fs/cgroup/memory.max 2>/dev/null > /mem || cat /sys/fs/cgroup/memory/memory.limit_in_bytes > /mem
"""})
    r = docker_build(palletd, str(ctx), "--add-host", "myhost:10.1.2.3", "--network", "none",
                     "--shm-size", "32m", "-m", "64m", "--platform", "linux/amd64",
                     "-t", "opts")
    ok(r)
    assert run(palletd, "opts", "cat", "/hosts") == "hosts-ok\n"
    assert run(palletd, "opts", "cat", "/links") == "1\n"  # only lo with --network none
    assert int(run(palletd, "opts", "cat", "/host-links")) > 1
    assert run(palletd, "opts", "cat", "/shm") == "32768\n"
    assert run(palletd, "opts", "cat", "/mem") == str(64 << 20) + "\n"
    r = docker_build(palletd, str(ctx), "--platform", "linux/s390x")
    assert r.returncode == 1 and "linux/s390x" in r.stderr.decode()
