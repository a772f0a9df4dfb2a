"""Pod sandboxes: RunPodSandbox, StopPodSandbox, RemovePodSandbox,
PodSandboxStatus and ListPodSandbox.

A pod needs no image here: its network, IPC and UTS namespaces are pinned
(:mod:`.namespaces`) with the pod's hostname and sysctls, its network set
up through CNI in the pinned network namespace (:mod:`.network`), and its
files written as containerd writes them (``hostname``, ``hosts`` copied
from the node, ``resolv.conf`` from the DNS config or the node's, a
``shm`` tmpfs of 64 MiB).  With ``sandbox_image`` configured, the image
runs as the pod's first task (containerd's pause container) in those
namespaces and gives the pod its PID namespace too.

Stopping is idempotent: every container is killed, the network deleted,
the namespaces released; the pod is then NOTREADY until removed.
"""
from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import socket
import time

from google.protobuf import json_format

from pallet.core import errors
from pallet.linux import syscalls
from pallet.proto.cri.runtime.v1 import api_pb2 as cri

from pallet.plugins.api_cri import namespaces as nsmod
from pallet.plugins.api_cri import spec as specmod
from pallet.plugins.api_cri.store import NOTREADY, READY, SANDBOX, Sandbox

log = logging.getLogger("pallet.cri.sandbox")

SHM_OPTIONS = f"mode=1777,size={specmod.SHM_SIZE}"
NODE, POD, CONTAINER, TARGET = cri.NODE, cri.POD, cri.CONTAINER, cri.TARGET


def sandbox_name(md: cri.PodSandboxMetadata) -> str:
    """containerd's unique name of a pod: ``name_namespace_uid_attempt``."""
    return f"{md.name}_{md.namespace}_{md.uid}_{md.attempt}"


def resolv_conf(dns: cri.DNSConfig) -> str:
    """A resolv.conf from the pod's DNS config ("" : none given)."""
    out = ""
    if dns.searches:
        out += "search " + " ".join(dns.searches) + "\n"
    if dns.servers:
        out += "".join(f"nameserver {s}\n" for s in dns.servers)
    if dns.options:
        out += "options " + " ".join(dns.options) + "\n"
    return out


def _copy(src: str, dst: str) -> None:
    try:
        shutil.copyfile(src, dst)
    except FileNotFoundError:
        open(dst, "w").close()
    os.chmod(dst, 0o644)


class Sandboxes:
    """The pod side of api_cri (``cri``: the :class:`~.cri.CRI` it belongs to)."""

    def __init__(self, cri_):
        self.cri = cri_
        self.cfg = cri_.cfg
        self.records = cri_.records

    # --- RunPodSandbox -----------------------------------------------------------------------
    def run(self, req: cri.RunPodSandboxRequest) -> str:
        config = req.config
        md = config.metadata
        if not req.HasField("config") or not config.HasField("metadata"):
            raise errors.PalletError("sandbox config must include metadata")
        try:
            runtime = self.cfg.runtime_for(req.runtime_handler)
        except errors.InvalidArgument as e:
            raise errors.PalletError(f"failed to get sandbox runtime: {e.message}") from None
        sid = secrets.token_hex(32)
        name = sandbox_name(md)
        self.records.reserve("sandbox", name, sid)
        sb = Sandbox(id=sid, name=name, config=config, runtime_handler=req.runtime_handler,
                     created_at=time.time_ns(), root=self.cfg.sandbox_root(sid),
                     state_dir=self.cfg.sandbox_state(sid),
                     cgroup_parent=config.linux.cgroup_parent, image=self.cfg.sandbox_image)
        try:
            self._make(sb, runtime)
        except BaseException:
            try:
                self.records.delete(sb)   # made while the network was set up
            except errors.PalletError as e:
                log.warning("delete record of sandbox %s: %s", sb.id, e)
            self._undo(sb)
            self.records.release(name)
            raise
        self.records.sandboxes[sid] = sb
        self.cri.publish(sid, cri.CONTAINER_CREATED_EVENT, sandbox=sb)
        self.cri.publish(sid, cri.CONTAINER_STARTED_EVENT, sandbox=sb)
        return sid

    def _make(self, sb: Sandbox, runtime: str) -> None:
        config = sb.config
        opts = config.linux.security_context.namespace_options
        host_net = opts.network == NODE
        os.makedirs(sb.root, mode=0o711, exist_ok=True)
        os.makedirs(sb.state_dir, mode=0o711, exist_ok=True)
        hostname = self.hostname(sb)
        kinds = ([] if host_net else ["net", "uts"]) + ([] if opts.ipc == NODE else ["ipc"])
        sysctls = dict(config.linux.sysctls)
        if not host_net:
            if self.cfg.enable_unprivileged_ports:
                sysctls.setdefault("net.ipv4.ip_unprivileged_port_start", "0")
            if self.cfg.enable_unprivileged_icmp:
                sysctls.setdefault("net.ipv4.ping_group_range", "0 2147483647")
        pinned = nsmod.pin(self.cfg.ns_dir, sb.id, kinds, hostname=hostname, sysctls=sysctls)
        sb.namespaces = {"network": pinned.get("net", ""), "ipc": pinned.get("ipc", ""),
                         "uts": pinned.get("uts", "")}
        sb.namespaces = {k: v for k, v in sb.namespaces.items() if v}
        sb.netns = pinned.get("net", "")
        # the CNI plugins (most of a pod's start) run while the pod's files,
        # holder and record are made; the pod's task, if any, starts after them
        network = None
        if not host_net:
            network = self.cri.workers.submit(self.cri.network.setup, sb.id, sb.netns, config)
        try:
            self._write_files(sb, host_net)
            if opts.pid == POD and not sb.image:
                sb.pid = self.cri.holders.start(sb.id)
                sb.namespaces["pid"] = f"/proc/{sb.pid}/ns/pid"
                sb.pid_inode = os.stat(sb.namespaces["pid"]).st_ino
            if not sb.image:
                self.records.create(SANDBOX, sb, specmod.pod_spec(sb, hostname),
                                    runtime=runtime, labels=dict(config.labels))
        except BaseException:
            if network is not None:
                try:
                    self._network_done(sb, network)   # so that the undo deletes it
                except Exception:  # noqa: BLE001 — the first error is the one to report
                    pass
            raise
        if network is not None:
            self._network_done(sb, network)
        if sb.image:
            self.cri.containers.start_pod_task(sb, runtime, specmod.pod_spec(sb, hostname),
                                               hostname)
        else:
            self.records.save(sb)   # with the pod's addresses

    def _network_done(self, sb: Sandbox, network) -> None:
        ip, more, results = network.result()
        sb.network_ready = True
        sb.ip, sb.additional_ips = ip, more
        self._save_results(sb, results)

    def _write_files(self, sb: Sandbox, host_net: bool) -> str:
        config = sb.config
        hostname = self.hostname(sb)
        with open(os.path.join(sb.root, "hostname"), "w") as f:
            f.write(hostname + "\n")
        os.chmod(os.path.join(sb.root, "hostname"), 0o644)
        _copy("/etc/hosts", os.path.join(sb.root, "hosts"))
        content = resolv_conf(config.dns_config) if config.HasField("dns_config") else ""
        if content:
            with open(os.path.join(sb.root, "resolv.conf"), "w") as f:
                f.write(content)
            os.chmod(os.path.join(sb.root, "resolv.conf"), 0o644)
        else:
            _copy("/etc/resolv.conf", os.path.join(sb.root, "resolv.conf"))
        if config.linux.security_context.namespace_options.ipc != NODE:
            shm = os.path.join(sb.state_dir, "shm")
            os.makedirs(shm, mode=0o700, exist_ok=True)
            syscalls.mount("shm", shm, "tmpfs",
                           syscalls.MS_NOEXEC | syscalls.MS_NOSUID | syscalls.MS_NODEV,
                           SHM_OPTIONS)
        return hostname

    def _save_results(self, sb: Sandbox, results: dict) -> None:
        with open(os.path.join(sb.root, "cni-result.json"), "w") as f:
            json.dump(results, f)

    def pod_files(self, sb: Sandbox) -> dict:
        """What each container of the pod gets bound at those paths."""
        ipc_host = sb.config.linux.security_context.namespace_options.ipc == NODE
        return {specmod.ETC_HOSTNAME: os.path.join(sb.root, "hostname"),
                specmod.ETC_HOSTS: os.path.join(sb.root, "hosts"),
                specmod.RESOLV_CONF: os.path.join(sb.root, "resolv.conf"),
                specmod.DEV_SHM: "/dev/shm" if ipc_host else os.path.join(sb.state_dir, "shm")}

    def hostname(self, sb: Sandbox) -> str:
        return sb.config.hostname or socket.gethostname()

    # --- stop and remove -----------------------------------------------------------------------
    def stop(self, sid: str) -> None:
        sb = self.records.sandbox(sid)
        with sb.lock:
            for c in self.records.containers_of(sb.id):
                self.cri.containers.stop(c.id, 0)
            if sb.has_task:
                self.cri.containers.stop_pod_task(sb)
            elif sb.pid:
                self.cri.holders.stop(sb.pid, sb.pid_inode)
                sb.pid = 0
            self._release(sb)
            sb.state, sb.stopped = NOTREADY, True
            self.records.save(sb)
        self.cri.publish(sb.id, cri.CONTAINER_STOPPED_EVENT, sandbox=sb)

    def _release(self, sb: Sandbox) -> None:
        """The network, namespaces and shm of a pod (each step idempotent)."""
        if sb.network_ready:
            netns = sb.netns if sb.netns and nsmod.alive(sb.netns) else ""
            self.cri.network.teardown(sb.id, netns, sb.config)
            sb.network_ready = False
            self.records.save(sb)
        nsmod.unpin({k: v for k, v in sb.namespaces.items() if k != "pid" and v})
        shm = os.path.join(sb.state_dir, "shm")
        if os.path.ismount(shm):
            try:
                syscalls.umount2(shm, syscalls.MNT_DETACH)
            except OSError as e:
                log.warning("unmount %s: %s", shm, e)

    def remove(self, sid: str) -> None:
        try:
            sb = self.records.sandbox(sid)
        except errors.NotFound:
            return   # idempotent, as the CRI asks
        with sb.lock:
            for c in self.records.containers_of(sb.id):
                self.cri.containers.remove(c.id)
            if not sb.stopped or sb.network_ready:
                self.stop(sb.id)
            if sb.has_task:
                self.cri.containers.remove_pod_task(sb)
            self.records.delete(sb)
            self._undo(sb)
            self.records.sandboxes.pop(sb.id, None)
            self.records.release(sb.name)
        self.cri.publish(sb.id, cri.CONTAINER_DELETED_EVENT, sandbox=sb)

    def _undo(self, sb: Sandbox) -> None:
        """Everything of a pod on disk goes (after a failed start, or at removal)."""
        if sb.pid and not sb.has_task:
            self.cri.holders.stop(sb.pid, sb.pid_inode)
            sb.pid = 0
        try:
            self._release(sb)
        except errors.PalletError as e:
            log.warning("release sandbox %s: %s", sb.id, e)
        for d in (sb.state_dir, sb.root):
            shutil.rmtree(d, ignore_errors=True)

    # --- status ------------------------------------------------------------------------------
    def state(self, sb: Sandbox) -> int:
        if sb.stopped or sb.state != READY:
            return cri.SANDBOX_NOTREADY
        if sb.netns and not nsmod.alive(sb.netns):
            return cri.SANDBOX_NOTREADY
        if sb.has_task and not self.cri.containers.pod_task_running(sb):
            return cri.SANDBOX_NOTREADY
        if not sb.has_task and sb.pid and not self.cri.holders.alive(sb.pid, sb.pid_inode):
            return cri.SANDBOX_NOTREADY
        return cri.SANDBOX_READY

    def status_message(self, sb: Sandbox) -> cri.PodSandboxStatus:
        opts = sb.config.linux.security_context.namespace_options
        st = cri.PodSandboxStatus(
            id=sb.id, metadata=sb.config.metadata, state=self.state(sb),
            created_at=sb.created_at, labels=dict(sb.config.labels),
            annotations=dict(sb.config.annotations), runtime_handler=sb.runtime_handler)
        st.network.SetInParent()   # present (empty) for host-network pods too, as containerd's
        if opts.network != NODE:
            st.network.ip = sb.ip
            st.network.additional_ips.extend(cri.PodIP(ip=ip) for ip in sb.additional_ips)
        st.linux.namespaces.options.CopyFrom(cri.NamespaceOption(
            network=opts.network, pid=opts.pid, ipc=opts.ipc, target_id=opts.target_id))
        return st

    def status(self, sid: str, verbose: bool) -> cri.PodSandboxStatusResponse:
        sb = self.records.sandbox(sid)
        resp = cri.PodSandboxStatusResponse(status=self.status_message(sb),
                                            timestamp=time.time_ns())
        for c in self.records.containers_of(sb.id):
            resp.containers_statuses.append(self.cri.containers.status_message(c))
        if verbose:
            resp.info["info"] = json.dumps(self.info(sb))
        return resp

    def info(self, sb: Sandbox) -> dict:
        try:
            with open(os.path.join(sb.root, "cni-result.json")) as f:
                cni_result = json.load(f)
        except (OSError, ValueError):
            cni_result = None
        try:
            runtime_spec = self.records.spec(sb.id)
        except errors.PalletError:
            runtime_spec = None
        return {"pid": sb.pid, "netns": sb.netns, "namespaces": sb.namespaces,
                "image": sb.image, "runtimeHandler": sb.runtime_handler,
                "runtimeType": self.cfg.runtime_for(sb.runtime_handler),
                "config": json_format.MessageToDict(sb.config), "runtimeSpec": runtime_spec,
                "cniResult": cni_result}

    def list(self, flt: cri.PodSandboxFilter | None) -> list[cri.PodSandbox]:
        out = []
        for sb in sorted(self.records.sandboxes.values(), key=lambda s: s.created_at):
            state = self.state(sb)
            if flt is not None:
                if flt.id and not sb.id.startswith(flt.id):
                    continue
                if flt.HasField("state") and flt.state.state != state:
                    continue
                if any(sb.config.labels.get(k) != v for k, v in flt.label_selector.items()):
                    continue
            out.append(cri.PodSandbox(id=sb.id, metadata=sb.config.metadata, state=state,
                                      created_at=sb.created_at, labels=dict(sb.config.labels),
                                      annotations=dict(sb.config.annotations),
                                      runtime_handler=sb.runtime_handler))
        return out

    # --- restart ------------------------------------------------------------------------------
    def recover(self, sb: Sandbox) -> None:
        """A pod found at start-up: take its name again and see whether its
        namespaces are still there."""
        self.records.reserve("sandbox", sb.name, sb.id)
        self.records.sandboxes[sb.id] = sb
        if not sb.stopped and sb.netns and not nsmod.alive(sb.netns):
            log.warning("pod %s lost its network namespace", sb.id)
            sb.state = NOTREADY
            self.records.save(sb)
        elif not sb.stopped and sb.netns and not sb.network_ready and sb.state == READY:
            # recorded while its network was being set up, which did not finish
            # (release_orphans deletes what the plugins had done)
            log.warning("pod %s: its start was interrupted before its network was ready",
                        sb.id)
            sb.state = NOTREADY
            self.records.save(sb)

    def release_orphans(self) -> None:
        """CNI DEL and unpinning for pods whose records are gone (removed, or
        half removed, while pallet-containerd was down)."""
        known = {sid for sid, sb in self.records.sandboxes.items() if sb.network_ready}
        freed = self.cri.network.release_orphans(known)
        if freed:
            log.info("released the network of %d pod(s) removed meanwhile: %s", len(freed),
                     ", ".join(freed))
        try:
            names = os.listdir(self.cfg.ns_dir)
        except FileNotFoundError:
            return
        for name in names:
            sid, _, kind = name.rpartition("-")
            if sid in self.records.sandboxes and not self.records.sandboxes[sid].stopped:
                continue
            nsmod.unpin({kind: os.path.join(self.cfg.ns_dir, name)})

