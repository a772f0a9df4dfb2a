"""``POST /containers/create``: check the request as dockerd does, plan the
mounts (creating the volumes they name, copying the image's content into new
ones), prepare the rootfs snapshot and the containerd container, write the
record."""
from __future__ import annotations

import asyncio
import logging
import os
import secrets
import shutil
import time

from pallet.core import errors
from pallet.engine import initlayer
from pallet.engine import links as linksmod
from pallet.engine import mounts as mountsmod
from pallet.engine import networking, resources, security
from pallet.engine import spec as specmod
from pallet.engine.createconfig import check_create, host_defaults, merge_config
from pallet.engine.state import ZERO_TIME, Container, now_rfc3339

log = logging.getLogger("pallet.api_rest.containers")


class CreateOps:
    async def create(self, body, name: str | None, *, image=None, parent: str | None = None,
                     mount_stubs=()) -> dict:
        """``image``: the image record to use instead of looking ``Image`` up
        (a build step's, which has no name); ``parent``: the snapshot to
        start from instead of the image's top layer; ``mount_stubs``: more
        mount points for the init layer (a build step's ``RUN --mount``s)."""
        if not isinstance(body, dict):
            raise errors.InvalidArgument("invalid container config: JSON object expected")
        check_create(body)
        image_ref = body.get("Image")
        if not image_ref:
            raise errors.InvalidArgument("config cannot be empty in order to create a container")
        host = dict(body.get("HostConfig") or {})
        rec = image if image is not None else await self.images.get(image_ref)
        name = self.store.check_name(name) if name else None
        cfg = {k: v for k, v in body.items() if k not in ("HostConfig", "NetworkingConfig")}
        cfg = merge_config(cfg, rec.config.get("config") or {})
        args = specmod.command({}, cfg)  # raises "no command specified"
        host = host_defaults(host)
        linksmod.normalize(self.store, name or "new", host)  # refused before any work
        warnings = resources.check(host) + resources.complete(host)
        security.parse_security_opts(host.get("SecurityOpt"))
        security.check_devices(host.get("Devices"))
        specmod.capabilities(host.get("CapAdd"), host.get("CapDrop"), bool(host.get("Privileged")))
        points = mountsmod.plan(host, cfg.get("Volumes"), self._volumes_from)
        own_parent = parent is None
        if own_parent:
            parent = rec.chain_ids[-1] if rec.diff_ids else ""

        cid = secrets.token_hex(32)
        while cid in self.store.by_id:
            cid = secrets.token_hex(32)
        if name is None:
            from pallet.engine.names import random_name
            name = random_name(self.store.names)
        host["Links"] = linksmod.normalize(self.store, name, host)
        cdir = self.paths.container_dir(cid)
        os.makedirs(cdir, mode=0o710)
        cfg.setdefault("Hostname", "")
        if not cfg["Hostname"]:
            cfg["Hostname"] = cid[:12]
        created = now_rfc3339()
        data = {
            "Id": cid, "Created": created, "Path": args[0], "Args": args[1:],
            "State": {"Status": "created", "Running": False, "Paused": False,
                      "Restarting": False, "OOMKilled": False, "Dead": False, "Pid": 0,
                      "ExitCode": 0, "Error": "", "StartedAt": ZERO_TIME,
                      "FinishedAt": ZERO_TIME},
            "Image": rec.id, "ResolvConfPath": os.path.join(cdir, "resolv.conf"),
            "HostnamePath": os.path.join(cdir, "hostname"),
            "HostsPath": os.path.join(cdir, "hosts"),
            "LogPath": os.path.join(cdir, f"{cid}-json.log")
            if host["LogConfig"]["Type"] == "json-file" else "",
            "Name": "/" + name, "RestartCount": 0, "Driver": self.snapshotter,
            "Platform": "linux", "MountLabel": "", "ProcessLabel": "", "AppArmorProfile": "",
            "ExecIDs": None, "HostConfig": host,
            "GraphDriver": {"Name": self.snapshotter, "Data": None},
            "Mounts": [], "Config": cfg,
            "NetworkSettings": {"Bridge": "", "SandboxID": "", "HairpinMode": False,
                                "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0,
                                "Ports": {}, "SandboxKey": "", "Networks": {}},
            # palletd's own bookkeeping (not in docker's inspect)
            "CreatedUnix": int(time.time()),
            "ImageName": image_ref,
            "RootfsParent": parent,
            "MountPoints": points,
            "HasBeenStartedBefore": False,
            "HasBeenManuallyStopped": False,
        }
        c = Container(data, cdir)
        c.task_may_exist = False
        self._write_etc_files(c)
        try:  # network mode, networks, aliases, --ip, ports: checked and remembered
            await networking.register(self.kernel, c, body.get("NetworkingConfig"))
        except BaseException:
            shutil.rmtree(cdir, ignore_errors=True)
            raise
        new_volumes: list = []
        try:
            snap_mounts = await self._prepare_rootfs(rec, cid, parent, created, mount_stubs,
                                                     unpack=own_parent)
            try:
                new_volumes = await self._prepare_volumes(c, snap_mounts)
                await self.ctrd.container_create(
                    cid, spec={"ociVersion": "1.0.2"}, image=rec.names[0] if rec.names else "",
                    snapshot_key=cid, snapshotter=self.snapshotter, runtime=self.runtime,
                    labels={"com.docker/engine.bundle.path": cdir})
            except BaseException:
                await self._quiet(self.ctrd.snapshot_remove(cid, snapshotter=self.snapshotter))
                raise
            c.save()
            c.snapshot_mounts = snap_mounts  # for the first start, which comes next
        except BaseException:
            await networking.unregister(self.kernel, c)
            for v in new_volumes:
                await self._quiet(self.volumes.remove(v.name, force=True))
            shutil.rmtree(cdir, ignore_errors=True)
            raise
        self.store.add(c)
        self.emit(c, "create")
        return {"Id": cid, "Warnings": warnings}

    async def _prepare_rootfs(self, rec, cid: str, parent: str, created: str, mount_stubs,
                              *, unpack: bool) -> list:
        """The container's rootfs snapshot on dockerd's init layer over
        ``parent`` (so that the runtime's mount points are not the
        container's changes, for docker commit and a build's RUN); its mounts.

        The image's layers are snapshots already, but for a first run: only
        when the parent is missing are they unpacked (with the manifest and
        config ``rec`` read already), then the snapshot is made again.
        """
        async def prepare():
            _init, mounts = await initlayer.prepare(
                self.ctrd, cid, parent, self.snapshotter,
                labels={"containerd.io/gc.root": created}, extra=mount_stubs,
                tmp=os.path.join(self.paths.exec_root, "mnt"))
            return mounts
        try:
            return await prepare()
        except errors.NotFound:
            if not parent or not unpack:
                raise
        await self.ctrd.unpack_layers(rec.manifest, rec.config, self.snapshotter)
        return await prepare()

    def _volumes_from(self, ref: str, mode: str) -> list[dict]:
        """The mount points ``--volumes-from ref[:ro|:rw]`` shares (not its tmpfs)."""
        other = self.get(ref)
        out = []
        for p in other.data.get("MountPoints") or ():
            if p.get("Type") == "tmpfs":
                continue
            q = dict(p, CopyData=False, Anonymous=False)
            if mode:
                q["RW"] = mode == "rw"
                q["Mode"] = mode
            out.append(q)
        return out

    async def _prepare_volumes(self, c: Container, snap_mounts) -> list:
        """Create the volumes the mount points name (and the missing sources of
        ``-v`` binds); copy the image's content into the empty ones that want it.
        Returns the volumes made here (removed again if the create fails)."""
        made = []
        copies = []
        for p in c.data["MountPoints"]:
            if p["Type"] == "bind":
                if p.get("CreateSource") and not os.path.exists(p["Source"]):
                    try:
                        os.makedirs(p["Source"], mode=0o755)
                    except OSError as e:
                        raise errors.InvalidArgument(
                            f"error while creating mount source path '{p['Source']}': "
                            f"{(e.strerror or str(e)).lower()}") from None
                continue
            if p["Type"] != "volume":
                continue
            existed = p["Name"] in self.volumes.by_name if p["Name"] else False
            try:
                v = await self.volumes.create(p["Name"] or None, p.get("Driver"),
                                              labels=p.get("VolumeLabels") or None,
                                              options=p.get("VolumeOptions") or None,
                                              anonymous=p.get("Anonymous", False))
            except errors.NotFound as e:
                # not a 404 here: the docker CLI would take it for a missing image
                raise errors.InvalidArgument(e.message) from None
            if not existed:
                made.append(v)
            p["Name"], p["Source"], p["Driver"] = v.name, v.path, v.driver
            p.pop("VolumeLabels", None)
            p.pop("VolumeOptions", None)
            if p.get("CopyData") and v.local and not v.options and v.is_empty():
                copies.append((p["Destination"], v.path))
        if copies:
            await asyncio.to_thread(self._copy_up, snap_mounts, copies)
        return made

    def _copy_up(self, snap_mounts, copies) -> None:
        """Copy what the image holds at each destination into its new volume
        (owner, modes and times kept), as dockerd does at first mount."""
        import subprocess

        from pallet.engine import rootfs

        base = os.path.join(self.paths.exec_root, "mnt")
        os.makedirs(base, mode=0o700, exist_ok=True)
        view = rootfs.Mounted(base)
        try:
            view.mount_snapshot(snap_mounts, writable=False)
            with rootfs.opened_root(view.path) as root:
                for dest, target in copies:
                    try:
                        inside = rootfs.resolved_path(root, dest)
                    except OSError:
                        continue  # the image has nothing there
                    src = os.path.join(view.path, inside.lstrip("/"))
                    if not os.path.isdir(src) or os.path.islink(src):
                        continue
                    r = subprocess.run(["cp", "-a", "--", src + "/.", target + "/"],
                                       capture_output=True, timeout=600)
                    if r.returncode != 0:
                        raise errors.PalletError(
                            f"copy image content of {dest} into volume: "
                            f"{r.stderr.decode(errors='replace').strip()}")
        except OSError as e:
            raise errors.PalletError(f"copy image content into volume: {e}") from None
        finally:
            view.close()

    def _write_etc_files(self, c: Container) -> None:
        hostname = c.data["Config"]["Hostname"]
        with open(c.data["HostnamePath"], "w") as f:
            f.write(hostname + "\n")
        with open(c.data["HostsPath"], "w") as f:
            f.write("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                    "fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\n"
                    f"ff02::2\tip6-allrouters\n127.0.1.1\t{hostname}\n")
        resolv = ""
        if c.data["HostConfig"].get("NetworkMode") == "host":
            try:
                with open("/etc/resolv.conf") as f:
                    resolv = f.read()
            except OSError:
                pass
        with open(c.data["ResolvConfPath"], "w") as f:
            f.write(resolv)
