"""Network configuration lists (the CNI spec's "Configuration format").

A list names the network and the plugins run in order::

    {"cniVersion": "1.0.0", "name": "mynet",
     "plugins": [{"type": "bridge", ...}, {"type": "portmap", "capabilities": {...}}]}

A ``.conf`` (or ``.json``) file holds one plugin configuration with its
``name`` and ``cniVersion``; libcni turns it into a one-plugin list, and so
does :func:`parse`.  A configuration directory is read as libcni's
``ConfFiles`` does: files with those extensions, by sorted name.
"""
from __future__ import annotations

import json
import os
from typing import Any

import attrs

from pallet.core.errors import InvalidArgument, NotFound

EXTENSIONS = (".conflist", ".conf", ".json")
DEFAULT_CONF_DIR = "/etc/cni/net.d"
#: /opt/cni/bin is where Kubernetes installs plugins; Debian's
#: containernetworking-plugins puts them in /usr/lib/cni
DEFAULT_PLUGIN_DIRS = ("/opt/cni/bin", "/usr/lib/cni")


@attrs.frozen
class NetworkConfigList:
    """One network: its name, CNI version, the plugin configurations in
    order (dicts, as written), and the exact bytes they came from."""

    name: str
    cni_version: str
    plugins: tuple[dict, ...]
    raw: bytes = attrs.field(repr=False)
    disable_check: bool = False
    source: str = ""

    @property
    def types(self) -> tuple[str, ...]:
        return tuple(p["type"] for p in self.plugins)

    def capabilities(self) -> set[str]:
        """Every capability some plugin of the list declares (``portMappings``...)."""
        caps: set[str] = set()
        for p in self.plugins:
            caps.update(k for k, v in (p.get("capabilities") or {}).items() if v)
        return caps


def _fail(source: str, why: str) -> InvalidArgument:
    where = f"cni configuration {source}" if source else "cni configuration"
    return InvalidArgument(f"{where}: {why}")


def parse(data: bytes | str, source: str = "") -> NetworkConfigList:
    """A configuration list from a ``.conflist`` or a single ``.conf``."""
    raw = data.encode() if isinstance(data, str) else bytes(data)
    try:
        doc = json.loads(raw)
    except ValueError as e:
        raise _fail(source, f"not json ({e})") from None
    if not isinstance(doc, dict):
        raise _fail(source, "not a json object")
    if "plugins" not in doc:
        # a single plugin's configuration: a list of one, as libcni's ConfListFromConf
        if not doc.get("type"):
            raise _fail(source, "no plugins and no type")
        one = {"cniVersion": doc.get("cniVersion", ""), "name": doc.get("name", ""),
               "plugins": [doc]}
        return _from_doc(one, json.dumps(one).encode(), source)
    return _from_doc(doc, raw, source)


def _from_doc(doc: dict, raw: bytes, source: str) -> NetworkConfigList:
    name = doc.get("name")
    if not isinstance(name, str) or not name:
        raise _fail(source, "no network name")
    plugins = doc.get("plugins")
    if not isinstance(plugins, list) or not plugins:
        raise _fail(source, f"network {name} has no plugins")
    for i, p in enumerate(plugins):
        if not isinstance(p, dict) or not isinstance(p.get("type"), str) or not p["type"]:
            raise _fail(source, f"plugin {i} of network {name} has no type")
    version = doc.get("cniVersion") or "0.1.0"
    if not isinstance(version, str):
        raise _fail(source, f"network {name}: cniVersion is not a string")
    return NetworkConfigList(name=name, cni_version=version, plugins=tuple(plugins), raw=raw,
                             disable_check=bool(doc.get("disableCheck")), source=source)


def load_file(path: str) -> NetworkConfigList:
    """Read one configuration file."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise _fail(path, (e.strerror or str(e)).lower()) from None
    return parse(data, path)


def conf_files(conf_dir: str) -> list[str]:
    """The configuration files of ``conf_dir`` in the order libcni reads them."""
    try:
        names = sorted(os.listdir(conf_dir))
    except FileNotFoundError:
        return []
    return [os.path.join(conf_dir, n) for n in names
            if n.endswith(EXTENSIONS) and os.path.isfile(os.path.join(conf_dir, n))]


def load_dir(conf_dir: str, max_count: int = 1) -> list[NetworkConfigList]:
    """The first ``max_count`` valid lists of ``conf_dir`` (files that do not
    parse are skipped, as containerd's CRI plugin skips them); NotFound when
    there is none."""
    found: list[NetworkConfigList] = []
    for path in conf_files(conf_dir):
        try:
            found.append(load_file(path))
        except InvalidArgument:
            continue
        if len(found) >= max_count:
            break
    if not found:
        raise NotFound(f"no network config found in {conf_dir}: cni plugin not initialized")
    return found


def render_template(template: str, values: dict[str, Any]) -> str:
    """Fill a configuration template's ``{{.Key}}`` fields (the subset of Go
    templates containerd's ``conf_template`` is written with: plain fields)."""
    import re

    def repl(m: re.Match) -> str:
        key = m.group(1)
        if key not in values:
            raise InvalidArgument(f"cni template: unknown field .{key}")
        v = values[key]
        return v if isinstance(v, str) else json.dumps(v)
    return re.sub(r"\{\{\s*\.(\w+)\s*\}\}", repl, template)
