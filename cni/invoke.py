"""Running one CNI plugin (the CNI spec's "Execution protocol").

The plugin is an executable named by the configuration's ``type``, found in
the first plugin directory that has it.  Parameters travel in the
environment (``CNI_COMMAND``, ``CNI_CONTAINERID``, ``CNI_NETNS``,
``CNI_IFNAME``, ``CNI_ARGS``, ``CNI_PATH``, on top of the caller's own, as
libcni does: plugins run iptables and need ``PATH``), the configuration on
stdin; the result comes back on stdout, and on failure (non-zero exit) an
error object ``{"code", "msg", "details"}`` does.
"""
from __future__ import annotations

import json
import os
import subprocess
from typing import Mapping, Sequence

import attrs

from pallet.core.errors import NotFound, PalletError

#: how long one plugin may run (bridge, host-local and portmap take milliseconds;
#: dhcp may wait for a lease)
DEFAULT_TIMEOUT = 60.0


class CNIError(PalletError):
    """A plugin failed: its error code, message and details (spec "Error")."""

    def __init__(self, plugin: str, command: str, code: int, msg: str, details: str = ""):
        self.plugin, self.command, self.code, self.msg, self.details = \
            plugin, command, code, msg, details
        text = f"plugin type={plugin!r} failed ({command.lower()}): {msg}"
        if details:
            text += f": {details}"
        super().__init__(text)


@attrs.frozen
class Environment:
    """What the ``CNI_*`` variables say for one attachment."""

    container_id: str
    netns: str
    ifname: str = "eth0"
    #: ``CNI_ARGS`` pairs, in order (``IgnoreUnknown=1;K8S_POD_NAME=...``)
    args: tuple[tuple[str, str], ...] = ()

    def variables(self, command: str, plugin_dirs: Sequence[str]) -> dict[str, str]:
        return {"CNI_COMMAND": command, "CNI_CONTAINERID": self.container_id,
                "CNI_NETNS": self.netns, "CNI_IFNAME": self.ifname,
                "CNI_ARGS": ";".join(f"{k}={v}" for k, v in self.args),
                "CNI_PATH": os.pathsep.join(plugin_dirs)}


def find_plugin(name: str, plugin_dirs: Sequence[str]) -> str:
    """The path of plugin ``name`` in the first directory that has it."""
    if not name or "/" in name or name in (".", ".."):
        raise NotFound(f"cni plugin {name!r}: not a plugin name")
    for d in plugin_dirs:
        path = os.path.join(d, name)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    raise NotFound(f"failed to find plugin {name!r} in path {list(plugin_dirs)}")


def run(plugin: str, command: str, config: Mapping, env: Environment,
        plugin_dirs: Sequence[str], *, timeout: float = DEFAULT_TIMEOUT) -> dict | None:
    """Run ``plugin`` with ``command`` (ADD, DEL, CHECK, VERSION) and ``config``
    on stdin; the decoded result (None when the plugin prints nothing, as DEL
    and CHECK do).  A failure raises :class:`CNIError`."""
    path = find_plugin(plugin, plugin_dirs)
    environ = dict(os.environ)
    environ.update(env.variables(command, plugin_dirs))
    try:
        proc = subprocess.run([path], input=json.dumps(config).encode(), env=environ,
                              capture_output=True, timeout=timeout, cwd="/")
    except subprocess.TimeoutExpired:
        raise CNIError(plugin, command, 0, f"no answer after {timeout:g}s") from None
    except OSError as e:
        raise CNIError(plugin, command, 0, (e.strerror or str(e)).lower()) from None
    out = proc.stdout.strip()
    if proc.returncode != 0:
        raise _error(plugin, command, out, proc.stderr, proc.returncode)
    if not out:
        return None
    try:
        result = json.loads(out)
    except ValueError:
        raise CNIError(plugin, command, 0, f"result is not json: {out[:200]!r}") from None
    return result


def _error(plugin: str, command: str, out: bytes, err: bytes, status: int) -> CNIError:
    try:
        doc = json.loads(out)
        if isinstance(doc, dict) and ("msg" in doc or "code" in doc):
            return CNIError(plugin, command, int(doc.get("code") or 0), str(doc.get("msg", "")),
                            str(doc.get("details") or ""))
    except ValueError:
        pass
    text = (out or err).decode(errors="replace").strip() or f"exit status {status}"
    return CNIError(plugin, command, 0, text)
