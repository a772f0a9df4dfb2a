"""Volume plugins: docker's plugin protocol (v1), so that the volume drivers
written for dockerd serve pallet too.

A plugin is found by name, as dockerd's plugin registry finds it, in each
directory of ``[engine] volume-plugin-dirs`` (docker's own by
default: /run/docker/plugins, /etc/docker/plugins, /usr/lib/docker/plugins):
a socket ``NAME.sock`` or ``NAME/NAME.sock``, or a file ``NAME.spec`` (one
line, the plugin's address: ``unix:///path`` or ``tcp://host:port``) or
``NAME.json`` (``{"Name": ..., "Addr": ...}``).  It is activated once
(``POST /Plugin.Activate``, which must list ``VolumeDriver``) and then called
with ``POST /VolumeDriver.{Create,Remove,Mount,Unmount,Path,Get,List,
Capabilities}``, JSON both ways; an answer with a non-empty ``Err`` is an
error of the driver's.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os

from pallet.core import errors

log = logging.getLogger("pallet.api_rest.volume_plugins")

DEFAULT_DIRS = ("/run/docker/plugins", "/etc/docker/plugins", "/usr/lib/docker/plugins")
MEDIA_TYPE = "application/vnd.docker.plugins.v1.2+json"
TIMEOUT_S = 30.0


class VolumePlugin:
    """One activated volume driver plugin and its HTTP connection."""

    def __init__(self, name: str, address: str):
        self.name = name
        self.address = address
        self._session = None
        self.scope = "local"

    def _client(self):
        import aiohttp

        if self._session is None or self._session.closed:
            if self.address.startswith("unix://"):
                connector = aiohttp.UnixConnector(path=self.address[len("unix://"):])
                self._base = "http://plugin"
            elif self.address.startswith(("tcp://", "http://")):
                connector = aiohttp.TCPConnector()
                self._base = "http://" + self.address.split("://", 1)[1]
            else:
                raise errors.PalletError(f"plugin {self.name}: unsupported address "
                                         f"{self.address!r}")
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=TIMEOUT_S))
        return self._session

    async def call(self, method: str, body: dict | None = None) -> dict:
        """``POST /METHOD`` with ``body``; the JSON answer, its ``Err`` raised."""
        import aiohttp

        try:
            session = self._client()
            async with session.post(f"{self._base}/{method}", data=json.dumps(body or {}),
                                    headers={"Accept": MEDIA_TYPE,
                                             "Content-Type": MEDIA_TYPE}) as resp:
                raw = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
            raise errors.PalletError(f"{self.name}: {method}: {e or type(e).__name__}") \
                from None
        try:
            answer = json.loads(raw) if raw.strip() else {}
        except ValueError:
            answer = {"Err": raw.decode(errors="replace").strip()}
        if not isinstance(answer, dict):
            raise errors.PalletError(f"{self.name}: {method}: unexpected answer {answer!r}")
        if answer.get("Err") or status >= 400:
            raise errors.PalletError(f"{self.name}: {answer.get('Err') or f'HTTP {status}'}")
        return answer

    async def activate(self) -> None:
        answer = await self.call("Plugin.Activate")
        if "VolumeDriver" not in (answer.get("Implements") or ()):
            raise errors.NotFound(f"error looking up volume plugin {self.name}: plugin "
                                  f'"{self.name}" does not implement VolumeDriver')
        try:
            caps = await self.call("VolumeDriver.Capabilities")
            self.scope = (caps.get("Capabilities") or {}).get("Scope") or "local"
        except errors.PalletError:
            self.scope = "local"  # an older plugin without Capabilities

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # --- the VolumeDriver calls --------------------------------------------------------
    async def create(self, name: str, options: dict) -> None:
        await self.call("VolumeDriver.Create", {"Name": name, "Opts": options or {}})

    async def remove(self, name: str) -> None:
        await self.call("VolumeDriver.Remove", {"Name": name})

    async def mount(self, name: str, mount_id: str) -> str:
        answer = await self.call("VolumeDriver.Mount", {"Name": name, "ID": mount_id})
        path = answer.get("Mountpoint") or ""
        if not path.startswith("/"):
            raise errors.PalletError(f"{self.name}: VolumeDriver.Mount gave no absolute "
                                     f"Mountpoint for {name}")
        return path

    async def unmount(self, name: str, mount_id: str) -> None:
        await self.call("VolumeDriver.Unmount", {"Name": name, "ID": mount_id})

    async def path(self, name: str) -> str:
        return (await self.call("VolumeDriver.Path", {"Name": name})).get("Mountpoint") or ""

    async def get(self, name: str) -> dict:
        return (await self.call("VolumeDriver.Get", {"Name": name})).get("Volume") or {}


class PluginRegistry:
    """Volume plugins by name, looked up and activated on first use."""

    def __init__(self, dirs=DEFAULT_DIRS):
        self.dirs = [str(d) for d in dirs]
        self._plugins: dict[str, VolumePlugin] = {}
        self._lock = asyncio.Lock()

    def address_of(self, name: str) -> str | None:
        """Where plugin ``name`` listens, or None when no directory has it."""
        if not name or "/" in name or name.startswith("."):
            return None
        for d in self.dirs:
            for sock in (os.path.join(d, f"{name}.sock"), os.path.join(d, name, f"{name}.sock")):
                if os.path.exists(sock):
                    return "unix://" + sock
            spec = os.path.join(d, f"{name}.spec")
            try:
                with open(spec) as f:
                    addr = f.read().strip()
                if addr:
                    return addr
            except OSError:
                pass
            try:
                with open(os.path.join(d, f"{name}.json")) as f:
                    addr = (json.load(f) or {}).get("Addr") or ""
                if addr:
                    return addr
            except (OSError, ValueError, AttributeError):
                pass
        return None

    async def get(self, name: str) -> VolumePlugin:
        async with self._lock:
            plugin = self._plugins.get(name)
            if plugin is not None:
                return plugin
            address = self.address_of(name)
            if address is None:
                raise errors.NotFound(f"error looking up volume plugin {name}: plugin "
                                      f'"{name}" not found')
            plugin = VolumePlugin(name, address)
            try:
                await plugin.activate()
            except BaseException:
                await plugin.close()
                raise
            self._plugins[name] = plugin
            return plugin

    async def close(self) -> None:
        for plugin in self._plugins.values():
            await plugin.close()
        self._plugins.clear()
