"""``docker diff``: the container's layer against its image."""
from __future__ import annotations

import os
import stat


#: files the runtime makes as mount points of docker's own binds; dockerd keeps
#: them in an init layer, so they are not the container's changes
_INIT_FILES = ("/etc/hostname", "/etc/hosts", "/etc/resolv.conf", "/.dockerenv")


def changes(snap_mounts) -> list[dict]:
    """``docker diff``: what the container's layer (the overlay's upper dir) adds
    (1), changes (0) and deletes (2, whiteouts) over the image."""
    found = _changes(snap_mounts)
    found = [c for c in found if c["Path"] not in _INIT_FILES]
    # a directory only there as the parent of those mount points is no change
    paths = {c["Path"] for c in found}
    return [c for c in found if not (c["Kind"] == 0 and c["Path"] in ("/etc",) and
                                     not any(p.startswith(c["Path"] + "/") for p in paths))]


def _changes(snap_mounts) -> list[dict]:
    upper, lowers = "", []
    for m in snap_mounts:
        opts = list(getattr(m, "options", None) or [])
        for o in opts:
            if o.startswith("upperdir="):
                upper = o.split("=", 1)[1]
            elif o.startswith("lowerdir="):
                lowers = o.split("=", 1)[1].split(":")
    if not upper:
        return []
    out = []
    for dirpath, dirnames, filenames in os.walk(upper):
        rel_dir = os.path.relpath(dirpath, upper)
        for name in sorted(dirnames + filenames):
            rel = os.path.normpath(os.path.join(rel_dir, name))
            path = "/" + rel
            full = os.path.join(upper, rel)
            try:
                st = os.lstat(full)
            except OSError:
                continue
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                out.append({"Path": path, "Kind": 2})
                continue
            in_lower = any(os.path.lexists(os.path.join(lower, rel)) for lower in lowers)
            out.append({"Path": path, "Kind": 0 if in_lower else 1})
    out.sort(key=lambda c: c["Path"])
    return out
