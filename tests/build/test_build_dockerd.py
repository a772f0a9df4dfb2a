"""The same Dockerfiles built by palletd and by Debian's dockerd 20.10
(``DOCKER_BUILDKIT=0``) with the same docker CLI: the image configs, the
files of the final images (content, mode, owner, symlinks, deletions across
layers), the layers and the history entries agree, and so do the errors."""
from __future__ import annotations

import io
import tarfile

import pytest

from build_helpers import docker_build, image_tree, inspect_image, write_context

CONFIG_KEYS = ("Cmd", "Entrypoint", "Env", "WorkingDir", "User", "ExposedPorts", "Volumes",
               "Labels", "Healthcheck", "StopSignal", "OnBuild", "Shell")


def _tgz() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in (("t/one", b"1"), ("t/two", b"22")):
            ti = tarfile.TarInfo(name)
            ti.size, ti.uid, ti.mode, ti.mtime = len(data), 42, 0o640, 1_000_000
            tf.addfile(ti, io.BytesIO(data))
        ti = tarfile.TarInfo("t/ln")
        ti.type, ti.linkname = tarfile.SYMTYPE, "one"
        tf.addfile(ti)
    return buf.getvalue()


FILES = {"file.txt": "hello\n", "dir/a": ("aaa", 0o600), "dir/sub/b": "bbb",
         "dir/link": ("link", "a"), "script.sh": ("#!/bin/sh\necho hi\n", 0o755),
         "t.tgz": _tgz(), "lnk": ("link", "dir/sub/b")}

DOCKERFILES = {
    "every-instruction": """FROM busybox
LABEL a=b "c d"=e
MAINTAINER someone <x@y>
ENV PATH=/usr/local/bin:$PATH X="x y"
ARG V=1
RUN echo $V > /v && rm -rf /home && mkdir -p /opt/x && touch /opt/x/f && chmod 640 /opt/x/f
COPY file.txt /app/
COPY dir /app/dir/
COPY --chown=1000:100 dir/sub /sub
ADD script.sh /usr/local/bin/
WORKDIR /work/here
USER 1000
EXPOSE 80 443/udp
VOLUME /data /logs
HEALTHCHECK --interval=5s --retries=3 CMD echo ok
STOPSIGNAL SIGINT
ONBUILD RUN echo onbuild
SHELL ["/bin/sh", "-xc"]
ENTRYPOINT ["/bin/sh"]
CMD ["-c", "echo hi"]
""",
    "multi-stage": """ARG BASE=busybox
FROM $BASE AS builder
ARG BASE
RUN mkdir -p /out && echo built-from-$BASE > /out/result && ln -s result /out/link
FROM busybox
COPY --from=builder /out /copied
COPY --from=0 /out/result /single
RUN rm /bin/sed && rm -rf /var/spool && echo changed >> /etc/passwd
ADD t.tgz /extracted/
ADD t.tgz /notextracted.tgz
COPY lnk /lnk-copy
COPY dir/ /d/
RUN rm /d/sub/b && mkdir /d/new && rm -r /extracted/t && mkdir /extracted/t \\
    && echo again > /extracted/t/one
""",
    "no-change-and-workdir": """FROM busybox
RUN true
WORKDIR /tmp
WORKDIR new/dir
RUN touch /tmp/new/dir/f
ENTRYPOINT echo shell form
""",
}


def _compare(palletd, dockerd, ctx, tag):
    got = {}
    for e in (palletd, dockerd):
        r = docker_build(e, str(ctx), "-t", tag)
        assert r.returncode == 0, (e.name, r.stdout.decode() + r.stderr.decode())
        history = e.docker("history", "--no-trunc", "--format", "{{.CreatedBy}}", tag)
        got[e.name] = (inspect_image(e, tag), image_tree(e, tag),
                       history.stdout.decode().splitlines())
    (pi, pt, ph), (di, dt, dh) = got["pallet"], got["docker"]
    for key in CONFIG_KEYS:
        assert pi["Config"].get(key) == di["Config"].get(key), key
    assert len(pi["RootFS"]["Layers"]) == len(di["RootFS"]["Layers"])
    assert ph == dh
    assert pt == dt


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_same_image_as_dockerd(palletd, dockerd, ctx, name):
    write_context(ctx, {"Dockerfile": DOCKERFILES[name], **FILES})
    _compare(palletd, dockerd, ctx, name)


def test_onbuild_triggers_as_dockerd(palletd, dockerd, ctx, tmp_path):
    write_context(ctx, {"Dockerfile": "FROM busybox\nONBUILD RUN echo triggered > /trig\n"
                                      "ONBUILD ENV TRIG=1\n"})
    for e in (palletd, dockerd):
        assert docker_build(e, str(ctx), "-t", "onbuild-base").returncode == 0
    child = tmp_path / "child"
    write_context(child, {"Dockerfile": "FROM onbuild-base\nRUN cat /trig\n"})
    _compare(palletd, dockerd, child, "onbuild-child")


def test_dockerignore_as_dockerd(palletd, dockerd, ctx):
    write_context(ctx, {"build/Dockerfile.dev": "FROM busybox\nCOPY . /ctx\n",
                        ".dockerignore": "*.log\n!keep.log\nbuild\nsecret/\n",
                        "a.log": "no", "keep.log": "yes", "secret/key": "k", "app/x": "x"})
    got = []
    for e in (palletd, dockerd):
        r = docker_build(e, str(ctx), "-f", str(ctx / "build" / "Dockerfile.dev"), "-t", "ign")
        assert r.returncode == 0, r.stderr.decode()
        got.append(image_tree(e, "ign"))
    assert got[0] == got[1]


ERRORS = {
    "unknown": "FROM busybox\nRUN true\nFOO bar\n",
    "runfail": "FROM busybox\nRUN exit 3\n",
    "nocopy": "FROM busybox\nCOPY nope /x\n",
    "wildcard": "FROM busybox\nCOPY *.nope /x/\n",
    "multi-dest": "FROM busybox\nCOPY file.txt dir/a /x\n",
    "empty": "",
    "comments-only": "# only a comment\n",
    "chown": "FROM busybox\nCOPY --chown=nobody:nogroup file.txt /x\n",
    "parse": "FROM busybox\nENV\n",
    "escape": "# escape=x\nFROM busybox\n",
    "stopsignal": "FROM busybox\nSTOPSIGNAL SIGFOO\n",
    "expose": "FROM busybox\nEXPOSE 80/xyz\n",
    "workdir-file": "FROM busybox\nWORKDIR /bin/sh\n",
    "scratch": "FROM scratch\n",
    "stage-name": "FROM busybox AS 1x\n",
}


def _last_lines(r) -> tuple:
    lines = [ln for ln in r.stderr.decode().splitlines()
             if ln.strip() and "legacy builder" not in ln and "BuildKit" not in ln
             and "environment-variable" not in ln and "buildx" not in ln]
    return r.returncode, lines[-1:]


@pytest.mark.parametrize("name", sorted(ERRORS))
def test_errors_as_dockerd(palletd, dockerd, ctx, name):
    write_context(ctx, {"Dockerfile": ERRORS[name], **FILES})
    p, d = (_last_lines(docker_build(e, str(ctx))) for e in (palletd, dockerd))
    assert p == d


def test_target_missing_as_dockerd(palletd, dockerd, ctx):
    write_context(ctx, {"Dockerfile": "FROM busybox AS a\nRUN true\n"})
    p, d = (_last_lines(docker_build(e, str(ctx), "--target", "nope"))
            for e in (palletd, dockerd))
    assert p == d
