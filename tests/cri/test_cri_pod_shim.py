"""One shim per pod, as containerd: the containers of a pod (their specs carry
``io.kubernetes.cri.sandbox-id``) are served by one pallet-shim, which lives as
long as one of them does, and which a restarted pallet-containerd finds again
with every task it serves.  Pods run with the ``runc`` handler get the same
from Debian's containerd-shim-runc-v2, which groups them by the same annotation."""
from __future__ import annotations

import glob
import json
import os
import time

from cri_helpers import needs_containerd, needs_crictl, needs_root

pytestmark = needs_root + [needs_crictl]

SANDBOX_ID = "io.kubernetes.cri.sandbox-id"
CONTAINER_TYPE = "io.kubernetes.cri.container-type"


def _children(pid: int) -> set[int]:
    out = set()
    for path in glob.glob(f"/proc/{pid}/task/*/children"):
        try:
            with open(path) as f:
                out |= {int(x) for x in f.read().split()}
        except OSError:
            pass
    return out


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""


def _alive(pid: int) -> bool:
    stat = _read(f"/proc/{pid}/stat")
    return bool(stat) and stat.rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")


def recorded_shims(d) -> dict[str, int]:
    """Task id -> the live shim its bundle names (``shim.pid``)."""
    out = {}
    for path in glob.glob(os.path.join(d.state, "io.containerd.runtime.v2.task", "k8s.io", "*",
                                       "shim.pid")):
        try:
            pid = int(_read(path))
        except ValueError:
            continue
        if _alive(pid):
            out[os.path.basename(os.path.dirname(path))] = pid
    return out


def running_shims(d) -> set[int]:
    """The shim processes of ``d`` found in /proc: pallet-shims are the children of
    its zygote named pallet-shim; containerd's shims name its address."""
    out = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        cmd = _read(f"/proc/{entry}/cmdline")
        if cmd.startswith(b"pallet-shim zygote ") and d.state.encode() in cmd:
            out |= {p for p in _children(int(entry))
                    if _read(f"/proc/{p}/comm").startswith(b"pallet-shim") and _alive(p)}
        elif b"containerd-shim" in cmd.split(b"\0")[0] and d.address.encode() in cmd and \
                _alive(int(entry)):
            out.add(int(entry))
    return out


def shims_become(d, expected: set[int]) -> set[int]:
    """The running shims once they are ``expected`` (a shim told to shut down ends
    a moment after it answered), or as they are after a while."""
    deadline = time.monotonic() + 10
    while (found := running_shims(d)) != expected and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


def _state(d, cid: str) -> tuple[str, int]:
    st = d.inspect(cid)["status"]
    return st["state"], st["exitCode"]


def test_five_containers_of_a_pod_one_shim(cri):
    d = cri
    pod = d.run_pod("five")
    cids = [d.run_container(pod, "five", f"c{i}", ["sleep", "1000"]) for i in range(5)]
    shims = recorded_shims(d)
    assert set(shims) == set(cids)
    assert len(set(shims.values())) == 1
    shim = shims[cids[0]]
    assert running_shims(d) == {shim}
    # the spec says which pod and which kind, as containerd's CRI plugin writes it
    spec = d.inspect(cids[0])["info"]["runtimeSpec"]
    assert (spec["annotations"][SANDBOX_ID], spec["annotations"][CONTAINER_TYPE]) == \
        (pod, "container")
    # another pod: a shim of its own
    other = d.run_pod("other")
    lone = d.run_container(other, "other", "c", ["sleep", "1000"])
    assert recorded_shims(d)[lone] != shim and len(running_shims(d)) == 2
    # stop and remove one container: the others run on in the same shim
    d.crictl("stop", "-t", "0", cids[1])
    assert _state(d, cids[1]) == ("CONTAINER_EXITED", 137)
    d.crictl("rm", cids[1])
    assert _alive(shim)
    assert all(_state(d, c) == ("CONTAINER_RUNNING", 0) for c in cids[:1] + cids[2:])
    assert d.crictl("exec", "-s", cids[4], "echo", "hi").stdout.startswith("hi\n")
    # a container added later joins the pod's shim
    late = d.run_container(pod, "five", "late", ["sh", "-c", "exit 3"])
    assert recorded_shims(d).get(late, shim) == shim
    assert d.wait_state(late, "CONTAINER_EXITED")["status"]["exitCode"] == 3
    assert running_shims(d) == {shim, recorded_shims(d)[lone]}
    # removing the pod ends its shim, not the other pod's
    d.crictl("rmp", "-f", pod)
    assert shims_become(d, {recorded_shims(d)[lone]}) == {recorded_shims(d)[lone]}
    d.crictl("rmp", "-f", other)
    assert shims_become(d, set()) == set()


def test_kill9_restores_every_task_of_a_shared_shim(cri):
    d = cri
    pod = d.run_pod("shared")
    runner = d.run_container(pod, "shared", "runner", ["sleep", "1000"])
    quitter = d.run_container(pod, "shared", "quitter", ["sh", "-c", "sleep 2; exit 7"])
    done = d.run_container(pod, "shared", "done", ["sh", "-c", "exit 5"])
    assert d.wait_state(done, "CONTAINER_EXITED")["status"]["exitCode"] == 5
    shims = recorded_shims(d)
    assert len(set(shims.values())) == 1
    shim = shims[runner]
    d.kill9()
    time.sleep(3)                       # the quitter exits while pallet-containerd is down
    assert _alive(shim)
    d.restart()
    assert _state(d, runner) == ("CONTAINER_RUNNING", 0)
    assert _state(d, quitter) == ("CONTAINER_EXITED", 7)
    assert _state(d, done) == ("CONTAINER_EXITED", 5)
    assert running_shims(d) == {shim}
    assert d.crictl("exec", "-s", runner, "echo", "back").stdout.startswith("back\n")
    # the pod's shim is found again for a new container
    late = d.run_container(pod, "shared", "late", ["sleep", "1000"])
    assert recorded_shims(d)[late] == shim and running_shims(d) == {shim}
    d.crictl("rm", quitter)
    assert _alive(shim) and _state(d, late) == ("CONTAINER_RUNNING", 0)
    d.crictl("rmp", "-f", pod)
    assert shims_become(d, set()) == set()


def test_dead_shared_shim_stops_every_container_of_the_pod(cri):
    d = cri
    pod = d.run_pod("doomed")
    cids = [d.run_container(pod, "doomed", f"c{i}", ["sleep", "1000"]) for i in range(3)]
    (shim,) = set(recorded_shims(d).values())
    os.kill(shim, 9)
    for cid in cids:
        assert d.wait_state(cid, "CONTAINER_EXITED")["status"]["exitCode"] == 137
    d.crictl("rmp", "-f", pod)
    assert shims_become(d, set()) == set()


def test_runc_shim_groups_a_pod_and_keeps_exit_codes_over_kill9(cri):
    """The ``runc`` handler: Debian's containerd-shim-runc-v2 serves the pod's
    containers in one shim too; after a kill -9 of pallet-containerd a container
    that exited meanwhile reports its own exit code (not 137)."""
    d = cri
    pod = d.crictl("runp", "--runtime", "runc", d.write("runc.pod.json",
                                                        d.pod_config("runc"))).stdout.strip()
    runner = d.run_container(pod, "runc", "runner", ["sleep", "1000"])
    quitter = d.run_container(pod, "runc", "quitter", ["sh", "-c", "sleep 2; exit 7"])
    shims = recorded_shims(d)
    assert shims[runner] == shims[quitter]
    assert running_shims(d) == {shims[runner]}
    d.kill9()
    time.sleep(3)
    d.restart()
    assert _state(d, quitter) == ("CONTAINER_EXITED", 7)
    assert _state(d, runner) == ("CONTAINER_RUNNING", 0)
    d.crictl("rm", quitter)
    assert _state(d, runner) == ("CONTAINER_RUNNING", 0)
    d.crictl("rmp", "-f", pod)
    assert shims_become(d, set()) == set()


@needs_containerd
def test_one_shim_per_pod_as_containerd(both):
    """Differential: Debian's containerd 1.6 (CRI plugin, runc shim) and pallet-containerd
    on the same pod of three containers: one shim for the pod (with containerd's pause
    container in it), the same annotations, one container removed leaves the shim."""
    seen = {}
    for kind, d in both.items():
        pod = d.run_pod("trio")
        cids = [d.run_container(pod, "trio", f"c{i}", ["sleep", "1000"]) for i in range(3)]
        shims = running_shims(d)
        spec = d.inspect(cids[0])["info"]["runtimeSpec"]
        annotations = (spec["annotations"][SANDBOX_ID], spec["annotations"][CONTAINER_TYPE])
        d.crictl("stop", "-t", "0", cids[1])
        d.crictl("rm", cids[1])
        after_rm = running_shims(d) == shims
        states = [_state(d, c) for c in (cids[0], cids[2])]
        d.crictl("rmp", "-f", pod)
        seen[kind] = (len(shims), annotations == (pod, "container"), after_rm, states,
                      shims_become(d, set()))
    assert seen["pallet"] == seen["containerd"] == \
        (1, True, True, [("CONTAINER_RUNNING", 0)] * 2, set())


def test_restart_info_lists_the_same_shim_for_all(cri):
    """pallet-containerd's task list after a restart: every task of the shared shim."""
    d = cri
    pod = d.run_pod("listed")
    cids = [d.run_container(pod, "listed", f"c{i}", ["sleep", "1000"]) for i in range(3)]
    d.kill9()
    d.restart()
    ps = json.loads(d.crictl("ps", "-a", "-p", pod, "-o", "json").stdout)["containers"]
    assert sorted((c["id"], c["state"]) for c in ps) == \
        sorted((c, "CONTAINER_RUNNING") for c in cids)
    assert len(set(recorded_shims(d).values())) == 1
    d.crictl("rmp", "-f", pod)
    assert shims_become(d, set()) == set()


def test_pause_task_and_containers_share_the_pod_shim(paused):
    """With a ``sandbox_image``, the pod's own task (containerd's pause container,
    container-type ``sandbox``) is served by the same shim as its containers."""
    d = paused
    pod = d.run_pod("paused")
    cids = [d.run_container(pod, "paused", f"c{i}", ["sleep", "1000"]) for i in range(3)]
    shims = recorded_shims(d)
    assert set(shims) == {pod, *cids}
    assert len(set(shims.values())) == 1 and running_shims(d) == set(shims.values())
    with open(os.path.join(d.state, "io.containerd.runtime.v2.task", "k8s.io", pod,
                           "config.json")) as f:
        annotations = json.load(f)["annotations"]
    assert (annotations[SANDBOX_ID], annotations[CONTAINER_TYPE]) == (pod, "sandbox")
    d.crictl("stopp", pod)
    assert all(_state(d, c)[0] == "CONTAINER_EXITED" for c in cids)
    d.crictl("rmp", pod)
    assert shims_become(d, set()) == set()
