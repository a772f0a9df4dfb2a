"""A pull killed with SIGKILL half-way: the image is complete or absent, never
half; GC then removes what the dead pull held; the pull runs again and
completes; a last GC leaves no temporary files behind."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from registry_helpers import (Proxy, make_store, needs_registry, needs_root, needs_skopeo,
                              oci_image, oci_layout, skopeo_copy)

pytestmark = [needs_registry, needs_skopeo, *needs_root]

CHILD = r"""
import asyncio, json, sys
sys.path.insert(0, sys.argv[3])
from registry_helpers import make_store
from pallet.distribution.pull import pull
from pallet.distribution.registry import RegistryOptions
store = make_store(sys.argv[1])
def show(msg):
    print(json.dumps(msg), flush=True)
asyncio.run(pull(sys.argv[2], store.target("default"), progress=show,
                 options=RegistryOptions(max_concurrent_downloads=1)))
print("DONE", flush=True)
"""


def leftovers(root: str) -> list[str]:
    """Temporary files and directories under the store's root."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        for name in dirnames:
            if name.startswith(("new-", "rm-")) and rel.endswith("snapshots"):
                out.append(os.path.join(rel, name))
        for name in filenames:
            if ".tmp" in name:
                out.append(os.path.join(rel, name))
    ingest = os.path.join(root, "io.containerd.content.v1.content", "ingest")
    if os.path.isdir(ingest):
        out.extend(os.path.join("ingest", n) for n in os.listdir(ingest))
    return out


def test_sigkill_during_pull(base, registry):
    layout = os.path.join(base, "img")
    layers = [{f"l{i}": os.urandom(1_500_000)} for i in range(3)]
    desc = oci_image(layout, layers, compression=None)
    oci_layout(layout, [desc], "v1")
    skopeo_copy(f"oci:{layout}:v1", f"docker://{registry.host}/crash/img:v1")
    root = os.path.join(base, "containerd")
    # slow enough (1.5 MB/s) that the kill lands while layers are still coming
    proxy = Proxy(registry.port, rate=1_500_000).start()
    ref = f"{proxy.host}/crash/img:v1"
    here = os.path.dirname(os.path.abspath(__file__))
    child = subprocess.Popen([sys.executable, "-c", CHILD, root, ref, here],
                             stdout=subprocess.PIPE, text=True)
    try:
        seen = []
        deadline = time.monotonic() + 60
        for line in child.stdout:
            seen.append(line)
            if line.startswith("{") and json.loads(line)["status"] == "Pull complete":
                time.sleep(0.3)  # well into the second layer's download
                break
            assert time.monotonic() < deadline, seen
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stdout.close()
        proxy.stop()
    assert not any(line.startswith("DONE") for line in seen)

    store = make_store(root)
    try:
        # complete or absent: absent, since it was killed before the end
        assert store.metadata.list_images("default") == []
        assert store.metadata.list_leases("default") != []  # the dead pull's lease
        assert leftovers(root)  # its ingest of the second layer
        gc = store.gc()
        assert gc.leases and store.metadata.list_leases("default") == []
        assert leftovers(root) == []
        assert store.content.list() == [] and store.snapshotter("native").list() == []

        # the pull again, straight to the registry: completes
        result = store.pull(f"{registry.host}/crash/img:v1", "default")
        assert store.metadata.get_image("default", f"{registry.host}/crash/img:v1").target \
            == result.target
        gc = store.gc()
        assert gc.content == () and gc.snapshots == () and gc.ingests == ()
        assert leftovers(root) == []
        snap = store.snapshotter("native").namespaced("default")
        assert all(i.kind == "committed" for i in snap.list())
        assert len(snap.list()) == 3
    finally:
        store.close()


def test_killed_pull_resumes_its_ingest(base, registry):
    """Killed mid-download, then pulled again before any GC: the ingest is
    resumed from where it stopped, and nothing is left afterwards."""
    layout = os.path.join(base, "img2")
    desc = oci_image(layout, [{"big": os.urandom(4_000_000)}], compression=None)
    oci_layout(layout, [desc], "v1")
    skopeo_copy(f"oci:{layout}:v1", f"docker://{registry.host}/crash/two:v1")
    root = os.path.join(base, "containerd2")
    proxy = Proxy(registry.port, rate=2_000_000).start()
    here = os.path.dirname(os.path.abspath(__file__))
    child = subprocess.Popen([sys.executable, "-c", CHILD, root,
                              f"{proxy.host}/crash/two:v1", here],
                             stdout=subprocess.PIPE, text=True)
    try:
        for line in child.stdout:
            if line.startswith("{"):
                msg = json.loads(line)
                if msg["status"] == "Downloading" and msg["progressDetail"]["current"] > 2_500_000:
                    break
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stdout.close()
        proxy.stop()
    store = make_store(root)
    try:
        (ingest,) = store.content.ingests()
        assert 1_000_000 < ingest.offset < 4_000_000
        msgs = []
        import asyncio
        from pallet.distribution.pull import pull
        asyncio.run(pull(f"{registry.host}/crash/two:v1", store.target("default"),
                         progress=msgs.append))
        first = [m for m in msgs if m["status"] == "Downloading"][0]
        assert first["progressDetail"]["current"] >= ingest.offset  # resumed, not restarted
        store.gc()
        assert leftovers(root) == [] and store.metadata.list_leases("default") == []
    finally:
        store.close()
