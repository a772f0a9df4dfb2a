"""Images through the CRI: crictl pull (with credentials), images, inspecti,
rmi, against a real registry (Debian's docker-registry on 127.0.0.1, the
busybox image pushed there with skopeo)."""
from __future__ import annotations

import json
import os
import sys
import tempfile

import pytest

from cri_helpers import REPO, needs_crictl, needs_root

sys.path.insert(0, os.path.join(REPO, "tests", "registry"))
from registry_helpers import (REGISTRY_BIN, SKOPEO, RegistryServer,  # noqa: E402
                              skopeo_copy)

pytestmark = needs_root + [needs_crictl, pytest.mark.skipif(
    not os.path.exists(REGISTRY_BIN) or not SKOPEO, reason="needs docker-registry and skopeo")]

USERS = {"kube": "let-me-pull"}


@pytest.fixture(scope="module")
def registry(busybox_tar):
    base = tempfile.mkdtemp(prefix="plcri-reg-", dir="/tmp")
    reg = RegistryServer(base, auth="htpasswd", users=USERS).start()
    try:
        skopeo_copy(f"docker-archive:{busybox_tar}", f"docker://{reg.host}/lib/busybox:1.0",
                    "--dest-creds", "kube:let-me-pull")
        yield reg
    finally:
        reg.stop()
        import shutil
        shutil.rmtree(base, ignore_errors=True)


def test_pull_with_credentials_list_inspect_remove(cri, registry):
    ref = f"{registry.host}/lib/busybox:1.0"
    r = cri.crictl("pull", ref, check=False)
    assert r.returncode != 0 and "unauthorized" in r.stderr.lower()
    out = cri.crictl("pull", "--creds", "kube:let-me-pull", ref).stdout
    assert "Image is up to date for sha256:" in out
    image_id = out.strip().rsplit(" ", 1)[-1]
    images = json.loads(cri.crictl("images", "-o", "json").stdout)["images"]
    pulled = [i for i in images if i["id"] == image_id][0]
    assert ref in pulled["repoTags"]
    assert any(d.startswith(f"{registry.host}/lib/busybox@sha256:") for d in pulled["repoDigests"])
    assert int(pulled["size"]) > 0
    status = json.loads(cri.crictl("inspecti", ref).stdout)
    assert status["status"]["id"] == image_id
    assert json.loads(cri.crictl("inspecti", image_id).stdout)["status"]["id"] == image_id
    # the same content as the imported busybox: one ID, both names
    assert any("docker.io/library/busybox:latest" in i["repoTags"] for i in images
               if i["id"] == image_id)
    # a container from it, by the pulled name
    pod = cri.run_pod("pulled")
    cid = cri.run_container(pod, "pulled", "c", ["true"], image=ref)
    st = cri.wait_state(cid, "CONTAINER_EXITED")["status"]
    assert st["imageId"] == image_id and st["imageRef"].startswith(f"{registry.host}/lib/busybox@")
    cri.crictl("rmp", "-f", pod)
    cri.crictl("rmi", ref)
    left = json.loads(cri.crictl("images", "-o", "json").stdout)["images"]
    assert not any(i["id"] == image_id for i in left)   # every name of the image goes
    r = cri.crictl("inspecti", ref, check=False)
    assert r.returncode != 0
    # put busybox back for the other tests of the module
    cri.import_image(os.path.join(REPO, "build", "busybox.tar")) \
        if os.path.exists(os.path.join(REPO, "build", "busybox.tar")) else None
