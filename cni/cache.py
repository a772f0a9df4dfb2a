"""What was attached, kept on disk (libcni's result cache).

For each attachment (network, container id, interface) a JSON file
``{cache_dir}/results/{network}-{container}-{ifname}`` keeps the exact
configuration list used at ADD, the ``CNI_ARGS``, the capability arguments
and the final result, written atomically.  DEL after a restart of the
caller (or after the configuration directory changed) replays the plugins
of that configuration with that result as ``prevResult``, so addresses and
port mappings are freed even when nothing else remembers them.
"""
from __future__ import annotations

import base64
import os

import attrs

from pallet.core.files import read_json, remove, write_json_atomic

KIND = "cniCacheV1"


@attrs.frozen
class CachedAttachment:
    """One cache entry, as read back."""

    network: str
    container_id: str
    ifname: str
    netns: str
    config: bytes
    args: tuple[tuple[str, str], ...]
    capability_args: dict
    result: dict | None
    path: str = ""


class ResultCache:
    """The cache files under ``cache_dir`` (libcni's default is /var/lib/cni)."""

    def __init__(self, cache_dir: str):
        self.dir = os.path.join(cache_dir, "results")

    def path(self, network: str, container_id: str, ifname: str) -> str:
        return os.path.join(self.dir, f"{network}-{container_id}-{ifname}")

    def save(self, network: str, container_id: str, ifname: str, netns: str, config: bytes,
             args, capability_args: dict, result: dict | None) -> None:
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        # not fsynced, as libcni does not: the entry must outlive the caller's
        # restart, which the page cache does; after a power cut the namespaces
        # and veths it describes are gone too
        write_json_atomic(self.path(network, container_id, ifname), {
            "kind": KIND, "containerId": container_id, "ifName": ifname,
            "networkName": network, "netns": netns,
            "config": base64.b64encode(config).decode(),
            "cniArgs": [list(a) for a in args], "capabilityArgs": capability_args,
            "result": result}, fsync=False)

    def load(self, network: str, container_id: str, ifname: str) -> CachedAttachment | None:
        return self._read(self.path(network, container_id, ifname))

    def _read(self, path: str) -> CachedAttachment | None:
        doc = read_json(path)
        if not isinstance(doc, dict) or doc.get("kind") != KIND:
            return None
        try:
            config = base64.b64decode(doc.get("config") or "")
        except ValueError:
            config = b""
        return CachedAttachment(
            network=str(doc.get("networkName", "")), container_id=str(doc.get("containerId", "")),
            ifname=str(doc.get("ifName", "")), netns=str(doc.get("netns") or ""), config=config,
            args=tuple(tuple(a) for a in doc.get("cniArgs") or () if len(a) == 2),
            capability_args=dict(doc.get("capabilityArgs") or {}), result=doc.get("result"),
            path=path)

    def delete(self, network: str, container_id: str, ifname: str) -> None:
        remove(self.path(network, container_id, ifname))

    def entries(self) -> list[CachedAttachment]:
        """Every attachment in the cache (to find those whose owner is gone)."""
        try:
            names = sorted(os.listdir(self.dir))
        except FileNotFoundError:
            return []
        out = []
        for name in names:
            if ".tmp" in name:
                continue
            entry = self._read(os.path.join(self.dir, name))
            if entry is not None:
                out.append(entry)
        return out
