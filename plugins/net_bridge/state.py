"""Network state on disk: small JSON files, each written atomically.

Layout under ``kernel.paths.network_root``::

    networks/<id>.json     one network (name, subnet, options, bridge name)
    ipam/<id>.json         its address allocations (owner per address)
    endpoints/<cid>.json   one container: what it asked for, and while it
                           runs its sandbox (namespace path, endpoints)

A crash of the daemon leaves either the old or the new version of each file
(write to a temporary name, then rename), never half of one.  The files are
not fsynced: they describe live kernel objects (namespaces, veths, rules,
proxies), and a crash of the machine, the only thing fsync would guard
against, takes every container and all those objects with it; start-up
reconciliation then frees what the files still name.
"""
from __future__ import annotations

import os

from pallet.core.files import read_json, remove


class StateDir:
    """The directories of the network state, created on demand."""

    def __init__(self, root: str):
        self.root = root
        self.networks = os.path.join(root, "networks")
        self.ipam = os.path.join(root, "ipam")
        self.endpoints = os.path.join(root, "endpoints")

    def ensure(self) -> None:
        for d in (self.networks, self.ipam, self.endpoints):
            os.makedirs(d, mode=0o700, exist_ok=True)
        # leftovers of an interrupted write: the rename never happened
        for d in (self.networks, self.ipam, self.endpoints):
            for name in os.listdir(d):
                if ".tmp" in name:
                    remove(os.path.join(d, name))

    def network_file(self, nid: str) -> str:
        return os.path.join(self.networks, f"{nid}.json")

    def ipam_file(self, nid: str) -> str:
        return os.path.join(self.ipam, f"{nid}.json")

    def endpoint_file(self, cid: str) -> str:
        return os.path.join(self.endpoints, f"{cid}.json")

    def load_all(self, directory: str) -> dict[str, dict]:
        out = {}
        try:
            names = sorted(os.listdir(directory))
        except FileNotFoundError:
            return out
        for name in names:
            if name.endswith(".json"):
                obj = read_json(os.path.join(directory, name))
                if isinstance(obj, dict):
                    out[name[:-5]] = obj
        return out
