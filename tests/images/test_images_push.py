"""docker push through palletd (the pallet CLI and the docker CLI) to Debian's
docker-registry, checked with skopeo; login, logout and ``POST /auth``."""
from __future__ import annotations

import base64
import json

import pytest

from images_helpers import USERS, skopeo

pytestmark = pytest.mark.root


def test_pallet_push_then_skopeo_inspect(palletd, registry):
    ref = f"{registry.host}/pushed/busybox:v1"
    palletd.pallet("tag", "busybox", ref)
    r = palletd.pallet("push", ref)
    lines = r.stdout.decode().splitlines()
    assert lines[0] == f"The push refers to repository [{registry.host}/pushed/busybox]"
    layer_lines = [x for x in lines if x.endswith(": Pushed") or x.endswith(": Mounted from "
                                                                             "lib/busybox")
                   or x.endswith(": Layer already exists")]
    assert layer_lines, lines
    last = lines[-1]
    assert last.startswith("v1: digest: sha256:") and " size: " in last, last
    digest = last.split()[2]
    info = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{ref}"))
    assert info["Digest"] == digest
    local = json.loads(palletd.docker("image", "inspect", "busybox").stdout)[0]
    assert info["Layers"] == local["RootFS"]["Layers"] or len(info["Layers"]) == 1
    raw = json.loads(skopeo("inspect", "--tls-verify=false", "--config", f"docker://{ref}"))
    assert raw["rootfs"]["diff_ids"] == local["RootFS"]["Layers"]
    # the image now knows its repository digest
    again = json.loads(palletd.docker("image", "inspect", ref).stdout)[0]
    assert f"{registry.host}/pushed/busybox@{digest}" in again["RepoDigests"]
    # pushed again: every layer is there already
    out = palletd.pallet("push", ref).stdout.decode()
    assert "Layer already exists" in out
    # and the docker CLI pulls it back under another name after an rmi
    palletd.docker("rmi", ref)
    assert palletd.docker("run", "--rm", ref, "echo", "back").stdout == b"back\n"
    palletd.docker("rmi", ref)


def test_docker_push_and_errors(palletd, registry):
    ref = f"{registry.host}/pushed/other:v2"
    palletd.docker("tag", "busybox", ref)
    r = palletd.docker("push", ref)
    assert b"v2: digest: sha256:" in r.stdout
    skopeo("inspect", "--tls-verify=false", f"docker://{ref}")
    palletd.docker("rmi", ref)
    # not here
    r = palletd.docker("push", f"{registry.host}/pushed/none:v1", check=False)
    assert r.returncode == 1
    assert b"An image does not exist locally with the tag" in r.stderr
    r = palletd.pallet("push", f"{registry.host}/pushed/none:v1", check=False)
    assert r.returncode == 1
    assert b"An image does not exist locally with the tag" in r.stderr
    # every tag of a repository
    for tag in ("a", "b"):
        palletd.pallet("tag", "busybox", f"{registry.host}/pushed/multi:{tag}")
    palletd.pallet("push", "-a", f"{registry.host}/pushed/multi")
    tags = json.loads(skopeo("list-tags", "--tls-verify=false",
                             f"docker://{registry.host}/pushed/multi"))["Tags"]
    assert sorted(tags) == ["a", "b"]
    palletd.pallet("rmi", f"{registry.host}/pushed/multi:a", f"{registry.host}/pushed/multi:b")


def test_login_logout_and_auth(palletd, auth_registry):
    host = auth_registry.host
    user, pw = next(iter(USERS.items()))
    # POST /auth with wrong credentials: refused, as dockerd does
    status, _, body = palletd.api("POST", "/v1.43/auth", {"username": user, "password": "no",
                                                          "serveraddress": host})
    assert status == 401, body
    assert b"401 Unauthorized" in body
    status, _, body = palletd.api("POST", "/v1.43/auth", {"username": user, "password": pw,
                                                          "serveraddress": host})
    assert status == 200
    assert json.loads(body) == {"Status": "Login Succeeded", "IdentityToken": ""}
    status, _, body = palletd.api("POST", "/v1.43/auth", raw=b"[1]")
    assert status == 400
    # pallet login: docker's config.json
    r = palletd.pallet("login", "-u", user, "--password-stdin", host, input=pw.encode() + b"\n")
    assert r.stdout == b"Login Succeeded\n"
    cfg = json.load(open(palletd.config_dir + "/config.json"))
    assert base64.b64decode(cfg["auths"][host]["auth"]).decode() == f"{user}:{pw}"
    r = palletd.pallet("login", "-u", user, "--password-stdin", host, input=b"wrong\n",
                       check=False)
    assert r.returncode == 1
    assert b"Error response from daemon: login attempt to" in r.stderr
    assert b"401 Unauthorized" in r.stderr
    r = palletd.pallet("login", "--password-stdin", host, input=b"x", check=False)
    assert r.returncode == 1 and b"Must provide --username with --password-stdin" in r.stderr
    # push with the stored credentials, then the docker CLI reads them as well
    ref = f"{host}/private/mine:v1"
    palletd.pallet("tag", "busybox", ref)
    assert b"v1: digest:" in palletd.pallet("push", ref).stdout
    palletd.pallet("rmi", ref)
    assert palletd.docker("pull", "-q", ref).stdout.decode().strip() == ref
    palletd.docker("rmi", ref)
    assert palletd.pallet("logout", host).stdout.decode() == \
        f"Removing login credentials for {host}\n"
    assert host not in json.load(open(palletd.config_dir + "/config.json")).get("auths", {})
    assert palletd.pallet("logout", host).stdout.decode() == f"Not logged in to {host}\n"
    r = palletd.pallet("push", ref, check=False)
    assert r.returncode == 1
