"""docker cp both ways (files, directories, running and stopped containers),
symlinks that try to leave the container, export and diff; the CLI and
docker-py's get_archive/put_archive."""
from __future__ import annotations

import base64
import io
import json
import os
import tarfile

import pytest

from ctr_helpers import out, wait_for

pytestmark = pytest.mark.root


def _until_exists(d, cid: str, path: str) -> None:
    """The container's command has made ``path`` (it runs after ``docker run -d``)."""
    wait_for(lambda: d.docker("exec", cid, "test", "-L", path, "-o", "-e", path,
                              check=False).returncode == 0)


def test_cp_both_ways(d, tmp_path):
    cid = out(d.docker("run", "-d", "busybox", "sh", "-c",
                       "mkdir -p /srv/tree/sub && echo one > /srv/tree/a && "
                       "echo two > /srv/tree/sub/b && chmod 0640 /srv/tree/a && "
                       "ln -sf a /srv/tree/link; sleep 300"))
    _until_exists(d, cid, "/srv/tree/link")
    d.docker("cp", f"{cid}:/srv/tree/a", str(tmp_path / "a"))
    assert (tmp_path / "a").read_text() == "one\n"
    assert oct((tmp_path / "a").stat().st_mode & 0o777) == oct(0o640)
    d.docker("cp", f"{cid}:/srv/tree", str(tmp_path / "tree"))
    assert (tmp_path / "tree" / "sub" / "b").read_text() == "two\n"
    assert os.readlink(tmp_path / "tree" / "link") == "a"
    d.docker("cp", f"{cid}:/srv/tree/.", str(tmp_path / "contents"))
    assert sorted(os.listdir(tmp_path / "contents")) == ["a", "link", "sub"]
    # host -> container: a file, a directory, into an existing directory
    src = tmp_path / "up"
    (src / "deep").mkdir(parents=True)
    (src / "deep" / "f.txt").write_text("uploaded\n")
    (src / "top.txt").write_text("top\n")
    d.docker("cp", str(src), f"{cid}:/srv/")
    assert d.docker("exec", cid, "cat", "/srv/up/deep/f.txt").stdout == b"uploaded\n"
    d.docker("cp", str(src / "top.txt"), f"{cid}:/srv/renamed.txt")
    assert d.docker("exec", cid, "cat", "/srv/renamed.txt").stdout == b"top\n"
    assert d.docker("exec", cid, "stat", "-c", "%u", "/srv/renamed.txt").stdout == b"0\n"
    # stdin/stdout tar streams
    r = d.docker("cp", f"{cid}:/srv/tree/sub", "-")
    names = tarfile.open(fileobj=io.BytesIO(r.stdout)).getnames()
    assert sorted(names) == ["sub", "sub/b"]
    r = d.docker("cp", f"{cid}:/nope", str(tmp_path / "x"), check=False)
    assert r.returncode != 0 and b"Could not find the file /nope" in r.stderr
    # a stopped container too, both ways
    d.docker("stop", "-t", "0", cid)
    d.docker("cp", str(src / "top.txt"), f"{cid}:/srv/while-stopped")
    d.docker("cp", f"{cid}:/srv/while-stopped", str(tmp_path / "back"))
    assert (tmp_path / "back").read_text() == "top\n"
    d.docker("start", cid)
    assert d.docker("exec", cid, "cat", "/srv/while-stopped").stdout == b"top\n"
    d.docker("rm", "-f", cid)


def test_cp_cannot_escape(d, tmp_path):
    secret = tmp_path / "host-secret"
    secret.write_text("host only\n")
    victim = tmp_path / "victim"
    victim.mkdir()
    cid = out(d.docker("run", "-d", "busybox", "sh", "-c",
                       f"ln -s {secret} /esc-file && ln -s {victim} /esc-dir && "
                       f"mkdir -p {victim} && "
                       "ln -s ../../../../.. /up && sleep 300"))
    _until_exists(d, cid, "/up")
    # reading through the links reaches only the container's own files
    r = d.docker("cp", f"{cid}:/esc-file/.", str(tmp_path / "o1"), check=False)
    assert r.returncode != 0
    d.docker("cp", f"{cid}:/up/etc/hostname", str(tmp_path / "o2"))
    assert (tmp_path / "o2").read_text().strip() == cid[:12]
    st = json.loads(base64.b64decode(d.api(
        "HEAD", f"/v1.43/containers/{cid}/archive?path=/esc-file")[1][
        "X-Docker-Container-Path-Stat"]))
    assert st["linkTarget"] == str(secret) and st["name"] == "esc-file"
    # writing through them lands inside the container
    (tmp_path / "payload").write_text("payload\n")
    d.docker("cp", str(tmp_path / "payload"), f"{cid}:/esc-dir/")
    assert os.listdir(victim) == []
    assert d.docker("exec", cid, "cat", f"{victim}/payload").stdout == b"payload\n"
    d.docker("cp", str(tmp_path / "payload"), f"{cid}:/up/tmp/")
    assert not os.path.exists("/tmp/payload") or open("/tmp/payload").read() != "payload\n"
    assert d.docker("exec", cid, "cat", "/tmp/payload").stdout == b"payload\n"
    # an archive whose entries climb out is refused
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        ti = tarfile.TarInfo("../../../../tmp/pa-evil")
        ti.size = 4
        tf.addfile(ti, io.BytesIO(b"evil"))
    status = d.api("PUT", f"/v1.43/containers/{cid}/archive?path=/tmp", raw=buf.getvalue(),
                   headers={"Content-Type": "application/x-tar"})[0]
    assert status == 400 and not os.path.exists("/tmp/pa-evil")
    assert d.api("PUT", f"/v1.43/containers/{cid}/archive?path=/etc/hostname", raw=b"x")[0] \
        == 400
    assert d.api("GET", f"/v1.43/containers/{cid}/archive")[0] == 400
    d.docker("rm", "-f", cid)


def test_read_only_rootfs_refuses_cp(d, tmp_path):
    cid = out(d.docker("run", "-d", "--read-only", "-v", "/data", "busybox", "sleep", "300"))
    (tmp_path / "f").write_text("x\n")
    r = d.docker("cp", str(tmp_path / "f"), f"{cid}:/tmp/", check=False)
    assert r.returncode != 0 and b"read-only" in r.stderr
    d.docker("cp", str(tmp_path / "f"), f"{cid}:/data/")  # a volume stays writable
    assert d.docker("exec", cid, "cat", "/data/f").stdout == b"x\n"
    d.docker("rm", "-fv", cid)


def test_export_and_diff(d, tmp_path):
    cid = out(d.docker("run", "-d", "busybox", "sh", "-c",
                       "rm /bin/vi && echo m >> /etc/passwd && echo new > /added && sleep 300"))
    _until_exists(d, cid, "/added")
    changes = dict(line.split(" ", 1)[::-1] for line in
                   d.docker("diff", cid).stdout.decode().splitlines())
    assert changes["/added"] == "A" and changes["/bin/vi"] == "D"
    assert changes["/etc/passwd"] == "C" and changes["/etc"] == "C"
    assert "/etc/hostname" not in changes
    d.docker("export", "-o", str(tmp_path / "fs.tar"), cid)
    names = set(tarfile.open(tmp_path / "fs.tar").getnames())
    assert {"added", "bin/sh", "etc/passwd"} <= names and "bin/vi" not in names
    assert not any(n.startswith(("proc/", "sys/")) for n in names)
    d.docker("rm", "-f", cid)


def test_dockerpy_archive(d):
    client = d.client()
    try:
        c = client.containers.run("busybox", ["sleep", "300"], detach=True)
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tf:
            ti = tarfile.TarInfo("hello.txt")
            ti.size = 6
            ti.uid = 1234
            tf.addfile(ti, io.BytesIO(b"hello\n"))
        assert c.put_archive("/tmp", buf.getvalue())
        bits, stat = c.get_archive("/tmp/hello.txt")
        data = b"".join(bits)
        member = tarfile.open(fileobj=io.BytesIO(data))
        assert member.extractfile("hello.txt").read() == b"hello\n"
        assert stat["name"] == "hello.txt" and stat["size"] == 6
        c.remove(force=True)
    finally:
        client.close()
