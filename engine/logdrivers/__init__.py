"""dockerd's log drivers beyond the json-file one of :mod:`pallet.engine.logs`:
``local`` (compact length-framed records, rotated and compressed) and
``syslog`` (unix, udp or tcp), checked as dockerd checks them.

dockerd looks at log options twice: at create only the driver and the
option names (and syslog's address, facility and format) are checked, a
400 each; the values are read when the logger starts, so that a bad
``max-size`` fails the start ("failed to initialize logging driver: ...").
Drivers that cannot be read back (syslog) write a ``local`` cache beside
(dockerd 20.10's dual logging: ``cache-disabled``, ``cache-max-size``,
``cache-max-file``, ``cache-compress``), which ``docker logs`` reads.
"""
from __future__ import annotations

import os

from pallet.core import errors

DRIVERS = ("json-file", "local", "syslog", "none")

_COMMON = ("labels", "labels-regex", "env", "env-regex")
JSON_FILE_OPTS = ("max-size", "max-file", "compress", "tag") + _COMMON
LOCAL_OPTS = ("max-size", "max-file", "compress")
SYSLOG_OPTS = ("syslog-address", "syslog-facility", "syslog-tls-ca-cert", "syslog-tls-cert",
               "syslog-tls-key", "syslog-tls-skip-verify", "syslog-format", "tag") + _COMMON
CACHE_OPTS = ("cache-disabled", "cache-max-size", "cache-max-file", "cache-compress")

#: dockerd's defaults of the local driver (and of the dual-logging cache)
LOCAL_MAX_SIZE = 20 << 20
LOCAL_MAX_FILE = 5


def _unknown(driver: str, key: str) -> errors.InvalidArgument:
    if driver == "local":
        return errors.InvalidArgument(f"unknown log opt '{key}' for log driver local")
    return errors.InvalidArgument(f"unknown log opt '{key}' for {driver} log driver")


def validate(log_config: dict) -> dict:
    """Create-time checks of ``HostConfig.LogConfig``; returns it completed."""
    if not isinstance(log_config, dict):
        raise errors.InvalidArgument("invalid LogConfig: JSON object expected")
    driver = log_config.get("Type") or "json-file"
    opts = log_config.get("Config") or {}
    if not isinstance(driver, str):
        raise errors.InvalidArgument(f"invalid LogConfig.Type: {driver!r}")
    if not isinstance(opts, dict) or not all(isinstance(v, str) for v in opts.values()):
        raise errors.InvalidArgument("invalid LogConfig.Config: a map of strings is expected")
    if driver not in DRIVERS:
        raise errors.InvalidArgument(f"error looking up logging plugin {driver}: plugin "
                                     f"\"{driver}\" not found")
    allowed = {"json-file": JSON_FILE_OPTS, "local": LOCAL_OPTS,
               "syslog": SYSLOG_OPTS + CACHE_OPTS}.get(driver)
    if allowed is not None:
        for key in opts:
            if key not in allowed:
                raise _unknown(driver, key)
    if driver == "syslog":
        from pallet.engine.logdrivers import syslog
        syslog.validate(opts)
    return {"Type": driver, "Config": dict(opts)}


def _fail(text: str) -> errors.PalletError:
    return errors.PalletError(f"failed to initialize logging driver: {text}")


def go_size(text: str) -> int:
    """go-units' RAMInBytes, with its error text."""
    from pallet.units.size import ram_in_bytes

    try:
        return ram_in_bytes(text)
    except ValueError:
        raise ValueError(f"invalid size: '{text}'") from None


def go_bool(text: str) -> bool:
    """Go's strconv.ParseBool, with its error text."""
    if text in ("1", "t", "T", "true", "TRUE", "True"):
        return True
    if text in ("0", "f", "F", "false", "FALSE", "False"):
        return False
    raise ValueError(f'strconv.ParseBool: parsing "{text}": invalid syntax')


def go_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f'strconv.Atoi: parsing "{text}": invalid syntax') from None


def json_file_settings(opts: dict) -> dict:
    """The json-file driver's values, read at start as dockerd reads them."""
    try:
        size = go_size(opts["max-size"]) if opts.get("max-size") else 0
        files = go_int(opts["max-file"]) if opts.get("max-file") else 1
        compress = go_bool(opts["compress"]) if opts.get("compress") else False
    except ValueError as e:
        raise _fail(str(e)) from None
    if size < 0 or (opts.get("max-size") and size == 0 and opts["max-size"].strip() != "0"):
        raise _fail(f"invalid size: '{opts['max-size']}'")
    if files < 1:
        raise _fail("max-file cannot be less than 1")
    # without max-size the file never rotates: max-file has nothing to count
    return {"max_size": size, "max_file": files if size else 1, "compress": compress}


def local_settings(opts: dict, prefix: str = "") -> dict:
    """The local driver's values (``prefix`` "cache-" for the dual-logging cache)."""
    def value(key, parse, default, why):
        if not opts.get(prefix + key):
            return default
        try:
            return parse(opts[prefix + key])
        except ValueError as e:
            raise _fail(why.format(key=prefix + key, value=opts[prefix + key], e=e)) from None

    size = value("max-size", go_size, LOCAL_MAX_SIZE, "invalid value for {key}: {value}: {e}")
    files = value("max-file", go_int, LOCAL_MAX_FILE, "invalid value for {key}: {value}: {e}")
    if files < 1:
        raise _fail(f"{prefix}max-file cannot be less than 1")
    compress = value("compress", go_bool, True, "error reading compress log option: {e}")
    return {"max_size": size, "max_file": files, "compress": compress}


def local_path(container_dir: str) -> str:
    return os.path.join(container_dir, "local-logs", "container.log")


def cache_path(container_dir: str) -> str:
    return os.path.join(container_dir, "container-cached-logs", "container.log")


def cache_enabled(opts: dict) -> bool:
    try:
        return not go_bool(opts.get("cache-disabled") or "false")
    except ValueError:
        return True


def open_writers(log_config: dict | None, container_dir: str, info: dict) -> list:
    """The writers of a starting container's log, besides json-file (which
    :class:`~pallet.engine.logs.ContainerLog` writes itself).  Raises
    dockerd's "failed to initialize logging driver" errors."""
    from pallet.engine.logdrivers.local import LocalWriter

    log_config = log_config or {}
    driver = log_config.get("Type") or "json-file"
    opts = log_config.get("Config") or {}
    if driver == "local":
        return [LocalWriter(local_path(container_dir), **local_settings(opts))]
    if driver == "syslog":
        from pallet.engine.logdrivers.syslog import SyslogWriter

        writers = [SyslogWriter.open(opts, info)]
        if cache_enabled(opts):
            try:
                settings = local_settings(opts, "cache-")
            except errors.PalletError:
                settings = local_settings({})  # a bad cache option is only a warning
            writers.append(LocalWriter(cache_path(container_dir), **settings))
        return writers
    return []


def read_source(c) -> tuple[str, str]:
    """Where ``docker logs`` reads a container's log: ``(path, "json"|"local")``;
    NotImplementedYet for a driver that keeps nothing to read."""
    log_config = c.data["HostConfig"].get("LogConfig") or {}
    driver = log_config.get("Type") or "json-file"
    opts = log_config.get("Config") or {}
    if driver == "json-file":
        return c.log_path, "json"
    if driver == "local":
        return local_path(c.dir), "local"
    if driver == "syslog" and cache_enabled(opts):
        return cache_path(c.dir), "local"
    raise errors.NotImplementedYet("configured logging driver does not support reading")
