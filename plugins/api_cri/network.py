"""Pods' networks through CNI (pallet.cni), as containerd's CRI plugin sets
them up: the loopback plugin (its own ``cni-loopback`` list) and the first
``max_conf_num`` lists of the configuration directory, each on ``eth0``
(``eth1``... for further lists), with kubelet's ``K8S_POD_*`` arguments and
the ``portMappings`` and ``bandwidth`` capabilities.  The attachments are
added at the same time (go-cni's way), each list's plugins in order.

The result of every ADD is cached by the CNI library, so DEL frees
addresses and port mappings after a restart, even of a pod whose record
is gone (:meth:`PodNetwork.release_orphans`).
"""
from __future__ import annotations

import concurrent.futures
import json
import logging
import os
import threading

from pallet.core import errors
from pallet.core.files import write_atomic
from pallet.cni import conf as cniconf
from pallet.cni.invoke import Environment
from pallet.cni.network import CNI
from pallet.proto.cri.runtime.v1 import api_pb2 as cri

log = logging.getLogger("pallet.cri.network")

LOOPBACK = cniconf.parse(json.dumps({"cniVersion": "0.3.1", "name": "cni-loopback",
                                     "plugins": [{"type": "loopback"}]}))
_PROTOCOLS = {cri.TCP: "tcp", cri.UDP: "udp", cri.SCTP: "sctp"}
INGRESS_ANNOTATION = "kubernetes.io/ingress-bandwidth"
EGRESS_ANNOTATION = "kubernetes.io/egress-bandwidth"


def port_mappings(config: cri.PodSandboxConfig) -> list[dict]:
    """The ``portMappings`` capability: the pod's ports that ask for a host port."""
    out = []
    for pm in config.port_mappings:
        if pm.host_port <= 0:
            continue
        out.append({"hostPort": pm.host_port, "containerPort": pm.container_port,
                    "protocol": _PROTOCOLS.get(pm.protocol, "tcp"), "hostIP": pm.host_ip})
    return out


def _quantity(text: str) -> int:
    """A Kubernetes quantity (``10M``, ``1Gi``) in bits per second."""
    units = {"k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "Ki": 2**10, "Mi": 2**20,
             "Gi": 2**30, "Ti": 2**40}
    for suffix in sorted(units, key=len, reverse=True):
        if text.endswith(suffix):
            return int(float(text[:-len(suffix)]) * units[suffix])
    return int(float(text))


def bandwidth(config: cri.PodSandboxConfig) -> dict | None:
    """The ``bandwidth`` capability from kubelet's annotations (bits per second)."""
    out = {}
    try:
        if INGRESS_ANNOTATION in config.annotations:
            rate = _quantity(config.annotations[INGRESS_ANNOTATION])
            out.update(ingressRate=rate, ingressBurst=2**31 - 1)
        if EGRESS_ANNOTATION in config.annotations:
            rate = _quantity(config.annotations[EGRESS_ANNOTATION])
            out.update(egressRate=rate, egressBurst=2**31 - 1)
    except ValueError as e:
        raise errors.InvalidArgument(f"bandwidth annotation: {e}") from None
    return out or None


def cni_args(sandbox_id: str, config: cri.PodSandboxConfig) -> tuple:
    md = config.metadata
    return (("IgnoreUnknown", "1"), ("K8S_POD_NAMESPACE", md.namespace),
            ("K8S_POD_NAME", md.name), ("K8S_POD_INFRA_CONTAINER_ID", sandbox_id),
            ("K8S_POD_UID", md.uid))


class PodNetwork:
    """CNI for pods, configured from api_cri's settings."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.cni = CNI(cfg.cni_bin_dirs, cfg.cni_cache)
        self.pod_cidr = ""
        self._lock = threading.Lock()
        #: runs a pod's attachments side by side (threads that wait on plugins)
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=16,
                                                           thread_name_prefix="cni")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def networks(self) -> list[cniconf.NetworkConfigList]:
        """The lists of the configuration directory in use (NotFound: none)."""
        return cniconf.load_dir(self.cfg.cni_conf_dir, self.cfg.cni_max_conf_num)

    def status(self) -> tuple[bool, str, str]:
        """The NetworkReady condition: (ready, reason, message)."""
        try:
            nets = self.networks()
        except errors.PalletError as e:
            return False, "NetworkPluginNotReady", f"Network plugin returns error: {e.message}"
        for net in [LOOPBACK, *nets]:
            for plugin in net.types:
                try:
                    from pallet.cni.invoke import find_plugin
                    find_plugin(plugin, self.cni.plugin_dirs)
                except errors.NotFound as e:
                    return False, "NetworkPluginNotReady", \
                        f"Network plugin returns error: {e.message}"
        return True, "", ""

    def setup(self, sandbox_id: str, netns: str, config: cri.PodSandboxConfig
              ) -> tuple[str, list[str], dict]:
        """ADD the pod to every network; its IP, further IPs, and the results
        (by network name).  On failure what was added is deleted again."""
        nets = self.networks()
        args = cni_args(sandbox_id, config)
        caps: dict = {}
        if port_mappings(config):
            caps["portMappings"] = port_mappings(config)
        bw = bandwidth(config)
        if bw:
            caps["bandwidth"] = bw
        results = {}
        # the attachments are independent (lo and eth0... of one namespace), so
        # their plugins run at the same time, as containerd's go-cni runs them
        loopback = self._pool.submit(self.cni.add, LOOPBACK,
                                     Environment(sandbox_id, netns, "lo", args))
        others = [self._pool.submit(self.cni.add, net,
                                    Environment(sandbox_id, netns, f"eth{i}", args), caps)
                  for i, net in enumerate(nets[1:], 1)]
        try:
            first_error = None
            if nets:
                try:
                    results[nets[0].name] = self.cni.add(
                        nets[0], Environment(sandbox_id, netns, "eth0", args), caps)
                except Exception as e:  # noqa: BLE001 — raised once the others are done
                    first_error = e
            for net, future in [(LOOPBACK, loopback), *zip(nets[1:], others)]:
                try:
                    result = future.result()
                except Exception as e:  # noqa: BLE001
                    first_error = first_error or e
                    continue
                if net is not LOOPBACK:
                    results[net.name] = result
            if first_error is not None:
                raise first_error
        except Exception:
            try:
                self.teardown(sandbox_id, netns, config)
            except Exception as e:  # noqa: BLE001 — the first error is the one to report
                log.warning("undo network of %s: %s", sandbox_id, e)
            raise
        ips: list[str] = []
        for i, net in enumerate(nets):
            ips += [ip.ip for ip in results[net.name].sandbox_ips(f"eth{i}")]
        primary = ips[0] if ips else ""
        return primary, ips[1:], {k: r.raw for k, r in results.items()}

    def teardown(self, sandbox_id: str, netns: str, config: cri.PodSandboxConfig | None) -> None:
        """DEL the pod from every network it was added to (from the cache when the
        configuration changed since), loopback last."""
        first_error = None
        seen = set()
        try:
            nets = self.networks()
        except errors.NotFound:
            nets = []
        args = cni_args(sandbox_id, config) if config is not None else ()
        for i, net in enumerate(nets):
            seen.add((net.name, f"eth{i}"))
            try:
                self.cni.delete(net, Environment(sandbox_id, netns, f"eth{i}", args))
            except Exception as e:  # noqa: BLE001 — the others still go
                first_error = first_error or e
        for entry in self.cni.cache.entries():
            if entry.container_id != sandbox_id or (entry.network, entry.ifname) in seen:
                continue
            if entry.network == LOOPBACK.name:
                continue
            try:
                self.cni.delete_cached(entry)
            except Exception as e:  # noqa: BLE001
                first_error = first_error or e
        try:
            self.cni.delete(LOOPBACK, Environment(sandbox_id, netns, "lo", args))
        except Exception as e:  # noqa: BLE001
            log.debug("loopback del of %s: %s", sandbox_id, e)
        if first_error is not None:
            raise errors.PalletError(f"failed to destroy network for sandbox {sandbox_id!r}: "
                                     f"{first_error}")

    def release_orphans(self, known: set[str]) -> list[str]:
        """DEL every cached attachment whose pod is not in ``known`` (pods
        removed while pallet-containerd was down); their ids."""
        done = []
        for entry in self.cni.cache.entries():
            if entry.container_id in known:
                continue
            try:
                self.cni.delete_cached(entry)
                done.append(entry.container_id)
            except Exception as e:  # noqa: BLE001 — retried at the next start
                log.warning("cni del of orphan %s on %s: %s", entry.container_id,
                            entry.network, e)
        return sorted(set(done))

    def update_pod_cidr(self, cidr: str) -> None:
        """UpdateRuntimeConfig: remember the pod CIDR and, with a configuration
        template, write the configuration it makes (containerd's conf_template)."""
        with self._lock:
            if cidr == self.pod_cidr:
                return
            self.pod_cidr = cidr
            if not cidr or not self.cfg.cni_conf_template:
                return
            try:
                with open(self.cfg.cni_conf_template) as f:
                    template = f.read()
            except OSError as e:
                raise errors.FailedPrecondition(f"read cni template "
                                                f"{self.cfg.cni_conf_template}: "
                                                f"{(e.strerror or str(e)).lower()}") from None
            routes = [{"dst": "0.0.0.0/0"}] if ":" not in cidr else [{"dst": "::/0"}]
            text = cniconf.render_template(template, {
                "PodCIDR": cidr, "PodCIDRRanges": cidr.split(","), "Routes": routes})
            cniconf.parse(text, self.cfg.cni_conf_template)
            os.makedirs(self.cfg.cni_conf_dir, exist_ok=True)
            path = os.path.join(self.cfg.cni_conf_dir, "10-containerd-net.conflist")
            write_atomic(path, text, fsync=False)
