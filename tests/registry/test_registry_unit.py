"""Pure logic of the registry client: references, challenges, credentials,
progress bars, platforms, insecure hosts, manifest types."""
from __future__ import annotations

import base64
import json
import os

import pytest

from pallet.core.errors import InvalidArgument, NotFound
from pallet.distribution.reference import Reference
from pallet.distribution import auth, progress
from pallet.distribution.mediatypes import MT_OCI_MANIFEST
from pallet.distribution.platforms import Platform, host_platform, parse_platform, select_manifest
from pallet.distribution.pull import image_name
from pallet.distribution.registry import RegistryOptions, detect_manifest_type, registry_error_text


@pytest.mark.parametrize("text,want", [
    ("busybox", "docker.io/library/busybox:latest"),
    ("library/busybox:1.36", "docker.io/library/busybox:1.36"),
    ("user/app", "docker.io/user/app:latest"),
    ("localhost/app", "localhost/app:latest"),
    ("localhost:5000/a/b:t", "localhost:5000/a/b:t"),
    ("127.0.0.1:5000/app", "127.0.0.1:5000/app:latest"),
    ("index.docker.io/library/x", "docker.io/library/x:latest"),
    ("ghcr.io/o/r@sha256:" + "a" * 64, "ghcr.io/o/r@sha256:" + "a" * 64),
])
def test_references_normalise_as_docker_does(text, want):
    assert str(Reference.parse(text)) == want


@pytest.mark.parametrize("text,msg", [
    ("UPPER", "must be lowercase"),
    ("a" * 64, "cannot specify 64-byte hexadecimal strings"),
    ("bad//name", "invalid reference format"),
    ("name:", "invalid reference format"),
    ("", "invalid reference format"),
])
def test_invalid_references_get_dockers_message(text, msg):
    with pytest.raises(InvalidArgument, match=msg):
        Reference.parse(text)


def test_image_name_of_digest_and_tag_pulls():
    assert image_name(Reference.parse("busybox")) == "docker.io/library/busybox:latest"
    d = "sha256:" + "b" * 64
    assert image_name(Reference.parse(f"h:1/x@{d}")) == f"h:1/x@{d}"


def test_parse_challenges():
    got = auth.parse_challenges(
        'Bearer realm="https://auth.example/token",service="registry.example",'
        'scope="repository:a/b:pull,push"')
    assert got == [("bearer", {"realm": "https://auth.example/token",
                               "service": "registry.example",
                               "scope": "repository:a/b:pull,push"})]
    assert auth.parse_challenges('Basic realm="x"') == [("basic", {"realm": "x"})]
    a = auth.Authenticator()
    assert a.learn("h", ['Basic realm="r"', 'Bearer realm="https://t/",service=s'])[0] == \
        "bearer"
    assert a.learn("g", ["Negotiate"]) is None


def test_config_json_round_trip(tmp_path):
    path = str(tmp_path / "d" / "config.json")
    f = auth.AuthConfigFile(path)
    assert f.get("127.0.0.1:5000") is None
    f.store("127.0.0.1:5000", auth.Credentials("alice", "pw:with:colons"))
    f.store("docker.io", auth.Credentials("bob", "x"))
    doc = json.load(open(path))
    assert doc["auths"]["127.0.0.1:5000"]["auth"] == \
        base64.b64encode(b"alice:pw:with:colons").decode()
    assert "https://index.docker.io/v1/" in doc["auths"]
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert f.get("127.0.0.1:5000") == auth.Credentials("alice", "pw:with:colons")
    assert f.get("docker.io").username == "bob"
    # other keys of the file are kept
    doc["psFormat"] = "table {{.ID}}"
    json.dump(doc, open(path, "w"))
    assert f.erase("127.0.0.1:5000") and not f.erase("127.0.0.1:5000")
    assert json.load(open(path))["psFormat"] == "table {{.ID}}"


def test_registry_auth_header_forms():
    creds = auth.Credentials("u", "p")
    value = auth.encode_registry_auth(creds, "h:1")
    assert auth.decode_registry_auth(value) == creds
    std = base64.b64encode(json.dumps({"username": "u", "password": "p"}).encode()).decode()
    assert auth.decode_registry_auth(std) == creds
    assert auth.decode_registry_auth("") is None
    assert auth.decode_registry_auth("e30=") is None  # {} : anonymous
    assert auth.decode_registry_auth("!!not base64!!") is None
    assert auth.normalize_server("https://index.docker.io/v1/") == "docker.io"
    assert auth.normalize_server("http://127.0.0.1:5000/v2/") == "127.0.0.1:5000"
    host, c = auth.auth_config_from_body({"username": "u", "password": "p",
                                          "serveraddress": "localhost:5000"})
    assert host == "localhost:5000" and c == creds


def test_progress_bar_matches_docker():
    bar = progress.progress_bar(1048576, 2140160)
    assert bar == "[========================>                          ]  1.049MB/2.14MB"
    assert progress.progress_bar(5, 5).startswith("[" + "=" * 50 + ">]")
    msg = progress.message("Downloading", "448c88307b72", 1, 2)
    assert msg["progressDetail"] == {"current": 1, "total": 2} and msg["id"] == "448c88307b72"
    assert progress.message("Pull complete", "x") == {"status": "Pull complete",
                                                      "progressDetail": {}, "id": "x"}


def test_platforms():
    assert parse_platform("linux/arm64") == Platform("linux", "arm64", "v8")
    assert parse_platform("linux/arm/v7") == Platform("linux", "arm", "v7")
    assert parse_platform("amd64").architecture == "amd64"
    with pytest.raises(InvalidArgument):
        parse_platform("a/b/c/d")
    m = MT_OCI_MANIFEST

    def entry(n, **platform):
        return {"mediaType": m, "digest": "sha256:" + str(n) * 64, "size": 1,
                **({"platform": platform} if platform else {})}
    index = {"manifests": [entry(1, os="linux", architecture="arm", variant="v6"),
                           entry(2, os="linux", architecture="arm", variant="v7"),
                           entry(3, os="linux", architecture="amd64"),
                           entry(4, os="linux", architecture="arm64"),
                           entry(5, os="linux", architecture="arm64", variant="v8")]}
    assert select_manifest(index, Platform("linux", "arm", "v7"), "x")["digest"] == \
        "sha256:" + "2" * 64
    assert select_manifest(index, Platform("linux", "amd64"), "x")["digest"] == \
        "sha256:" + "3" * 64
    # the same variant wins over a missing one; a dict platform works as well
    assert select_manifest(index, {"os": "linux", "architecture": "arm64",
                                   "variant": "v8"})["digest"] == "sha256:" + "5" * 64
    with pytest.raises(NotFound, match="no matching manifest for linux/s390x"):
        select_manifest(index, Platform("linux", "s390x"), "x")
    # entries of other types are not manifests; one without a platform fits any
    other = {"mediaType": "application/vnd.example+json", "digest": "sha256:" + "6" * 64,
             "size": 1, "platform": {"os": "linux", "architecture": "s390x"}}
    assert select_manifest({"manifests": [other, entry(7)]},
                           Platform("linux", "s390x"))["digest"] == "sha256:" + "7" * 64
    assert host_platform() == Platform.host().to_oci()


def test_insecure_hosts():
    opts = RegistryOptions.from_config({"insecure-registries": ["myreg:5000", "10.0.0.0/8"],
                                        "registry-mirrors": ["https://mirror.example"]})
    assert opts.is_insecure("localhost:5000") and opts.is_insecure("127.0.0.5:80")
    assert opts.is_insecure("[::1]:5000")
    assert opts.is_insecure("myreg:5000") and not opts.is_insecure("myreg:6000")
    assert opts.is_insecure("10.1.2.3:5000") and not opts.is_insecure("11.1.2.3")
    assert not opts.is_insecure("registry.example")
    assert opts.mirrors == ("https://mirror.example",)
    with pytest.raises(InvalidArgument):
        RegistryOptions.from_config({"registry-mirrors": ["ftp://x"]})
    with pytest.raises(InvalidArgument):
        RegistryOptions.from_config({"max-concurrent-downloads": 0})


def test_manifest_types_and_errors():
    assert detect_manifest_type(b'{"schemaVersion":1,"fsLayers":[]}') == \
        "application/vnd.docker.distribution.manifest.v1+prettyjws"
    assert detect_manifest_type(b'{"schemaVersion":2,"manifests":[]}') == \
        "application/vnd.oci.image.index.v1+json"
    assert detect_manifest_type(b'{"schemaVersion":2,"config":{}}', "text/plain") == \
        "application/vnd.oci.image.manifest.v1+json"
    body = b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}'
    assert registry_error_text(body) == "manifest unknown: manifest unknown"
