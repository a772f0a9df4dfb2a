"""pallet-ctr: containerd's debug client, for pallet-containerd (or the real containerd).

Commands, flags, aliases and output as Debian's ``ctr`` (containerd 1.6)
spells them::

    pallet-ctr [-a ADDRESS] [-n NAMESPACE] [--timeout D] COMMAND ...
    version | plugins ls | namespaces (ls, create, rm)
    images (pull, ls, rm, tag, import, export, check)
    containers (create, ls, info, rm)
    tasks (start, ls, kill, ps, exec, pause, resume, rm, metrics, attach)
    run | snapshots (ls, info, rm) | content ls | events | leases (ls, create, rm)

The image commands live in :mod:`.ctr_images`, the ones that run processes
(run, containers create, tasks start/exec/attach) in :mod:`.ctr_run`.
Imports stay inside the functions: the command line starts fast.
"""
from __future__ import annotations

import os
import sys

PROG = "pallet-ctr"
STATUS = {0: "UNKNOWN", 1: "CREATED", 2: "RUNNING", 3: "STOPPED", 4: "PAUSED", 5: "PAUSING"}


class UsageError(Exception):
    """Bad command line: printed with the command's name, exit status 1 (as ctr)."""


class UnknownCommand(UsageError):
    """No such command (ctr says "No help topic" and exits 3)."""


class ExitStatus(Exception):
    """End the command with this exit status (the task's, for run and start)."""

    def __init__(self, code: int):
        super().__init__(code)
        self.code = code


def default_address() -> str:
    from pallet.core.paths import DEFAULT_EXEC_ROOT

    return os.environ.get("CONTAINERD_ADDRESS") or \
        os.path.join(DEFAULT_EXEC_ROOT, "containerd", "containerd.sock")


# --- output -----------------------------------------------------------------------------

def tabwriter(text: str, minwidth: int, tabwidth: int, padding: int, padchar: str = " ") -> str:
    """Go's text/tabwriter (no flags) over ``text``: cells end in a tab; the text
    after a line's last tab is not aligned.  Columns are aligned per block of
    consecutive lines that have the column, as Go does."""
    lines = [line.split("\t") for line in text.split("\n")]
    widths = [[0] * max(len(c) - 1, 0) for c in lines]

    def block(line0: int, line1: int, col: int) -> None:
        i = line0
        while i < line1:
            if col >= len(lines[i]) - 1:
                i += 1
                continue
            j, width = i, minwidth
            while j < line1 and col < len(lines[j]) - 1:
                width = max(width, len(lines[j][col]) + padding)
                j += 1
            if padchar == "\t":
                width = -(-width // tabwidth) * tabwidth
            for k in range(i, j):
                widths[k][col] = width
            block(i, j, col + 1)
            i = j
    block(0, len(lines), 0)
    out = []
    for cells, ws in zip(lines, widths):
        parts = []
        for cell, w in zip(cells, ws):
            if padchar == "\t":
                parts.append(cell + "\t" * (-(-(w - len(cell)) // tabwidth)))
            else:
                parts.append(cell + padchar * (w - len(cell)))
        parts.append(cells[-1])
        out.append("".join(parts))
    return "\n".join(out)


def table(rows, minwidth=4, tabwidth=8, padding=4, padchar=" ", trailing_tab=True,
          header_tab=None) -> str:
    """Rows of cells, written as ctr's ``Fprintf(w, "%s\\t%s\\t\\n")`` lines are:
    ``trailing_tab`` says whether the rows end in a tab, ``header_tab`` (default:
    the same) whether the first row does."""
    if header_tab is None:
        header_tab = trailing_tab
    lines = []
    for i, r in enumerate(rows):
        end = "\t" if (header_tab if i == 0 else trailing_tab) else ""
        lines.append("\t".join(r) + end + "\n")
    return tabwriter("".join(lines), minwidth, tabwidth, padding, padchar)


def labels_text(labels, sep: str = ",") -> str:
    return sep.join(f"{k}={v}" for k, v in sorted(labels.items()))


def go_time(ts) -> str:
    """A protobuf Timestamp as Go's time.Time.String() prints a UTC time."""
    import datetime

    dt = datetime.datetime.fromtimestamp(ts.seconds, datetime.timezone.utc)
    frac = f".{ts.nanos:09d}".rstrip("0") if ts.nanos else ""
    return dt.strftime("%Y-%m-%d %H:%M:%S") + frac + " +0000 UTC"


def rfc3339(ts) -> str:
    """A protobuf Timestamp as Go's JSON encoding of a time (RFC 3339, nanoseconds)."""
    import datetime

    dt = datetime.datetime.fromtimestamp(ts.seconds, datetime.timezone.utc)
    frac = f".{ts.nanos:09d}".rstrip("0") if ts.nanos else ""
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + frac + "Z"


def go_json(obj) -> str:
    """json.MarshalIndent(obj, "", "    ") as Go writes it."""
    import json

    return json.dumps(obj, indent=4, ensure_ascii=False).replace("<", "\\u003c") \
        .replace(">", "\\u003e").replace("&", "\\u0026")


# --- the command line -------------------------------------------------------------------

class Flags:
    """Parsed flags of one command: attributes by flag name (dashes as underscores)."""

    def __init__(self):
        self.args: list[str] = []


def parse_flags(argv, spec: dict, *, stop_at_positional: bool = True) -> Flags:
    """urfave/cli's rules: ``-f``/``--flag``, ``value`` after or ``=value``, flags before
    the first positional argument (ctr's run and exec pass the rest to the process).

    ``spec``: {name: (kind, [aliases], default)} with kind ``bool``, ``str``,
    ``list`` (repeatable) or ``int``.
    """
    f = Flags()
    names = {}
    for name, (kind, aliases, default) in spec.items():
        setattr(f, name.replace("-", "_"), list(default or ()) if kind == "list" else default)
        for n in (name, *aliases):
            names[n] = (name, kind)
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            f.args.extend(argv[i + 1:])
            return f
        if not arg.startswith("-") or arg == "-":
            if stop_at_positional:
                f.args.extend(argv[i:])
                return f
            f.args.append(arg)
            i += 1
            continue
        name = arg.lstrip("-")
        value = None
        if "=" in name:
            name, value = name.split("=", 1)
        if name not in names:
            raise UsageError(f"flag provided but not defined: -{name}")
        key, kind = names[name]
        attr = key.replace("-", "_")
        if kind == "bool":
            setattr(f, attr, value is None or value.lower() in ("1", "t", "true"))
        else:
            if value is None:
                i += 1
                if i >= len(argv):
                    raise UsageError(f"flag needs an argument: -{name}")
                value = argv[i]
            if kind == "list":
                getattr(f, attr).append(value)
            elif kind == "int":
                try:
                    setattr(f, attr, int(value))
                except ValueError:
                    raise UsageError(f"invalid value {value!r} for flag -{name}") from None
            else:
                setattr(f, attr, value)
        i += 1
    return f


GLOBAL_FLAGS = {
    "address": ("str", ["a"], None),
    "namespace": ("str", ["n"], None),
    "timeout": ("str", [], "0s"),
    "connect-timeout": ("str", [], "0s"),
    "debug": ("bool", [], False),
    "help": ("bool", ["h"], False),
    "version": ("bool", ["v"], False),
}


def go_duration(text: str) -> float:
    """Seconds of a Go duration string (``1h30m``, ``10s``, ``0``)."""
    from pallet.units.duration import parse_go_duration

    try:
        return parse_go_duration(text) / 1e9 if text else 0.0
    except ValueError:
        raise UsageError(f"invalid duration {text!r}") from None


# --- simple commands ----------------------------------------------------------------------

async def cmd_version(c, argv, ctx) -> str:
    import platform

    from importlib.metadata import PackageNotFoundError, version

    parse_flags(argv, {})
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
    except Exception:  # noqa: BLE001 - an older server without Introspection.Server
        pass
    return "\n".join(out) + "\n"


async def cmd_plugins_ls(c, argv, ctx) -> str:
    f = parse_flags(argv, {"quiet": ("bool", ["q"], False), "detailed": ("bool", ["d"], False)},
                    stop_at_positional=False)
    plugins = await c.plugins(f.args)
    if f.quiet:
        return "".join(f"{p.type}.{p.id}\n" for p in plugins)
    if f.detailed:
        out = []
        for p in plugins:
            out.append(f"Type:          {p.type}\nID:            {p.id}\n")
            if p.requires:
                out.append("Requires:      \n" + "".join(f"               {r}\n"
                                                         for r in p.requires))
            if p.platforms:
                out.append("Platforms:     " + ",".join(_platform(q) for q in p.platforms) + "\n")
            if p.exports:
                out.append("Exports:       \n" + "".join(f"               {k}\t\t{v}\n"
                                                        for k, v in sorted(p.exports.items())))
            if p.HasField("init_err") and p.init_err.message:
                out.append(f"Error:         \n               Code:\t{p.init_err.code}\n"
                           f"               Message:\t{p.init_err.message}\n")
            out.append("\n")
        return "".join(out)
    rows = [["TYPE", "ID", "PLATFORMS", "STATUS"]]
    for p in plugins:
        status = "ok"
        if p.HasField("init_err") and (p.init_err.code or p.init_err.message):
            status = "skip" if "skip" in p.init_err.message else "error"
        rows.append([p.type, p.id, ",".join(_platform(q) for q in p.platforms) or "-", status])
    return table(rows)


def _platform(q) -> str:
    return "/".join(x for x in (q.os, q.architecture, q.variant) if x)


async def cmd_namespaces_ls(c, argv, ctx) -> str:
    f = parse_flags(argv, {"quiet": ("bool", ["q"], False)})
    namespaces = await c.namespaces()
    if f.quiet:
        return "".join(n.name + "\n" for n in namespaces)
    rows = [["NAME", "LABELS"]] + [[n.name, labels_text(n.labels)] for n in namespaces]
    return table(rows, 1, 8, 1)


async def cmd_namespaces_create(c, argv, ctx) -> str:
    f = parse_flags(argv, {})
    if not f.args:
        raise UsageError("must specify a namespace name")
    labels = dict(_key_value(x) for x in f.args[1:])
    await c.namespace_create(f.args[0], labels)
    return ""


async def cmd_namespaces_rm(c, argv, ctx) -> str:
    from pallet.core import errors

    f = parse_flags(argv, {"cgroup": ("bool", ["c"], False)})
    if not f.args:
        raise UsageError("must specify at least one namespace")
    failed = None
    out = []
    for name in f.args:
        try:
            await c.namespace_delete(name)
            out.append(name + "\n")
        except errors.PalletError as e:
            failed = e
            print(f"unable to delete {name}: {e}", file=sys.stderr)
    if failed is not None:
        sys.stdout.write("".join(out))
        raise ExitStatus(1)
    return "".join(out)


def _key_value(text: str) -> tuple[str, str]:
    key, _, value = text.partition("=")
    return key, value


async def cmd_containers_ls(c, argv, ctx) -> str:
    f = parse_flags(argv, {"quiet": ("bool", ["q"], False)}, stop_at_positional=False)
    containers = await c.containers(f.args)
    if f.quiet:
        return "".join(x.id + "\n" for x in containers)
    rows = [["CONTAINER", "IMAGE", "RUNTIME"]] + [
        [x.id, x.image or "-", x.runtime.name] for x in containers]
    return table(rows)


def container_json(x, spec: dict) -> dict:
    """containers.Container as ctr's ``containers info`` prints it (Go field names)."""
    runtime_options = None
    if x.runtime.HasField("options"):
        runtime_options = {"type_url": x.runtime.options.type_url}
        if x.runtime.options.value:
            import base64

            runtime_options["value"] = base64.b64encode(x.runtime.options.value).decode()
    return {
        "ID": x.id, "Labels": dict(x.labels) or None, "Image": x.image,
        "Runtime": {"Name": x.runtime.name, "Options": runtime_options},
        "SnapshotKey": x.snapshot_key, "Snapshotter": x.snapshotter,
        "CreatedAt": rfc3339(x.created_at), "UpdatedAt": rfc3339(x.updated_at),
        "Extensions": {k: {"type_url": v.type_url} for k, v in x.extensions.items()} or None,
        "Spec": spec or None,
    }


async def cmd_containers_info(c, argv, ctx) -> str:
    from pallet.containerd.client import spec_of

    f = parse_flags(argv, {"spec": ("bool", [], False)})
    if not f.args:
        raise UsageError("container id must be provided")
    x = await c.container_get(f.args[0])
    if f.spec:
        return go_json(spec_of(x)) + "\n"
    return go_json(container_json(x, spec_of(x))) + "\n"


async def cmd_containers_rm(c, argv, ctx) -> str:
    from pallet.core import errors

    f = parse_flags(argv, {"keep-snapshot": ("bool", [], False)}, stop_at_positional=False)
    if not f.args:
        raise UsageError("must specify at least one container to delete")
    failed = False
    for cid in f.args:
        try:
            await delete_container(c, cid, keep_snapshot=f.keep_snapshot)
        except errors.PalletError as e:
            failed = True
            print(f"failed to delete container {cid!r}: {e}", file=sys.stderr)
    if failed:
        raise ExitStatus(1)
    return ""


async def delete_container(c, cid: str, *, keep_snapshot: bool = False) -> None:
    """Delete a container (refused while it has a live task), with its snapshot."""
    from pallet.core import errors

    x = await c.container_get(cid)
    try:
        p = await c.task_get(cid)
    except errors.NotFound:
        p = None
    if p is not None:
        if p.status != 3:  # not stopped
            raise errors.FailedPrecondition(f"cannot delete a non stopped container: "
                                            f"{{{STATUS.get(p.status, 'unknown').lower()} "
                                            f"{p.exit_status} {rfc3339(p.exited_at)}}}")
        await c.task_delete(cid)
    await c.container_delete(cid)
    if x.snapshot_key and not keep_snapshot:
        try:
            await c.snapshot_remove(x.snapshot_key, snapshotter=x.snapshotter or None)
        except errors.NotFound:
            pass


async def cmd_tasks_ls(c, argv, ctx) -> str:
    f = parse_flags(argv, {"quiet": ("bool", ["q"], False)})
    tasks = await c.tasks()
    if f.quiet:
        return "".join(t.id + "\n" for t in tasks)
    rows = [["TASK", "PID", "STATUS"]] + [
        [t.id, str(t.pid), STATUS.get(t.status, "UNKNOWN")] for t in tasks]
    return table(rows, trailing_tab=False, header_tab=True)


def signal_number(name: str) -> int:
    """A signal from ``SIGTERM``, ``TERM`` or ``15``."""
    import signal

    if name.isdigit():
        return int(name)
    upper = name.upper()
    if not upper.startswith("SIG"):
        upper = "SIG" + upper
    sig = getattr(signal.Signals, upper, None)
    if sig is None:
        raise UsageError(f"invalid signal {name!r}")
    return int(sig)


async def cmd_tasks_kill(c, argv, ctx) -> str:
    from pallet.containerd.client import spec_of

    f = parse_flags(argv, {"signal": ("str", ["s"], ""), "exec-id": ("str", [], ""),
                           "all": ("bool", ["a"], False)})
    if not f.args:
        raise UsageError("container id must be provided")
    if f.all and f.exec_id:
        raise UsageError("specify an exec-id or all; not both")
    cid = f.args[0]
    if f.signal:
        sig = signal_number(f.signal)
    else:
        x = await c.container_get(cid)
        stop = x.labels.get("io.containerd.image.config.stop-signal") or \
            (spec_of(x).get("annotations") or {}).get("org.opencontainers.image.stopSignal")
        sig = signal_number(stop) if stop else 15
    await c.task_kill(cid, sig, all=f.all, exec_id=f.exec_id)
    return ""


async def cmd_tasks_ps(c, argv, ctx) -> str:
    f = parse_flags(argv, {})
    if not f.args:
        raise UsageError("container id must be provided")
    rows = [["PID", "INFO"]]
    for p in await c.task_pids(f.args[0]):
        info = "-"
        if p.HasField("info") and p.info.type_url:
            from pallet.proto import shim_task as messages

            if p.info.type_url.endswith("ProcessDetails"):
                d = messages.ProcessDetails.decode(p.info.value)
                info = "&ProcessDetails{ExecID:%s,XXX_unrecognized:[],}" % d.exec_id
        rows.append([str(p.pid), info])
    return table(rows, trailing_tab=False)


async def cmd_tasks_pause(c, argv, ctx) -> str:
    f = parse_flags(argv, {})
    if not f.args:
        raise UsageError("container id must be provided")
    await c.task_pause(f.args[0])
    return ""


async def cmd_tasks_resume(c, argv, ctx) -> str:
    f = parse_flags(argv, {})
    if not f.args:
        raise UsageError("container id must be provided")
    await c.task_resume(f.args[0])
    return ""


async def cmd_tasks_rm(c, argv, ctx) -> str:
    from pallet.core import errors

    f = parse_flags(argv, {"force": ("bool", ["f"], False), "exec-id": ("str", [], "")},
                    stop_at_positional=False)
    if not f.args:
        raise UsageError("container id must be provided")
    if f.exec_id:
        r = await c.process_delete(f.args[0], f.exec_id)
        if r.exit_status:
            print(f"exec {f.exec_id} exit with non-zero exit code {r.exit_status}",
                  file=sys.stderr)
        return ""
    failed = False
    for cid in f.args:
        try:
            p = await c.task_get(cid)
            if p.status in (1, 2, 4) and f.force:  # created, running, paused
                import asyncio

                waiter = asyncio.ensure_future(c.task_wait(cid))
                await c.task_kill(cid, 9, all=True)
                await waiter
            elif p.status not in (3, 0):
                raise errors.FailedPrecondition(
                    f"task must be stopped before deletion: {STATUS[p.status].lower()}")
            r = await c.task_delete(cid)
            if r.exit_status:
                print(f"time=\"{_now_logfmt()}\" level=warning msg=\"task {cid} exit with "
                      f"non-zero exit code {r.exit_status}\"", file=sys.stderr)
        except errors.PalletError as e:
            failed = True
            print(f"ctr: {e}", file=sys.stderr)
    if failed:
        raise ExitStatus(1)
    return ""


def _now_logfmt() -> str:
    import time

    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


async def cmd_tasks_metrics(c, argv, ctx) -> str:
    f = parse_flags(argv, {"format": ("str", [], "table")})
    if not f.args:
        raise UsageError("container id must be provided")
    if f.format not in ("table", "json"):
        raise UsageError("format must be table or json")
    from pallet.proto import shim_task as messages

    metric = await task_metric(c, f.args[0])
    data = messages.Metrics.decode(metric.data.value) \
        if metric.data.type_url.endswith("io.containerd.cgroups.v1.Metrics") else None
    if data is None:
        raise UsageError(f"cannot convert metric data to cgroups.Metrics: "
                         f"{metric.data.type_url}")
    if f.format == "json":
        return go_json(metrics_dict(data)) + "\n"
    out = table([["ID", "TIMESTAMP"], [metric.id, go_time(metric.timestamp)]], 1, 8, 4,
                trailing_tab=True) + "\n"
    rows = [["METRIC", "VALUE"]]
    if data.memory is not None:
        usage = data.memory.usage or messages.MemoryEntry()
        rows += [["memory.usage_in_bytes", str(usage.usage)],
                 ["memory.limit_in_bytes", str(usage.limit)],
                 ["memory.stat.cache", str(data.memory.total_cache)]]
    if data.cpu is not None and data.cpu.usage is not None:
        rows += [["cpuacct.usage", str(data.cpu.usage.total)],
                 ["cpuacct.usage_percpu", "[" + " ".join(str(x) for x in data.cpu.usage.per_cpu)
                  + "]"]]
    if data.pids is not None:
        rows += [["pids.current", str(data.pids.current)],
                 ["pids.limit", str(data.pids.limit)]]
    return out + table(rows, 1, 8, 4)


async def task_metric(c, cid: str):
    from pallet.core import errors
    from pallet.proto.containerd.services.tasks.v1 import tasks_pb2, tasks_pb2_grpc

    stub = c._stub(tasks_pb2_grpc.TasksStub)
    r = await c._call(stub.Metrics, tasks_pb2.MetricsRequest(filters=[f"id=={cid}"]))
    if not r.metrics:
        raise errors.NotFound(f"no metrics received for {cid}")
    return r.metrics[0]


def metrics_dict(msg) -> dict:
    """A pbwire message as Go's json encoding of the generated struct (omitempty)."""
    from pallet.proto.wire import Message

    out = {}
    for _num, name, kind, repeated in msg.FIELDS:
        v = getattr(msg, name)
        if v in (None, 0, "", False, [], {}):
            continue
        if isinstance(kind, type):
            v = [metrics_dict(x) for x in v] if repeated else metrics_dict(v)
        elif isinstance(v, Message):
            v = metrics_dict(v)
        out[name] = v
    return out


async def cmd_snapshots_ls(c, argv, ctx) -> str:
    f = parse_flags(argv, {"snapshotter": ("str", [], ctx.snapshotter)})
    kinds = {0: "Unknown", 1: "View", 2: "Active", 3: "Committed"}
    rows = [["KEY", "PARENT", "KIND"]]
    for i in await c.snapshots(snapshotter=f.snapshotter):
        rows.append([i.name, i.parent, kinds.get(i.kind, "Unknown")])
    return table(rows, 1, 8, 1)


async def cmd_snapshots_info(c, argv, ctx) -> str:
    f = parse_flags(argv, {"snapshotter": ("str", [], ctx.snapshotter)})
    if not f.args:
        raise UsageError("usage: ctr snapshots info <key>")
    i = await c.snapshot_stat(f.args[0], snapshotter=f.snapshotter)
    kinds = {0: "Unknown", 1: "View", 2: "Active", 3: "Committed"}
    out = {"Kind": kinds.get(i.kind, "Unknown"), "Name": i.name}
    if i.parent:
        out["Parent"] = i.parent
    if i.labels:
        out["Labels"] = dict(i.labels)
    out["Created"] = rfc3339(i.created_at)
    out["Updated"] = rfc3339(i.updated_at)
    return go_json(out) + "\n"


async def cmd_snapshots_rm(c, argv, ctx) -> str:
    from pallet.core import errors

    f = parse_flags(argv, {"snapshotter": ("str", [], ctx.snapshotter)},
                    stop_at_positional=False)
    failed = False
    for key in f.args:
        try:
            await c.snapshot_remove(key, snapshotter=f.snapshotter)
        except errors.PalletError as e:
            failed = True
            print(f"failed to remove {key!r}: {e}", file=sys.stderr)
    if failed:
        raise ExitStatus(1)
    return ""


async def cmd_content_ls(c, argv, ctx) -> str:
    import time

    f = parse_flags(argv, {"quiet": ("bool", ["q"], False)}, stop_at_positional=False)
    infos = await c.content_list(f.args)
    if f.quiet:
        return "".join(i.digest + "\n" for i in infos)
    from pallet.units.duration import human_duration
    from pallet.units.size import human_size

    now = time.time()
    rows = [["DIGEST", "SIZE", "AGE", "LABELS"]]
    for i in infos:
        age = now - (i.created_at.seconds + i.created_at.nanos / 1e9)
        rows.append([i.digest, human_size(i.size), human_duration(age),
                     labels_text(i.labels) or ""])
    return table(rows, 1, 8, 1, "\t", trailing_tab=False)


async def cmd_leases_ls(c, argv, ctx) -> str:
    f = parse_flags(argv, {"quiet": ("bool", ["q"], False)}, stop_at_positional=False)
    leases = await c.leases(f.args)
    if f.quiet:
        return "".join(x.id + "\n" for x in leases)
    rows = [["ID", "CREATED AT", "LABELS"]]
    for x in leases:
        created = rfc3339(type(x.created_at)(seconds=x.created_at.seconds))
        rows.append([x.id, created, labels_text(x.labels)])
    return table(rows, 1, 8, 1)


async def cmd_leases_create(c, argv, ctx) -> str:
    from pallet.proto.containerd.services.leases.v1 import leases_pb2, leases_pb2_grpc

    f = parse_flags(argv, {"id": ("str", [], ""), "expires": ("str", ["x"], "24h0m0s")})
    labels = dict(_key_value(x) for x in f.args)
    expires = go_duration(f.expires)
    if expires:
        import time

        labels["containerd.io/gc.expire"] = time.strftime(
            "%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + expires))
    lease_id = f.id or _lease_id()
    r = await c._call(c._stub(leases_pb2_grpc.LeasesStub).Create,
                      leases_pb2.CreateRequest(id=lease_id, labels=labels))
    return r.lease.id + "\n"


def _lease_id() -> str:
    import base64
    import os as _os
    import time

    return f"{time.time_ns() // 1_000_000}-{base64.b64encode(_os.urandom(4)).decode()[:6]}"


async def cmd_leases_rm(c, argv, ctx) -> str:
    from pallet.core import errors

    f = parse_flags(argv, {"sync": ("bool", [], False)}, stop_at_positional=False)
    out = []
    failed = False
    for lease in f.args:
        try:
            await c.lease_delete(lease, sync=f.sync)
            out.append(lease + "\n")
        except errors.PalletError as e:
            failed = True
            print(f"unable to delete lease {lease}: {e}", file=sys.stderr)
    if failed:
        sys.stdout.write("".join(out))
        raise ExitStatus(1)
    return "".join(out)


def message_json(msg) -> dict:
    """A protobuf message as Go's encoding/json writes containerd's generated structs:
    snake_case names, zero values left out, times in RFC 3339, Any as type_url and
    base64 value."""
    out = {}
    for field, value in msg.ListFields():
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            out[field.name] = dict(value)
        elif field.is_repeated:
            out[field.name] = [_json_value(field, v) for v in value]
        else:
            out[field.name] = _json_value(field, value)
    return out


def _json_value(field, value):
    import base64

    if field.message_type is None:
        if field.type == field.TYPE_BYTES:
            return base64.b64encode(value).decode()
        return value
    name = field.message_type.full_name
    if name == "google.protobuf.Timestamp":
        return rfc3339(value)
    if name == "google.protobuf.Any":
        return {"type_url": value.type_url, "value": base64.b64encode(value.value).decode()}
    return message_json(value)


async def cmd_events(c, argv, ctx) -> str:
    import json

    from pallet.containerd.client import decode_event

    f = parse_flags(argv, {}, stop_at_positional=False)
    async for env in c.subscribe(f.args):
        ev = decode_event(env)
        if hasattr(ev, "DESCRIPTOR") and ev.DESCRIPTOR.full_name != "google.protobuf.Any":
            body = json.dumps(message_json(ev), separators=(",", ":"))
        else:
            body = ""
        sys.stdout.write(f"{go_time(env.timestamp)} {env.namespace} {env.topic} {body}\n")
        sys.stdout.flush()
    return ""


# --- images pull -------------------------------------------------------------------------

async def cmd_images_pull(c, argv, ctx) -> str:
    """``ctr images pull``: the image store's registry client into containerd
    (Content.Write under a lease, unpacked through Snapshots and Diff, named
    last), then ctr's last progress frame and ``unpacking ... done``."""
    import time

    from pallet.distribution.reference import Reference
    from pallet.distribution.auth import Credentials
    from pallet.distribution.pull import parse_platform, platform_text, pull
    from pallet.distribution.registry import RegistryOptions
    from pallet.containerd.target import ContainerdTarget

    f = parse_flags(argv, {"skip-verify": ("bool", ["k"], False),
                           "plain-http": ("bool", [], False), "user": ("str", ["u"], ""),
                           "snapshotter": ("str", [], ctx.snapshotter),
                           "label": ("list", [], []), "platform": ("list", [], []),
                           "all-platforms": ("bool", [], False), "hosts-dir": ("str", [], ""),
                           "refresh": ("str", [], ""), "tlscacert": ("str", [], ""),
                           "tlscert": ("str", [], ""), "tlskey": ("str", [], ""),
                           "http-dump": ("bool", [], False), "http-trace": ("bool", [], False),
                           "print-chainid": ("bool", [], False),
                           "max-concurrent-downloads": ("int", [], 3)})
    if len(f.args) != 1:
        raise UsageError("please provide an image reference to pull")
    ref = Reference.parse(f.args[0])
    insecure = (ref.domain,) if (f.plain_http or f.skip_verify) else ()
    options = RegistryOptions(insecure_registries=insecure,
                              max_concurrent_downloads=max(1, f.max_concurrent_downloads))
    creds = None
    if f.user:
        user, _, password = f.user.partition(":")
        creds = Credentials(username=user, password=password)
    platform = parse_platform(f.platform[0] if f.platform else None)
    target = ContainerdTarget(c, snapshotter=f.snapshotter)
    started = time.monotonic()
    result = await pull(ref, target, options=options, credentials=creds, platform=platform,
                        snapshotter=f.snapshotter, name=str(ref))
    labels = dict(x.partition("=")[::2] for x in f.label)
    if labels:
        await c.image_update(result.name, labels=labels)
    elapsed = time.monotonic() - started
    from pallet.units.duration import duration_string
    from pallet.units.size import progress_bytes

    # ctr's last progress frame (content/fetch.go Display), bars coloured as ctr does
    bar = "|\x1b[32m" + "+" * 38 + "\x1b[0m|"
    lines = [f"{result.name}:\tresolved\t{bar}\t\n"]
    for kind, d in [("manifest", result.manifest), *(("layer", x) for x in result.layers),
                    ("config", result.config)]:
        lines.append(f"{kind}-{d.digest}:\tdone\t{bar}\t\n")
    total = sum(x.size for x in result.layers) if result.updated else 0
    lines.append(f"elapsed: {elapsed:<4.1f}s\ttotal: {progress_bytes(total):>7}\t"
                 f"({progress_bytes(int(total / max(elapsed, 1e-3)))}/s)\t\n")
    out = tabwriter("".join(lines), 1, 8, 1)
    out += f"unpacking {platform_text(platform)} {result.target.digest}...\n"
    if f.print_chainid and result.chain_id:
        out += f"image chain ID: {result.chain_id}\n"
    out += f"done: {duration_string(int((time.monotonic() - started) * 1e9))}\t\n"
    return out


# --- dispatch -----------------------------------------------------------------------------

def _lazy(module: str, name: str):
    async def run(c, argv, ctx):
        import importlib

        return await getattr(importlib.import_module(module), name)(c, argv, ctx)
    return run


_IMAGES = "pallet.client.ctr_images"
_RUN = "pallet.client.ctr_run"

COMMANDS = {
    "version": cmd_version,
    "plugins": {"ls": cmd_plugins_ls, "list": cmd_plugins_ls},
    "namespaces": {"ls": cmd_namespaces_ls, "list": cmd_namespaces_ls,
                   "create": cmd_namespaces_create, "c": cmd_namespaces_create,
                   "rm": cmd_namespaces_rm, "remove": cmd_namespaces_rm},
    "images": {"ls": _lazy(_IMAGES, "cmd_ls"), "list": _lazy(_IMAGES, "cmd_ls"),
               "rm": _lazy(_IMAGES, "cmd_rm"), "delete": _lazy(_IMAGES, "cmd_rm"),
               "del": _lazy(_IMAGES, "cmd_rm"), "remove": _lazy(_IMAGES, "cmd_rm"),
               "tag": _lazy(_IMAGES, "cmd_tag"), "import": _lazy(_IMAGES, "cmd_import"),
               "export": _lazy(_IMAGES, "cmd_export"), "check": _lazy(_IMAGES, "cmd_check"),
               "pull": cmd_images_pull},
    "containers": {"create": _lazy(_RUN, "cmd_containers_create"),
                   "ls": cmd_containers_ls, "list": cmd_containers_ls,
                   "info": cmd_containers_info, "rm": cmd_containers_rm,
                   "delete": cmd_containers_rm, "del": cmd_containers_rm,
                   "remove": cmd_containers_rm},
    "tasks": {"start": _lazy(_RUN, "cmd_tasks_start"), "ls": cmd_tasks_ls, "list": cmd_tasks_ls,
              "kill": cmd_tasks_kill, "ps": cmd_tasks_ps, "exec": _lazy(_RUN, "cmd_tasks_exec"),
              "pause": cmd_tasks_pause, "resume": cmd_tasks_resume, "rm": cmd_tasks_rm,
              "delete": cmd_tasks_rm, "del": cmd_tasks_rm, "remove": cmd_tasks_rm,
              "metrics": cmd_tasks_metrics, "metric": cmd_tasks_metrics,
              "attach": _lazy(_RUN, "cmd_tasks_attach")},
    "run": _lazy(_RUN, "cmd_run"),
    "snapshots": {"ls": cmd_snapshots_ls, "list": cmd_snapshots_ls,
                  "info": cmd_snapshots_info, "rm": cmd_snapshots_rm,
                  "delete": cmd_snapshots_rm, "del": cmd_snapshots_rm,
                  "remove": cmd_snapshots_rm},
    "content": {"ls": cmd_content_ls, "list": cmd_content_ls},
    "events": cmd_events,
    "leases": {"ls": cmd_leases_ls, "list": cmd_leases_ls, "create": cmd_leases_create,
               "rm": cmd_leases_rm, "delete": cmd_leases_rm},
}
ALIASES = {"namespace": "namespaces", "ns": "namespaces", "image": "images", "i": "images",
           "container": "containers", "c": "containers", "task": "tasks", "t": "tasks",
           "plugin": "plugins", "snapshot": "snapshots", "snapshot ": "snapshots",
           "event": "events", "lease": "leases"}

USAGE = """NAME:
   pallet-ctr - containerd's debug client, by pallet

USAGE:
   pallet-ctr [global options] command [command options] [arguments...]

COMMANDS:
   plugins, plugin            provides information about containerd plugins
   version                    print the client and server versions
   containers, c, container   manage containers
   content                    manage content
   events, event              display containerd events
   images, image, i           manage images
   leases                     manage leases
   namespaces, namespace, ns  manage namespaces
   run                        run a container
   snapshots, snapshot        manage snapshots
   tasks, t, task             manage tasks

GLOBAL OPTIONS:
   --debug                   enable debug output in logs
   --address value, -a value containerd's GRPC server address [$CONTAINERD_ADDRESS]
   --timeout value           total timeout for ctr commands (default: 0s)
   --namespace value, -n value  namespace to use with commands (default: "default")
                                [$CONTAINERD_NAMESPACE]
"""


class Context:
    """What every command may need besides the client."""

    def __init__(self, g: Flags):
        self.address = g.address or default_address()
        self.namespace = g.namespace or os.environ.get("CONTAINERD_NAMESPACE") or "default"
        self.snapshotter = os.environ.get("CONTAINERD_SNAPSHOTTER") or "overlayfs"
        self.timeout = go_duration(g.timeout)
        self.debug = g.debug


def resolve(argv) -> tuple:
    """(global flags, handler, command name, its argv)."""
    g = parse_flags(argv, GLOBAL_FLAGS)
    if g.version:
        return g, None, "--version", []
    if g.help or not g.args:
        return g, None, "help", []
    name, rest = g.args[0], g.args[1:]
    name = ALIASES.get(name, name)
    entry = COMMANDS.get(name)
    if entry is None:
        raise UnknownCommand(f"No help topic for '{g.args[0]}'")
    if isinstance(entry, dict):
        if not rest or rest[0] in ("-h", "--help", "help"):
            raise UsageError(f"{name}: a subcommand is required: {', '.join(sorted(entry))}")
        sub = entry.get(rest[0])
        if sub is None:
            raise UnknownCommand(f"No help topic for '{rest[0]}'")
        return g, sub, f"{name} {rest[0]}", rest[1:]
    return g, entry, name, rest


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        g, handler, name, rest = resolve(argv)
    except UsageError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 3 if isinstance(e, UnknownCommand) else 1
    if name == "--version":
        print(f"{PROG} pallet")
        return 0
    if handler is None:
        sys.stdout.write(USAGE)
        return 0
    import asyncio

    from pallet.containerd.client import Containerd
    from pallet.core.errors import PalletError

    try:
        ctx = Context(g)
    except UsageError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 1

    async def run() -> str:
        async with Containerd(ctx.address, ctx.namespace, timeout=ctx.timeout or None,
                              snapshotter=ctx.snapshotter) as c:
            return await handler(c, rest, ctx)

    try:
        out = asyncio.run(run())
    except UsageError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 1
    except ExitStatus as e:
        sys.stdout.flush()
        return e.code
    except PalletError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as e:  # noqa: BLE001 - never a traceback: one line, as ctr
        print(f"{PROG}: {e}", file=sys.stderr)
        return 1
    if out:
        sys.stdout.write(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
