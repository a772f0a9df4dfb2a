"""The client's settings in docker's ``config.json`` (``--config DIR``, else
``$PALLET_CONFIG``, else ``$DOCKER_CONFIG``, else ``~/.docker``): the keys
docker reads there (``detachKeys``, ``psFormat``, ``imagesFormat``...).
Credentials (``auths``) are read and written by cmd_registry (login, logout).
"""

import json
import os


def config_dir(override=None):
    return (override or os.environ.get("PALLET_CONFIG") or os.environ.get("DOCKER_CONFIG")
            or os.path.join(os.path.expanduser("~"), ".docker"))


def config_path(override=None):
    return os.path.join(config_dir(override), "config.json")


def load(override=None):
    """The parsed file ({} when missing); ValueError when it is not valid JSON."""
    path = config_path(override)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return {}
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except ValueError as e:
        raise ValueError("loading config file: %s: %s" % (path, e)) from None
    if not isinstance(data, dict):
        raise ValueError("loading config file: %s: not a JSON object" % path)
    return data


def save(data, override=None):
    """Write the file atomically with mode 0600 (it holds credentials)."""
    d = config_dir(override)
    os.makedirs(d, mode=0o700, exist_ok=True)
    path = os.path.join(d, "config.json")
    from pallet.core.files import write_atomic

    write_atomic(path, json.dumps(data, indent="\t") + "\n", fsync=False, mode=0o600)
    return path


def setting(name, default=None, override=None):
    """A top-level setting (``detachKeys``, ``psFormat``, ``imagesFormat``...)."""
    try:
        return load(override).get(name, default)
    except ValueError:
        return default
