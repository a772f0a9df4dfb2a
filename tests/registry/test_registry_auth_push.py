"""Authentication (htpasswd basic auth; bearer tokens from a token server),
login, and push — with skopeo reading back what pallet pushed."""
from __future__ import annotations

import asyncio
import json
import os

import attrs
import pytest

from pallet.core.errors import NotFound
from pallet.distribution.auth import AuthConfigFile, Credentials, Denied, Unauthorized
from pallet.distribution.pull import pull
from pallet.distribution.push import login, push
from pallet.distribution.registry import RegistryOptions
from registry_helpers import needs_root, USERS, needs_registry, needs_skopeo, skopeo, skopeo_copy

pytestmark = [needs_registry, needs_skopeo, *needs_root]
ALICE = Credentials("alice", USERS["alice"])


def load_busybox(store, busybox_tar, name, ns="default"):
    (rec,) = store.import_archive(busybox_tar, ns)
    store.metadata.put_image(ns, attrs.evolve(rec, name=name))
    return rec


def run(coro):
    return asyncio.run(coro)


def test_push_then_skopeo_reads_it_back(store, registry, busybox_tar, base):
    name = f"{registry.host}/pushed/busybox:v1"
    rec = load_busybox(store, busybox_tar, name)
    msgs = []
    result = run(push(name, store.target("default"), progress=msgs.append))
    assert result.digest == rec.target.digest and result.tag == "v1"
    statuses = [m.get("status") for m in msgs]
    assert statuses[0] == f"The push refers to repository [{registry.host}/pushed/busybox]"
    assert "Preparing" in statuses and "Pushed" in statuses
    assert statuses[-2] == f"v1: digest: {rec.target.digest} size: {rec.target.size}"
    assert msgs[-1]["aux"] == {"Tag": "v1", "Digest": rec.target.digest,
                               "Size": rec.target.size}
    info = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{name}"))
    assert info["Digest"] == rec.target.digest
    out = os.path.join(base, "back")
    skopeo_copy(f"docker://{name}", f"dir:{out}")
    assert open(os.path.join(out, "manifest.json"), "rb").read() == \
        store.content.read(rec.target.digest)
    # pushing again: the layer is there already
    msgs.clear()
    run(push(name, store.target("default"), progress=msgs.append))
    assert "Layer already exists" in [m.get("status") for m in msgs]
    # another repository of the same registry: mounted, not uploaded
    other = f"{registry.host}/other/busybox:v2"
    store.metadata.put_image("default", attrs.evolve(rec, name=other))
    msgs.clear()
    run(push(other, store.target("default"), progress=msgs.append))
    assert "Mounted from pushed/busybox" in [m.get("status") for m in msgs]
    # chunked upload to a third one (no source label for it: uploaded in chunks)
    third = f"{registry.host}/third/busybox:v3"
    store.metadata.put_image("default", attrs.evolve(rec, name=third))
    for info in store.content.list():
        store.content.update(info.digest, {}, [f"labels.containerd.io/distribution.source."
                                               f"{registry.host}"])
    run(push(third, store.target("default"),
             options=RegistryOptions(upload_chunk_size=256 * 1024)))
    assert json.loads(skopeo("inspect", "--tls-verify=false",
                             f"docker://{third}"))["Digest"] == rec.target.digest
    # and what was pushed pulls into a fresh namespace and unpacks
    pulled = run(pull(third, store.target("fresh")))
    assert pulled.target.digest == rec.target.digest and pulled.chain_id


def test_push_of_a_missing_image(store, registry):
    with pytest.raises(NotFound, match="An image does not exist locally with the tag: "):
        run(push(f"{registry.host}/none:v1", store.target("default")))


def test_basic_auth(store, basic_registry, busybox_tar, tmp_path):
    host = basic_registry.host
    name = f"{host}/private/busybox:1"
    load_busybox(store, busybox_tar, name)
    with pytest.raises(Unauthorized):
        run(push(name, store.target("default")))
    with pytest.raises(Unauthorized, match="401 Unauthorized"):
        run(login(host, Credentials("alice", "wrong")))
    assert run(login(host, ALICE)) == {"Status": "Login Succeeded", "IdentityToken": ""}
    run(push(name, store.target("default"), credentials=ALICE))
    # skopeo with the same credentials reads it
    skopeo("inspect", "--tls-verify=false", "--creds", f"alice:{USERS['alice']}",
           f"docker://{name}")
    with pytest.raises(Denied):
        run(pull(name, store.target("other")))
    # credentials from a docker config.json, as `pallet login` stores them
    cfg = str(tmp_path / "config.json")
    run(login(host, ALICE, auth_file=cfg, store=True))
    assert AuthConfigFile(cfg).get(host) == ALICE
    result = run(pull(name, store.target("other"), auth_file=cfg))
    assert result.chain_id


def test_token_auth(store, token_registry, token_server, busybox_tar, base):
    host = token_registry.host
    name = f"{host}/team/busybox:1"
    load_busybox(store, busybox_tar, name)
    with pytest.raises(Unauthorized, match="incorrect username or password"):
        run(login(host, Credentials("alice", "nope")))
    assert run(login(host, ALICE))["Status"] == "Login Succeeded"
    with pytest.raises(Unauthorized, match="authentication required"):
        run(push(name, store.target("default")))  # an anonymous token grants nothing
    run(push(name, store.target("default"), credentials=ALICE))
    scopes = [q["query"].get("scope") for q in token_server.requests if q["auth"] == "alice"]
    assert ["repository:team/busybox:pull,push"] in scopes
    # anonymous pull of a private repository: denied; with credentials: fine
    with pytest.raises(Denied, match="pull access denied"):
        run(pull(name, store.target("anon")))
    assert run(pull(name, store.target("alice"), credentials=ALICE)).chain_id
    # public/ is open to anonymous pulls (skopeo pushes it with credentials)
    skopeo_copy(f"docker-archive:{busybox_tar}", f"docker://{host}/public/busybox:1",
                "--dest-creds", f"alice:{USERS['alice']}")
    assert run(pull(f"{host}/public/busybox:1", store.target("anon"))).chain_id
    assert any(q["auth"] is None and q["query"].get("scope") ==
               ["repository:public/busybox:pull"] for q in token_server.requests)
