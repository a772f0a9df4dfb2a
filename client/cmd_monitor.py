"""``pallet events`` and ``pallet stats``."""

import os
import sys
import time

from pallet.client.cmd_common import parse_filters
from pallet.client.docker import StatusError
from pallet.client.docker_api import ConnectError, DaemonError, quote_path
from pallet.client.docker_flags import BOOL, LIST, STR, Flag
from pallet.client.docker_format import HeaderContext, RowContext, go_json, render_rows
from pallet.units.size import bytes_size, human_size


# -- events -------------------------------------------------------------------------
def rfc3339_nano_fixed(ns):
    """Go's RFC3339NanoFixed in local time: '2026-11-27T22:13:19.766183597Z'."""
    secs, frac = divmod(int(ns), 1000000000)
    lt = time.localtime(secs)
    off = lt.tm_gmtoff
    zone = "Z" if off == 0 else "%s%02d:%02d" % ("+" if off > 0 else "-", abs(off) // 3600,
                                                 abs(off) % 3600 // 60)
    return time.strftime("%Y-%m-%dT%H:%M:%S", lt) + ".%09d" % frac + zone


def format_event(ev):
    """One event as docker prints it without --format."""
    out = ""
    if ev.get("timeNano"):
        out += rfc3339_nano_fixed(ev["timeNano"]) + " "
    elif ev.get("time"):
        out += rfc3339_nano_fixed(int(ev["time"]) * 1000000000) + " "
    actor = ev.get("Actor") or {}
    out += "%s %s %s" % (ev.get("Type", ""), ev.get("Action", ""), actor.get("ID", ""))
    attrs = actor.get("Attributes") or {}
    if attrs:
        out += " (%s)" % ", ".join("%s=%s" % (k, attrs[k]) for k in sorted(attrs))
    return out + "\n"


class _EventContext:
    """Template data of one event: the message's own fields (``{{.Type}}``,
    ``{{.Actor.ID}}``); ``{{json .}}`` is the message as the daemon sent it."""

    GO_TYPE = "events.Message"

    def __init__(self, ev):
        self.ev = ev

    def template_field(self, name, args):
        if name == "Actor":
            return _Actor(self.ev.get("Actor") or {})
        if name in self.ev:
            return self.ev[name]
        aliases = {"ID": "id", "Status": "status", "From": "from", "Scope": "scope",
                   "Time": "time", "TimeNano": "timeNano"}
        if name in aliases:
            return self.ev.get(aliases[name], "")
        raise KeyError(name)

    def to_json(self):
        return self.ev


class _Actor:
    """events.Actor: a struct whose Attributes is a Go map (a missing key is
    "<no value>", not an error as in inspect's templates)."""

    GO_TYPE = "events.Actor"

    def __init__(self, actor):
        self.actor = actor

    def template_field(self, name, args):
        if name == "ID":
            return self.actor.get("ID", "")
        if name == "Attributes":
            return _Attributes(self.actor.get("Attributes") or {})
        raise KeyError(name)

    def to_json(self):
        return self.actor


class _Attributes:
    GO_TYPE = "map[string]string"

    def __init__(self, attrs):
        self.attrs = attrs

    def template_field(self, name, args):
        return self.attrs.get(name)

    def to_json(self):
        return self.attrs


def cmd_events(cli, argv):
    flags = [Flag("filter", "f", LIST, help="Filter output based on conditions provided",
                  metavar="filter"),
             Flag("format", kind=STR, help="Format output using a custom template"),
             Flag("since", kind=STR, help="Show all events created since timestamp"),
             Flag("until", kind=STR, help="Stream events until this timestamp")]
    opts, _ = cli.parse(argv, "pallet events [OPTIONS]", "Get real time events from the server",
                        flags, max_args=0, aliases="pallet system events, pallet events")
    from pallet.client.cmd_containers import get_timestamp
    params = {"filters": cli.flag_value(parse_filters, opts.filter),
              "since": get_timestamp(opts.since) if opts.since else None,
              "until": get_timestamp(opts.until) if opts.until else None}
    tmpl = None
    fmt = opts.format
    if fmt == "json":
        fmt = "{{json .}}"
    if fmt:
        from pallet.client.docker_template import parse_template
        tmpl = parse_template(fmt)
    resp = cli.client.request("GET", "/events", params)
    try:
        for ev in resp.json_stream():
            if not isinstance(ev, dict):
                continue
            if tmpl is not None:
                from pallet.client.docker_template import run_template
                if fmt == "{{json .}}":
                    line = go_json(ev)
                else:
                    line = run_template(tmpl, _EventContext(ev))
                sys.stdout.write(line + "\n")
            else:
                sys.stdout.write(format_event(ev))
            sys.stdout.flush()
    finally:
        resp.close()
    return 0


# -- stats --------------------------------------------------------------------------
def _percent(v):
    return "%.2f%%" % v


def compute_stats(s):
    """The numbers docker's stats shows, from one /stats answer."""
    cpu = s.get("cpu_stats") or {}
    pre = s.get("precpu_stats") or {}
    cpu_pct = 0.0
    total = (cpu.get("cpu_usage") or {}).get("total_usage", 0)
    pre_total = (pre.get("cpu_usage") or {}).get("total_usage", 0)
    cpu_delta = total - pre_total
    sys_delta = (cpu.get("system_cpu_usage") or 0) - (pre.get("system_cpu_usage") or 0)
    online = cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get("percpu_usage")
                                           or []) or 1
    if sys_delta > 0 and cpu_delta > 0:
        cpu_pct = cpu_delta / sys_delta * online * 100.0
    mem = s.get("memory_stats") or {}
    usage = mem.get("usage") or 0
    stats = mem.get("stats") or {}
    for key in ("total_inactive_file", "inactive_file"):
        v = stats.get(key)
        if v is not None and v < usage:
            usage -= v
            break
    limit = mem.get("limit") or 0
    mem_pct = usage / limit * 100.0 if limit else 0.0
    rx = tx = 0
    for n in (s.get("networks") or {}).values():
        rx += n.get("rx_bytes", 0)
        tx += n.get("tx_bytes", 0)
    blk_r = blk_w = 0
    for e in ((s.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []):
        op = (e.get("op") or "").lower()
        if op == "read":
            blk_r += e.get("value", 0)
        elif op == "write":
            blk_w += e.get("value", 0)
    pids = (s.get("pids_stats") or {}).get("current", 0)
    return {"cpu": cpu_pct, "mem": usage, "limit": limit, "mem_pct": mem_pct, "rx": rx,
            "tx": tx, "blk_r": blk_r, "blk_w": blk_w, "pids": pids}


class StatsRow(RowContext):
    FIELDS = {"Container": "CONTAINER", "Name": "NAME", "ID": "CONTAINER ID",
              "CPUPerc": "CPU %", "MemUsage": "MEM USAGE / LIMIT", "MemPerc": "MEM %",
              "NetIO": "NET I/O", "BlockIO": "BLOCK I/O", "PIDs": "PIDS"}
    GO_TYPE = "*formatter.statsContext"

    def __init__(self, container, name, cid, st, trunc, error=None):
        self.container, self.name, self.cid, self.st = container, name, cid, st
        self.trunc, self.error = trunc, error

    def f_Container(self):
        return self.container

    def f_Name(self):
        return self.name[1:] if self.name.startswith("/") else (self.name or "--")

    def f_ID(self):
        return self.cid[:12] if self.trunc else self.cid

    def _na(self):
        return self.st is None or self.error

    def f_CPUPerc(self):
        return "--" if self._na() else _percent(self.st["cpu"])

    def f_MemUsage(self):
        if self._na():
            return "-- / --"
        return "%s / %s" % (bytes_size(self.st["mem"]), bytes_size(self.st["limit"]))

    def f_MemPerc(self):
        return "--" if self._na() else _percent(self.st["mem_pct"])

    def f_NetIO(self):
        if self._na():
            return "--"
        return "%s / %s" % (human_size(self.st["rx"], 3), human_size(self.st["tx"], 3))

    def f_BlockIO(self):
        if self._na():
            return "--"
        return "%s / %s" % (human_size(self.st["blk_r"], 3), human_size(self.st["blk_w"], 3))

    def f_PIDs(self):
        return "--" if self._na() else str(self.st["pids"])


def _one_stats(cli, name):
    """(id, name, computed stats) from one non-streamed /stats answer."""
    s = cli.client.get("/containers/%s/stats" % quote_path(name), {"stream": False})
    return s.get("id", ""), s.get("name", ""), compute_stats(s)


def _collect(cli, names):
    """Stats of every container, asked in parallel (each answer takes the
    daemon about a second: it samples the CPU twice)."""
    import threading
    results = [None] * len(names)

    def work(i, n):
        try:
            results[i] = _one_stats(cli, n)
        except (DaemonError, ConnectError) as e:
            results[i] = e

    threads = [threading.Thread(target=work, args=(i, n), daemon=True)
               for i, n in enumerate(names)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def cmd_stats(cli, argv):
    flags = [Flag("all", "a", BOOL, help="Show all containers (default shows just running)"),
             Flag("format", kind=STR, help="Format output using a custom template"),
             Flag("no-stream", kind=BOOL, help="Disable streaming stats and only pull the first "
                  "result"),
             Flag("no-trunc", kind=BOOL, help="Do not truncate output")]
    opts, args = cli.parse(argv, "pallet stats [OPTIONS] [CONTAINER...]",
                           "Display a live stream of container(s) resource usage statistics",
                           flags, aliases="pallet container stats, pallet stats")
    fmt = opts.format or "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}" \
        "\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}"
    if fmt == "json":
        fmt = "{{json .}}"
    explicit = bool(args)
    terminal = os.isatty(1)
    while True:
        if explicit:
            names = list(args)
        else:
            cs = cli.client.get("/containers/json", {"all": opts.all or None}) or []
            names = [c["Id"] for c in cs]
        results = _collect(cli, names)
        rows, errors = [], []
        for name, res in zip(names, results):
            if isinstance(res, Exception):
                if explicit:
                    errors.append(str(res))
                continue
            cid, cname, st = res
            rows.append(StatsRow(name if explicit else cid[:12] if not opts.no_trunc else cid,
                                 cname, cid, st, not opts.no_trunc))
        if errors and opts.no_stream:
            raise StatusError("\n".join(errors), 1)
        text = render_rows(fmt, rows, HeaderContext(StatsRow))
        if not opts.no_stream and terminal:
            text = "\x1b[2J\x1b[H" + text
        cli.out(text)
        sys.stdout.flush()
        if opts.no_stream:
            return 0
        if errors and not rows:
            raise StatusError("\n".join(errors), 1)
        time.sleep(0.5)
