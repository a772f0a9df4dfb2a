"""``pallet-runc exec``: the process to start, built as runc 1.1's getProcess builds it.

From ``--process`` (a process.json), or else from the bundle's config.json
process with the command line's arguments and overrides: ``--cwd``,
``--env`` (appended: later duplicates win in the container), ``--tty``,
``--user uid[:gid]`` (the gid stays the spec's without one), ``--cap``
(added to the bounding, effective and permitted sets, and to the ambient set
only when the spec has an inheritable set), ``--additional-gids``,
``--no-new-privs``.  Then runc's validateProcessSpec.
"""
from __future__ import annotations

import os

from pallet.commands.runc import Fatal
from pallet.commands.runc_flags import go_quote


def process_of(opts: dict, argv: list[str], bundle: str) -> dict:
    from pallet.oci import jsonlite
    path = opts.get("process")
    if path:
        try:
            with open(path, "rb") as f:
                data = f.read().decode(errors="replace")
        except OSError as e:
            raise Fatal(f"open {path}: {os.strerror(e.errno).lower()}") from None
        try:
            process, _ = jsonlite.first_value(data)
        except ValueError as e:
            raise Fatal(str(e)) from None
        validate(process)
        return process
    try:
        os.chdir(bundle)
    except OSError as e:
        raise Fatal(f"chdir {bundle}: {os.strerror(e.errno).lower()}") from None
    try:
        with open("config.json", "rb") as f:
            spec = jsonlite.loads(f.read())
    except FileNotFoundError:
        raise Fatal("JSON specification file config.json not found") from None
    except (OSError, ValueError) as e:
        raise Fatal(str(e)) from None
    process = dict((spec or {}).get("process") or {})
    process["args"] = list(argv)
    if opts.get("cwd"):
        process["cwd"] = opts["cwd"]
    if opts.get("apparmor"):
        process["apparmorProfile"] = opts["apparmor"]
    if opts.get("process-label"):
        process["selinuxLabel"] = opts["process-label"]
    if opts.get("cap"):
        caps = {k: list(v) for k, v in (process.get("capabilities") or {}).items()
                if v is not None}
        has_inheritable = (process.get("capabilities") or {}).get("inheritable") is not None
        for cap in opts["cap"]:
            for key in ("bounding", "effective", "permitted"):
                caps.setdefault(key, []).append(cap)
            if has_inheritable:
                caps.setdefault("ambient", []).append(cap)
        process["capabilities"] = caps
    process["env"] = list(process.get("env") or []) + list(opts.get("env") or [])
    process["terminal"] = bool(opts.get("tty"))
    if "no-new-privs" in opts:
        process["noNewPrivileges"] = bool(opts["no-new-privs"])
    user = dict(process.get("user") or {})
    if opts.get("user"):
        uid, sep, gid = opts["user"].partition(":")
        if sep:
            user["gid"] = _atoi(gid, "gid")
        user["uid"] = _atoi(uid, "uid")
    for gid in opts.get("additional-gids") or ():
        if gid < 0:
            raise Fatal(f"additional-gids must be a positive number {gid}")
        user.setdefault("additionalGids", []).append(gid)
    process["user"] = user
    validate(process)
    return process


def _atoi(text: str, what: str) -> int:
    body = text[1:] if text[:1] in "+-" else text
    if not body.isdigit() or not body.isascii():
        raise Fatal(f"parsing {text} as int for {what} failed: strconv.Atoi: parsing "
                    f"{go_quote(text)}: invalid syntax")
    return int(text) & 0xFFFFFFFF


def validate(process) -> None:
    """runc's validateProcessSpec."""
    if not isinstance(process, dict):
        raise Fatal("process property must not be empty")
    cwd = process.get("cwd") or ""
    if not cwd:
        raise Fatal("Cwd property must not be empty")
    if not cwd.startswith("/"):
        raise Fatal("Cwd must be an absolute path")
    if not process.get("args"):
        raise Fatal("args must not be empty")
    if process.get("selinuxLabel"):
        raise Fatal("selinux label is specified in config, but selinux is disabled or not "
                    "supported")


def sub_cgroups(args) -> dict[str, str] | None:
    """runc's getSubCgroupPaths: ``--cgroup [controllers:]path`` -> controller -> path
    ("" for every controller)."""
    if not args:
        return None
    paths: dict[str, str] = {}
    for arg in args:
        parts = arg.split(":", 2)
        if len(parts) > 2:
            raise Fatal(f"invalid --cgroup argument: {arg}")
        if len(parts) == 1:
            if len(args) != 1:
                raise Fatal(f"invalid --cgroup argument: {arg} (missing <controller>: prefix)")
            paths[""] = arg
            continue
        # runc 1.1 takes an empty controller as every one, and the last of
        # one named twice
        for ctrl in parts[0].split(","):
            paths[ctrl] = parts[1]
    return paths
