"""A configured ``sandbox_image`` is honoured as containerd honours its pause
image: the pod's first task runs it, in the pod's namespaces, and gives the
pod its PID namespace (the image's process is PID 1 of the pod)."""
from __future__ import annotations

import json

from cri_helpers import needs_crictl, needs_root

pytestmark = needs_root + [needs_crictl]


def test_pause_image_holds_the_pod(paused):
    d = paused
    pod = d.run_pod("withpause")
    info = d.inspectp(pod)
    assert info["status"]["state"] == "SANDBOX_READY" and info["info"]["pid"] > 0
    cid = d.run_container(pod, "withpause", "c", ["sleep", "1000"])
    c = d.client()
    try:
        r = c.runtime.ExecSync(c.pb.ExecSyncRequest(container_id=cid,
                                                    cmd=["sh", "-c", "cat /proc/1/cmdline"]))
    finally:
        c.close()
    assert r.stdout.split(b"\0")[:2] == [b"/bin/sleep", b"2147483647"]
    ctr_list = json.loads(d.crictl("ps", "-o", "json").stdout)["containers"]
    assert [x["id"] for x in ctr_list] == [cid]   # the pause task is no container of CRI's
    d.crictl("stopp", pod)
    assert d.inspectp(pod)["status"]["state"] == "SANDBOX_NOTREADY"
    d.crictl("rmp", pod)
    assert json.loads(d.crictl("pods", "-o", "json").stdout)["items"] == []
