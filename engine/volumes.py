"""Volumes: docker's ``local`` driver under ``paths.volumes_root``, and
volume plugins (:mod:`volume_plugins`) for any other driver.

Each volume is a directory ``<volumes_root>/<name>/`` holding ``_data`` (what
containers mount) and ``opts.json`` (driver, labels, options, creation time,
written atomically).  With options (``--opt type=tmpfs --opt device=tmpfs
--opt o=size=10m``) ``_data`` is mounted while containers use the volume, as
the local driver does.  A plugin's volume keeps only ``opts.json`` there (its
driver, scope and last mount point); its data is the plugin's.  A volume is
in use while any container (running or not) names it in its mount points;
anonymous volumes carry the label ``com.docker.volume.anonymous`` and go
with ``docker rm -v`` and ``--rm``.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import secrets
import shutil

from pallet.core import errors
from pallet.core.files import write_json_atomic
from pallet.engine import events as eventsmod

log = logging.getLogger("pallet.api_rest.volumes")

ANON_LABEL = "com.docker.volume.anonymous"
_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
_LOCAL_OPTS = ("type", "device", "o", "size")


def check_name(name: str) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise errors.InvalidArgument(
            f'create {name}: "{name}" includes invalid characters for a local volume name, '
            'only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host '
            "directory, use absolute path")


def _now() -> str:
    from pallet.engine.state import now_rfc3339

    return now_rfc3339()


class Volume:
    def __init__(self, name: str, directory: str, meta: dict):
        self.name = name
        self.dir = directory
        self.meta = meta
        self.active = 0   # containers running with it mounted

    @property
    def driver(self) -> str:
        return self.meta.get("Driver") or "local"

    @property
    def local(self) -> bool:
        return self.driver == "local"

    @property
    def path(self) -> str:
        """Where the volume's data is on the host (a plugin's: what it last said)."""
        if self.local:
            return os.path.join(self.dir, "_data")
        return self.meta.get("Mountpoint") or ""

    @property
    def labels(self) -> dict:
        return self.meta.get("Labels") or {}

    @property
    def options(self) -> dict:
        return self.meta.get("Options") or {}

    @property
    def anonymous(self) -> bool:
        return ANON_LABEL in self.labels

    def inspect(self) -> dict:
        return {"CreatedAt": self.meta.get("CreatedAt", ""), "Driver": self.driver,
                "Labels": self.labels or None, "Mountpoint": self.path, "Name": self.name,
                "Options": self.options or None, "Scope": self.meta.get("Scope") or "local"}

    def is_empty(self) -> bool:
        if not self.path:
            return True
        try:
            with os.scandir(self.path) as it:
                return next(it, None) is None
        except FileNotFoundError:
            return True


def dir_size(path: str) -> int:
    """Bytes of the files of a tree (each inode once)."""
    seen, total = set(), 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total


class VolumeService:
    """The local volume driver and docker's volume API over it."""

    def __init__(self, kernel, users=lambda name: [], plugin_dirs=None):
        from pallet.engine.volume_plugins import DEFAULT_DIRS, PluginRegistry

        self.kernel = kernel
        self.root = kernel.paths.volumes_root
        self.users = users          # name -> ids of the containers that reference it
        self.by_name: dict[str, Volume] = {}
        self._lock = asyncio.Lock()
        self.plugins = PluginRegistry(DEFAULT_DIRS if plugin_dirs is None else plugin_dirs)

    def _emit(self, action: str, v: Volume, **attrs) -> None:
        eventsmod.emit(self.kernel, "volume", action, v.name, {"driver": v.driver, **attrs})

    def load(self) -> None:
        os.makedirs(self.root, mode=0o701, exist_ok=True)
        for name in sorted(os.listdir(self.root)):
            d = os.path.join(self.root, name)
            try:
                with open(os.path.join(d, "opts.json")) as f:
                    meta = json.load(f)
            except (OSError, ValueError):
                meta = {"Name": name, "Driver": "local", "Labels": {}, "Options": {},
                        "CreatedAt": ""}
            if (meta.get("Driver") or "local") == "local" and \
                    not os.path.isdir(os.path.join(d, "_data")):
                continue
            self.by_name[name] = Volume(name, d, meta)

    # --- the API -------------------------------------------------------------
    async def create(self, name: str | None = None, driver: str | None = None,
                     labels: dict | None = None, options: dict | None = None, *,
                     anonymous: bool = False) -> Volume:
        """Create (or, for an existing name, return) a volume: the local driver's
        directory, or a plugin's ``VolumeDriver.Create``."""
        driver = driver or "local"
        for what, value in (("Labels", labels), ("DriverOpts", options)):
            if value is not None and (not isinstance(value, dict) or
                                      not all(isinstance(v, str) for v in value.values())):
                raise errors.InvalidArgument(f"invalid {what}: a map of strings is expected")
        options = dict(options or {})
        if driver == "local":
            for key in options:
                if key not in _LOCAL_OPTS:
                    raise errors.InvalidArgument(f"invalid option: \"{key}\"")
            if options and not options.get("type") and not options.get("size"):
                raise errors.InvalidArgument("missing required option: \"type\"")
        labels = dict(labels or {})
        if anonymous or not name:
            name = name or secrets.token_hex(32)
            labels.setdefault(ANON_LABEL, "")
        check_name(name)
        existing = self.by_name.get(name)
        if existing is not None:
            if driver != existing.driver and driver != "local":
                raise errors.Conflict(f"create {name}: volume name must be unique: a volume "
                                      f"of driver {existing.driver} has that name")
            return existing
        d = os.path.join(self.root, name)
        os.makedirs(self.root, mode=0o701, exist_ok=True)
        meta = {"Name": name, "Driver": driver, "Labels": labels, "Options": options,
                "CreatedAt": _now()}
        if driver == "local":
            try:
                os.makedirs(os.path.join(d, "_data"), mode=0o755)
            except FileExistsError:
                pass
            except OSError as e:
                raise errors.PalletError(f"create {name}: {(e.strerror or str(e)).lower()}") \
                    from None
        else:
            plugin = await self.plugins.get(driver)
            await plugin.create(name, options)
            meta["Scope"] = plugin.scope
            try:
                meta["Mountpoint"] = await plugin.path(name)
            except errors.PalletError:
                meta["Mountpoint"] = ""
            os.makedirs(d, mode=0o700, exist_ok=True)
        write_json_atomic(os.path.join(d, "opts.json"), meta)
        v = self.by_name[name] = Volume(name, d, meta)
        self._emit("create", v)
        return v

    def get(self, name: str) -> Volume:
        v = self.by_name.get(name)
        if v is None:
            raise errors.NotFound(f"get {name}: no such volume")
        return v

    def list(self, filters: dict | None = None) -> list[Volume]:
        filters = filters or {}
        for key in filters:
            if key not in ("dangling", "driver", "label", "name"):
                raise errors.InvalidArgument(f"invalid filter '{key}'")
        for x in filters.get("dangling") or ():
            if x.lower() not in ("true", "false", "1", "0"):
                raise errors.InvalidArgument(f"invalid filter 'dangling={x}'")
        out = []
        for v in sorted(self.by_name.values(), key=lambda v: v.name):
            if "name" in filters and not any(f in v.name for f in filters["name"]):
                continue
            if "driver" in filters and v.driver not in filters["driver"]:
                continue
            if "dangling" in filters:
                want = [x.lower() for x in filters["dangling"]]
                dangling = not self.users(v.name)
                if (want[0] in ("true", "1")) != dangling:
                    continue
            if "label" in filters and not _labels_match(v.labels, filters["label"]):
                continue
            out.append(v)
        return out

    async def remove(self, name: str, *, force: bool = False) -> None:
        v = self.by_name.get(name)
        if v is None:
            if force:
                return
            raise errors.NotFound(f"get {name}: no such volume")
        users = self.users(name)
        if users:
            raise errors.Conflict(f"remove {name}: volume is in use - [{', '.join(users)}]")
        if not v.local:
            try:
                await (await self.plugins.get(v.driver)).remove(name)
            except errors.PalletError as e:
                if not force:
                    raise errors.PalletError(f"remove {name}: {e.message}") from None
                log.warning("remove volume %s: %s", name, e.message)
        await asyncio.to_thread(self._remove_dir, v)
        self.by_name.pop(name, None)
        self._emit("destroy", v)

    def _remove_dir(self, v: Volume) -> None:
        if v.local and v.options:
            try:
                from pallet.engine.rootfs import umount
                umount(v.path)
            except OSError:
                pass
        trash = os.path.join(self.root, f".trash-{secrets.token_hex(4)}")
        try:
            os.rename(v.dir, trash)  # gone at once for readers; deleted after
        except OSError:
            trash = v.dir
        shutil.rmtree(trash, ignore_errors=True)

    async def prune(self, filters: dict | None = None) -> dict:
        """Unused volumes go; anonymous ones only unless ``all=true`` (API 1.42+)."""
        filters = dict(filters or {})
        for key in filters:
            if key not in ("label", "label!", "all"):
                raise errors.InvalidArgument(f"invalid filter '{key}'")
        everything = any(x.lower() in ("true", "1") for x in filters.get("all", []))
        deleted, reclaimed = [], 0
        for v in list(self.by_name.values()):
            if self.users(v.name):
                continue
            if not everything and not v.anonymous:
                continue
            if "label" in filters and not _labels_match(v.labels, filters["label"]):
                continue
            if "label!" in filters and _labels_match(v.labels, filters["label!"], any_=True):
                continue
            size = await asyncio.to_thread(dir_size, v.path) if v.local else 0
            try:
                await self.remove(v.name)
            except errors.PalletError as e:
                log.warning("prune volume %s: %s", v.name, e)
                continue
            deleted.append(v.name)
            reclaimed += size
        eventsmod.emit(self.kernel, "volume", "prune", "", {"reclaimed": reclaimed})
        return {"VolumesDeleted": deleted or None, "SpaceReclaimed": reclaimed}

    # --- use by containers -------------------------------------------------------
    async def mount(self, v: Volume, mount_id: str) -> str:
        """The directory to bind into a container: a local volume with options is
        mounted on first use; a plugin's comes from ``VolumeDriver.Mount``
        (``mount_id``: the container's, given back at unmount)."""
        if not v.local:
            path = await (await self.plugins.get(v.driver)).mount(v.name, mount_id)
            if path != v.meta.get("Mountpoint"):
                v.meta["Mountpoint"] = path
                await asyncio.to_thread(write_json_atomic, os.path.join(v.dir, "opts.json"), v.meta)
        elif v.options and v.active == 0 and not os.path.ismount(v.path):
            _mount_local(v)
        v.active += 1
        self._emit("mount", v)
        return v.path

    async def unmount(self, v: Volume, mount_id: str) -> None:
        if v.active > 0:
            v.active -= 1
        if not v.local:
            try:
                await (await self.plugins.get(v.driver)).unmount(v.name, mount_id)
            except errors.PalletError as e:
                log.warning("unmount volume %s: %s", v.name, e.message)
        elif v.options and v.active == 0 and os.path.ismount(v.path):
            from pallet.engine.rootfs import umount
            try:
                umount(v.path)
            except OSError as e:
                log.warning("unmount volume %s: %s", v.name, e)
        self._emit("unmount", v)

    async def close(self) -> None:
        await self.plugins.close()


def _mount_local(v: Volume) -> None:
    """The local driver's options: mount -t <type> -o <o> <device> _data."""
    from pallet.engine.rootfs import _mount

    opts = v.options
    fstype = opts.get("type") or "tmpfs"
    data = opts.get("o") or ""
    if opts.get("size") and "size=" not in data:
        data = ",".join(x for x in (data, f"size={opts['size']}") if x)
    device = opts.get("device") or fstype
    flags = 0
    if "bind" in data.split(","):
        from pallet.engine.rootfs import MS_BIND
        flags |= MS_BIND
        data = ",".join(x for x in data.split(",") if x not in ("bind", "rbind"))
    try:
        _mount(device, v.path, fstype if not flags else None, flags, data or None)
    except OSError as e:
        raise errors.PalletError(f"error while mounting volume '{v.path}': "
                                 f"{(e.strerror or str(e)).lower()}") from None


def _labels_match(labels: dict, wanted, any_: bool = False) -> bool:
    results = []
    for w in wanted:
        k, eq, val = w.partition("=")
        results.append(k in labels and (not eq or labels[k] == val))
    return any(results) if any_ else all(results)


async def usage(svc) -> list[dict]:
    """Volumes with UsageData (``/system/df``)."""
    out = []
    for v in svc.list():
        entry = v.inspect()
        size = await asyncio.to_thread(dir_size, v.path) if v.local else -1
        entry["UsageData"] = {"Size": size, "RefCount": len(svc.users(v.name))}
        out.append(entry)
    return out
