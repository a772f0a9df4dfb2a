"""pallet-ctr: containerd's debug client, for pallet-containerd (or the real containerd).

Commands (as ctr spells them, with ctr's aliases and output columns)::

    pallet-ctr [-a ADDRESS] [-n NAMESPACE] version
    pallet-ctr namespaces|ns ls [-q]
    pallet-ctr images|i ls [-q]
    pallet-ctr containers|c ls [-q]
    pallet-ctr tasks|t ls
    pallet-ctr plugins ls

Imports stay inside the functions: the command line starts fast.
"""
from __future__ import annotations

import os
import sys

PROG = "pallet-ctr"
ALIASES = {
    "namespaces": "namespaces", "namespace": "namespaces", "ns": "namespaces",
    "images": "images", "image": "images", "i": "images",
    "containers": "containers", "container": "containers", "c": "containers",
    "tasks": "tasks", "task": "tasks", "t": "tasks",
    "plugins": "plugins", "plugin": "plugins",
    "version": "version",
}
STATUS = {0: "UNKNOWN", 1: "CREATED", 2: "RUNNING", 3: "STOPPED", 4: "PAUSED", 5: "PAUSING"}
UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")


def default_address() -> str:
    from pallet.core.paths import Paths

    return os.environ.get("CONTAINERD_ADDRESS") or Paths().containerd_socket


def tabwrite(rows, minwidth: int, padding: int) -> str:
    """Go's text/tabwriter (padchar ' ', no flags) over rows whose every cell ends in a tab."""
    if not rows:
        return ""
    ncols = max(len(r) for r in rows)
    widths = [minwidth] * ncols
    for r in rows:
        for i, cell in enumerate(r):
            widths[i] = max(widths[i], len(cell) + padding)
    return "".join("".join(cell.ljust(widths[i]) for i, cell in enumerate(r)) + "\n"
                   for r in rows)


def human_bytes(n: int) -> str:
    """containerd's progress.Bytes: one decimal and a binary unit."""
    f, i = float(n), 0
    while f >= 1024 and i < len(UNITS) - 1:
        f /= 1024
        i += 1
    return f"{f:.1f} {UNITS[i]}"


def _labels(labels) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "-"


# --- commands ---------------------------------------------------------------------

async def cmd_version(c, args) -> str:
    import platform

    from importlib.metadata import PackageNotFoundError, version

    try:
        v = "v" + version("pallet")
    except PackageNotFoundError:
        v = "v0.0.0"
    out = ["Client:", f"  Version:  {v}", "  Revision: pallet",
           f"  Python version: {platform.python_version()}", ""]
    server = await c.version()
    out += ["Server:", f"  Version:  {server['version']}", f"  Revision: {server['revision']}"]
    try:
        out.append(f"  UUID: {await c.server_uuid()}")
    except Exception:  # an older server without Introspection.Server
        pass
    return "\n".join(out) + "\n"


async def cmd_namespaces(c, args) -> str:
    namespaces = await c.namespaces()
    if args.quiet:
        return "".join(n.name + "\n" for n in namespaces)
    rows = [["NAME", "LABELS"]] + [[n.name, ",".join(
        f"{k}={v}" for k, v in sorted(n.labels.items()))] for n in namespaces]
    return tabwrite(rows, 1, 1)


async def _image_row(c, image) -> list[str]:
    """REF TYPE DIGEST SIZE PLATFORMS LABELS, as ctr images ls prints them."""
    from pallet.core.containerd import (INDEX_TYPES, descriptor_to_dict, select_manifest)
    from pallet.core import errors

    target = descriptor_to_dict(image.target)
    size, platforms = "-", "-"
    try:
        doc = await c.content_read_json(target["digest"])
        plats = []
        total = target["size"]
        desc = target
        if target["mediaType"] in INDEX_TYPES or "manifests" in doc:
            for m in doc.get("manifests") or ():
                p = m.get("platform") or {}
                if p.get("os"):
                    plats.append("/".join(x for x in (p.get("os"), p.get("architecture"),
                                                      p.get("variant")) if x))
            desc = select_manifest(doc)
            total += desc["size"]
            doc = await c.content_read_json(desc["digest"])
        cfg = doc.get("config") or {}
        total += cfg.get("size", 0) + sum(layer.get("size", 0) for layer in doc.get("layers") or ())
        if not plats and cfg.get("digest"):
            conf = await c.content_read_json(cfg["digest"])
            plats.append("/".join(x for x in (conf.get("os"), conf.get("architecture"),
                                              conf.get("variant")) if x))
        size = human_bytes(total)
        platforms = ",".join(sorted(set(plats))) or "-"
    except errors.PalletError:
        pass  # content missing: ctr shows the row all the same
    return [image.name, target["mediaType"], target["digest"], size, platforms,
            _labels(image.labels)]


async def cmd_images(c, args) -> str:
    images = await c.images(args.filters)
    if args.quiet:
        return "".join(i.name + "\n" for i in images)
    rows = [["REF", "TYPE", "DIGEST", "SIZE", "PLATFORMS", "LABELS"]]
    for image in images:
        rows.append(await _image_row(c, image))
    return tabwrite(rows, 1, 1)


async def cmd_containers(c, args) -> str:
    containers = await c.containers(args.filters)
    if args.quiet:
        return "".join(x.id + "\n" for x in containers)
    rows = [["CONTAINER", "IMAGE", "RUNTIME"]] + [
        [x.id, x.image or "-", x.runtime.name] for x in containers]
    return tabwrite(rows, 4, 4)


async def cmd_tasks(c, args) -> str:
    tasks = await c.tasks()
    if args.quiet:
        return "".join(t.id + "\n" for t in tasks)
    rows = [["TASK", "PID", "STATUS"]] + [
        [t.id, str(t.pid), STATUS.get(t.status, "UNKNOWN")] for t in tasks]
    return tabwrite(rows, 4, 4)


async def cmd_plugins(c, args) -> str:
    plugins = await c.plugins(args.filters)
    if args.quiet:
        return "".join(f"{p.type}.{p.id}\n" for p in plugins)
    rows = [["TYPE", "ID", "PLATFORMS", "STATUS"]]
    for p in plugins:
        plats = ",".join("/".join(x for x in (q.os, q.architecture, q.variant) if x)
                         for q in p.platforms) or "-"
        status = "ok"
        if p.HasField("init_err") and (p.init_err.code or p.init_err.message):
            status = "skip" if "skip" in p.init_err.message else "error"
        rows.append([p.type, p.id, plats, status])
    return tabwrite(rows, 4, 4)


COMMANDS = {"version": cmd_version, "namespaces": cmd_namespaces, "images": cmd_images,
            "containers": cmd_containers, "tasks": cmd_tasks, "plugins": cmd_plugins}


def parse_args(argv):
    import argparse

    p = argparse.ArgumentParser(prog=PROG, description="containerd's debug client, by pallet")
    p.add_argument("-a", "--address", default=None, help="address for containerd's GRPC server")
    p.add_argument("-n", "--namespace", default=os.environ.get("CONTAINERD_NAMESPACE", "default"),
                   help="namespace to use with commands")
    p.add_argument("--timeout", type=float, default=0, help="total timeout for ctr commands")
    p.add_argument("--debug", action="store_true", help="enable debug output in logs")
    p.add_argument("command", help="version, namespaces, images, containers, tasks, plugins")
    p.add_argument("rest", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    command = ALIASES.get(args.command)
    if command is None:
        p.error(f"no such command {args.command!r}")
    args.command = command
    args.quiet, args.filters = False, []
    if command != "version":
        sub = argparse.ArgumentParser(prog=f"{PROG} {command}")
        sub.add_argument("verb", choices=("ls", "list"))
        sub.add_argument("-q", "--quiet", action="store_true", help="print only the names")
        sub.add_argument("filters", nargs="*")
        if not args.rest:
            sub.error("a subcommand is required: ls")
        s = sub.parse_args(args.rest)
        args.quiet, args.filters = s.quiet, s.filters
    elif args.rest:
        p.error(f"version takes no arguments: {' '.join(args.rest)}")
    return args


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    import asyncio

    from pallet.core.containerd import Containerd
    from pallet.core.errors import PalletError

    async def run() -> str:
        async with Containerd(args.address or default_address(), args.namespace,
                              timeout=args.timeout or None) as c:
            return await COMMANDS[args.command](c, args)

    try:
        out = asyncio.run(run())
    except PalletError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    sys.stdout.write(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
