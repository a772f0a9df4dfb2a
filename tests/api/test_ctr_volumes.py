"""Volumes: the API (create, ls, inspect, rm, prune), data that outlives its
container, named volumes filled from the image at first mount, anonymous
volumes from the image's VOLUME, -v and --mount binds (ro, propagation),
tmpfs; the docker CLI and docker-py."""
from __future__ import annotations

import json
import os

import pytest

from ctr_helpers import derived_image, inspect, out, start_palletd

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def d(busybox_tar, tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("palletd needs root")
    daemon = start_palletd(busybox_tar)
    try:
        img = derived_image(busybox_tar, str(tmp_path_factory.mktemp("img") / "vol.tar"),
                            "pa-voltest:latest", volumes=["/vol"], files={
                                "/vol": (None, 1000, 0o750),
                                "/vol/seed.txt": (b"seeded\n", 1000, 0o640),
                                "/app": (None, 0, 0o755),
                                "/app/conf": (b"conf\n", 0, 0o644)})
        daemon.docker("load", "-i", img)
        yield daemon
    finally:
        daemon.cleanup()


def test_volume_api(d):
    assert out(d.docker("volume", "create", "--label", "k=v", "pa-v1")) == "pa-v1"
    info = json.loads(d.docker("volume", "inspect", "pa-v1").stdout)[0]
    assert info["Driver"] == "local" and info["Labels"] == {"k": "v"}
    assert info["Mountpoint"].endswith("/pa-v1/_data") and os.path.isdir(info["Mountpoint"])
    assert info["Scope"] == "local" and info["CreatedAt"]
    assert "pa-v1" in out(d.docker("volume", "ls", "-q")).split()
    assert out(d.docker("volume", "ls", "-q", "--filter", "label=k=v")) == "pa-v1"
    assert out(d.docker("volume", "ls", "-q", "--filter", "dangling=true")).split().count(
        "pa-v1") == 1
    r = d.docker("volume", "create", "bad/name", check=False)
    assert r.returncode != 0 and b"invalid characters" in r.stderr
    r = d.docker("volume", "inspect", "pa-none", check=False)
    assert r.returncode != 0 and b"no such volume" in r.stderr.lower()
    cid = out(d.docker("create", "-v", "pa-v1:/data", "busybox", "true"))
    r = d.docker("volume", "rm", "pa-v1", check=False)
    assert r.returncode != 0 and b"volume is in use" in r.stderr
    assert d.api("DELETE", "/v1.43/volumes/pa-v1")[0] == 409
    d.docker("rm", cid)
    d.docker("volume", "rm", "pa-v1")
    assert not os.path.exists(info["Mountpoint"])


def test_data_survives_container(d):
    d.docker("run", "--rm", "-v", "pa-keep:/data", "busybox", "sh", "-c",
             "echo kept > /data/file")
    assert d.docker("run", "--rm", "-v", "pa-keep:/data", "busybox",
                    "cat", "/data/file").stdout == b"kept\n"
    cid = out(d.docker("run", "-d", "-v", "pa-keep:/data:ro", "busybox", "sleep", "300"))
    r = d.docker("exec", cid, "sh", "-c", "echo x > /data/other", check=False)
    assert r.returncode != 0
    mounts = inspect(d, cid)["Mounts"]
    assert mounts == [{"Type": "volume", "Name": "pa-keep", "Source": mounts[0]["Source"],
                       "Destination": "/data", "Driver": "local", "Mode": "ro", "RW": False,
                       "Propagation": ""}]
    d.docker("rm", "-fv", cid)  # -v leaves named volumes alone
    assert "pa-keep" in out(d.docker("volume", "ls", "-q")).split()
    d.docker("volume", "rm", "pa-keep")


def test_named_volume_copy_up(d):
    r = d.docker("run", "--rm", "-v", "pa-seed:/vol", "pa-voltest", "sh", "-c",
                 "cat /vol/seed.txt; stat -c '%u %a' /vol /vol/seed.txt")
    assert r.stdout == b"seeded\n1000 750\n1000 640\n"
    # copied once: what a container writes stays, the image does not come back
    d.docker("run", "--rm", "-v", "pa-seed:/vol", "busybox", "sh", "-c",
             "rm /vol/seed.txt; echo mine > /vol/own")
    r = d.docker("run", "--rm", "-v", "pa-seed:/vol", "pa-voltest", "ls", "/vol")
    assert r.stdout == b"own\n"
    # nocopy, and a bind never gets the image's content
    r = d.docker("run", "--rm", "-v", "pa-nocopy:/app:nocopy", "pa-voltest", "ls", "/app")
    assert r.stdout == b""
    r = d.docker("run", "--rm", "--mount", "type=volume,src=pa-copied,dst=/app", "pa-voltest",
                 "cat", "/app/conf")
    assert r.stdout == b"conf\n"
    d.docker("volume", "rm", "pa-seed", "pa-nocopy", "pa-copied")


def test_anonymous_volumes(d):
    cid = out(d.docker("create", "pa-voltest", "cat", "/vol/seed.txt"))
    m = inspect(d, cid)["Mounts"]
    assert len(m) == 1 and m[0]["Destination"] == "/vol" and len(m[0]["Name"]) == 64
    anon = m[0]["Name"]
    info = json.loads(d.docker("volume", "inspect", anon).stdout)[0]
    assert "com.docker.volume.anonymous" in info["Labels"]
    d.docker("start", "-a", cid)
    assert d.docker("logs", cid).stdout == b"seeded\n"
    d.docker("rm", "-v", cid)
    assert anon not in out(d.docker("volume", "ls", "-q")).split()
    # --rm takes the anonymous volumes (-v /path) with it
    before = set(out(d.docker("volume", "ls", "-q")).split())
    d.docker("run", "--rm", "-v", "/scratch", "busybox", "touch", "/scratch/x")
    assert set(out(d.docker("volume", "ls", "-q")).split()) == before
    # prune: anonymous ones only, unless --all
    d.docker("volume", "create", "pa-named")
    cid = out(d.docker("create", "-v", "/scratch", "busybox", "true"))
    anon = inspect(d, cid)["Mounts"][0]["Name"]
    d.docker("rm", cid)
    r = d.docker("volume", "prune", "-f")
    assert anon.encode() in r.stdout
    names = out(d.docker("volume", "ls", "-q")).split()
    assert anon not in names and "pa-named" in names
    d.docker("volume", "prune", "-af")
    assert "pa-named" not in out(d.docker("volume", "ls", "-q")).split()


def test_binds_and_tmpfs(d, tmp_path):
    host = tmp_path / "shared"
    host.mkdir()
    (host / "in.txt").write_text("from host\n")
    r = d.docker("run", "--rm", "-v", f"{host}:/mnt/h", "busybox", "sh", "-c",
                 "cat /mnt/h/in.txt; echo back > /mnt/h/out.txt")
    assert r.stdout == b"from host\n" and (host / "out.txt").read_text() == "back\n"
    r = d.docker("run", "--rm", "--mount", f"type=bind,src={host},dst=/mnt/h,readonly",
                 "busybox", "sh", "-c", "touch /mnt/h/no 2>&1; cat /mnt/h/in.txt")
    assert b"Read-only file system" in r.stdout and r.stdout.endswith(b"from host\n")
    missing = tmp_path / "made-by-v"
    d.docker("run", "--rm", "-v", f"{missing}:/m", "busybox", "true")
    assert missing.is_dir()
    r = d.docker("run", "--rm", "--mount", f"type=bind,src={tmp_path}/absent,dst=/m",
                 "busybox", "true", check=False)
    assert r.returncode != 0 and b"bind source path does not exist" in r.stderr
    cid = out(d.docker("create", "-v", f"{host}:/mnt/h:ro,rslave", "busybox", "true"))
    m = inspect(d, cid)["Mounts"][0]
    assert (m["Type"], m["Mode"], m["RW"], m["Propagation"]) == ("bind", "ro,rslave", False,
                                                                 "rslave")
    d.docker("rm", cid)
    r = d.docker("run", "--rm", "--tmpfs", "/run/t:size=1m,mode=1700", "--mount",
                 "type=tmpfs,dst=/t2,tmpfs-size=2097152", "busybox", "sh", "-c",
                 "grep -E ' /run/t | /t2 ' /proc/mounts")
    lines = r.stdout.decode().splitlines()
    assert any("/run/t tmpfs" in ln and "size=1024k" in ln and "mode=1700" in ln
               and "noexec" in ln for ln in lines), lines
    assert any("/t2 tmpfs" in ln and "size=2048k" in ln for ln in lines), lines
    r = d.docker("run", "--rm", "-v", "/x:/y:bogus", "busybox", "true", check=False)
    assert r.returncode != 0 and b"invalid" in r.stderr.lower()


def test_volumes_from(d):
    src = out(d.docker("run", "-d", "-v", "pa-from:/shared", "busybox", "sh", "-c",
                       "echo shared > /shared/f; sleep 300"))
    r = d.docker("run", "--rm", "--volumes-from", f"{src}:ro", "busybox", "sh", "-c",
                 "cat /shared/f; touch /shared/g 2>&1 || true")
    assert r.stdout.startswith(b"shared\n") and b"Read-only" in r.stdout
    d.docker("rm", "-f", src)
    d.docker("volume", "rm", "pa-from")


def test_dockerpy_volumes(d, tmp_path):
    client = d.client()
    try:
        v = client.volumes.create("pa-py", labels={"a": "b"})
        assert v.attrs["Labels"] == {"a": "b"}
        logs = client.containers.run("busybox", ["sh", "-c", "echo py > /d/f; cat /d/f"],
                                     volumes={"pa-py": {"bind": "/d", "mode": "rw"}},
                                     remove=True)
        assert logs == b"py\n"
        assert [x.name for x in client.volumes.list(filters={"name": "pa-py"})] == ["pa-py"]
        v.remove()
        tv = client.volumes.create("pa-tmpfs", driver_opts={"type": "tmpfs",
                                                            "device": "tmpfs",
                                                            "o": "size=1m"})
        out_ = client.containers.run("busybox", ["sh", "-c", "grep ' /t ' /proc/mounts"],
                                     volumes={"pa-tmpfs": {"bind": "/t"}}, remove=True)
        assert b"tmpfs" in out_
        assert not os.path.ismount(tv.attrs["Mountpoint"])
        tv.remove()
        df = client.df()
        assert "Volumes" in df and "LayersSize" in df
    finally:
        client.close()
