"""Registry look-ups without a pull, against Debian's docker-registry on
127.0.0.1 holding busybox (pushed with skopeo): ``GET
/distribution/{name}/json`` and ``GET /images/search``, palletd's answers
compared with dockerd 20.10's."""
from __future__ import annotations

import os
import shutil
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "registry"))
from registry_helpers import RegistryServer, skopeo_copy  # noqa: E402

from dockerd_helpers import message  # noqa: E402


@pytest.fixture(scope="module")
def registry(busybox_tar):
    if not (shutil.which("docker-registry") and shutil.which("skopeo")):
        pytest.skip("needs docker-registry and skopeo")
    base = tempfile.mkdtemp(prefix="pl-dr-")
    reg = RegistryServer(base)
    try:
        reg.start()
        skopeo_copy(f"docker-archive:{busybox_tar}", f"docker://{reg.host}/lib/busybox:latest")
        yield reg
    finally:
        reg.stop()
        shutil.rmtree(base, ignore_errors=True)


def test_distribution_inspect(palletd, registry):
    status, _, body = palletd.api("GET", f"/v1.43/distribution/{registry.host}/lib/busybox/json")
    assert status == 200, body
    import json
    info = json.loads(body)
    assert info["Descriptor"]["digest"].startswith("sha256:")
    assert info["Platforms"] == [{"architecture": "amd64", "os": "linux"}]
    status, _, body = palletd.api("GET", f"/v1.43/distribution/{registry.host}/lib/nope/json")
    assert status == 404 and "not found" in message(body)
    client = palletd.client()
    try:
        data = client.images.get_registry_data(f"{registry.host}/lib/busybox")
        assert data.id == info["Descriptor"]["digest"] and data.has_platform("linux/amd64")
    finally:
        client.close()


def test_distribution_inspect_matches_dockerd(palletd, dockerd, registry):
    for name in ("lib/busybox", "lib/busybox:latest"):
        path = f"/v1.41/distribution/{registry.host}/{name}/json"
        ours, theirs = palletd.api("GET", path), dockerd.api("GET", path)
        assert (ours[0], ours[2]) == (theirs[0], theirs[2]) or \
            (ours[0] == theirs[0] == 200 and __import__("json").loads(ours[2]) ==
             __import__("json").loads(theirs[2]))


def test_search_matches_dockerd(palletd, dockerd, registry):
    """Debian's registry serves no v1 search, and nothing listens on port 1:
    both daemons say so alike."""
    path = f"/v1.41/images/search?term={registry.host}/busybox"
    ours, theirs = palletd.api("GET", path), dockerd.api("GET", path)
    assert (ours[0], message(ours[2])) == (theirs[0], message(theirs[2])) == \
        (500, "Unexpected status code 404")
    path = "/v1.41/images/search?term=127.0.0.1:1/busybox"
    ours, theirs = palletd.api("GET", path), dockerd.api("GET", path)
    assert ours[0] == theirs[0] == 500
    for answer in (ours, theirs):
        text = message(answer[2])
        assert text.startswith('invalid registry endpoint "http://127.0.0.1:1/v1/". HTTPS '
                               'attempt: Get "https://127.0.0.1:1/v1/_ping": '), text
        assert 'HTTP attempt: Get "http://127.0.0.1:1/v1/_ping": ' in text
    r = palletd.docker("search", f"{registry.host}/busybox", check=False)
    assert r.returncode == 1 and b"Unexpected status code 404" in r.stderr
    # refused before any registry is asked (never sent to dockerd: it would
    # ask Docker Hub, and tests send nothing off this machine)
    for bad in ("/v1.41/images/search", f"/v1.41/images/search?term={registry.host}/x&limit=500",
                f'/v1.41/images/search?term={registry.host}/x&filters={{"nope":["1"]}}'):
        assert palletd.api("GET", bad)[0] == 400, bad
