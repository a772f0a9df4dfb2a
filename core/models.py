"""The engine's own data, as frozen attrs classes.

These travel between the roles inside one process; each frontend converts them
to and from its wire format (Docker JSON, containerd protobuf, OCI JSON).
"""
from __future__ import annotations

import attrs



@attrs.frozen
class Descriptor:
    """An OCI content descriptor: what a blob is, its digest and size."""

    media_type: str
    digest: str
    size: int
    annotations: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_oci(cls, d: dict) -> "Descriptor":
        return cls(d["mediaType"], d["digest"], int(d["size"]),
                   tuple(sorted((d.get("annotations") or {}).items())))

    def to_oci(self) -> dict:
        out = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out


@attrs.frozen
class Mount:
    """A mount as containerd passes it around (type, source, options)."""

    type: str
    source: str
    options: tuple[str, ...] = ()
    target: str = ""


@attrs.frozen
class PortBinding:
    """One published port: host ip/port to a container port and protocol."""

    container_port: int
    protocol: str = "tcp"
    host_ip: str = ""
    host_port: int = 0
