"""Container commands that need no stream hijack: ps, logs, stop, kill, rm, wait,
restart, pause, unpause, rename, top, port, inspect, update, container prune."""

import os
import sys
import time

from pallet.client.docker import StatusError
from pallet.client.docker_api import DaemonError, iter_frames, quote_path
from pallet.client.docker_flags import BOOL, INT, LIST, STR, Flag
from pallet.client.docker_format import (HeaderContext, RowContext, ellipsis, go_quote, go_time,
                                         render_rows, since, tabwrite, truncate_id)
from pallet.units.size import human_size


def cpath(name, suffix=""):
    """API path of a container by name or id."""
    return "/containers/" + quote_path(name) + suffix


# -- ps -----------------------------------------------------------------------
def _join_host_port(ip, port):
    return "[%s]:%s" % (ip, port) if ":" in ip else "%s:%s" % (ip, port)


def displayable_ports(ports):
    """The PORTS column: ranges of equal mappings grouped, host mappings last."""
    ports = sorted(ports or [], key=lambda p: (p.get("PrivatePort", 0), p.get("IP", ""),
                                                p.get("PublicPort", 0), p.get("Type", "")))
    groups = {}
    order = []
    result = []
    host_mappings = []
    for p in ports:
        cur = p.get("PrivatePort", 0)
        typ = p.get("Type", "tcp")
        ip = p.get("IP", "")
        key = (ip, typ)
        if ip:
            if p.get("PublicPort", 0) != cur:
                host_mappings.append("%s->%d/%s" % (_join_host_port(ip, p.get("PublicPort", 0)),
                                                    cur, typ))
                continue
        g = groups.get(key)
        if g is None:
            groups[key] = [cur, cur]
            order.append(key)
            continue
        if cur == g[1] + 1:
            g[1] = cur
            continue
        result.append(_form_group(key, g))
        groups[key] = [cur, cur]
    for key in order:
        result.append(_form_group(key, groups[key]))
    return ", ".join(result + host_mappings)


def _form_group(key, g):
    ip, typ = key
    rng = str(g[0]) if g[0] == g[1] else "%d-%d" % (g[0], g[1])
    if ip:
        return "%s->%s/%s" % (_join_host_port(ip, rng), rng, typ)
    return "%s/%s" % (rng, typ)


def _label_header(name):
    return name.split(".")[-1].replace("-", " ").replace("_", " ")


def familiar_image(image, image_id, trunc):
    """The IMAGE column: short ids for image ids, familiar names, digests cut when truncating."""
    if not image:
        return "<no image>"
    if not trunc:
        return image
    if image_id and truncate_id(image_id) == truncate_id(image):
        return truncate_id(image)
    from pallet.client import docker_ref
    name, tag, digest = docker_ref.split(image)
    name = docker_ref.familiar_name(name)
    return name + (":" + tag if tag else "")


class ContainerRow(RowContext):
    FIELDS = {"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND",
              "CreatedAt": "CREATED AT", "RunningFor": "CREATED", "Ports": "PORTS",
              "State": "STATE", "Status": "STATUS", "Size": "SIZE", "Names": "NAMES",
              "Labels": "LABELS", "Label": _label_header, "Mounts": "MOUNTS",
              "LocalVolumes": "LOCAL VOLUMES", "Networks": "NETWORKS", "Platform": "PLATFORM"}
    JSON_FIELDS = tuple(k for k in FIELDS if k != "Label")
    GO_TYPE = "*formatter.ContainerContext"

    def __init__(self, c, trunc, now):
        self.c, self.trunc, self.now = c, trunc, now

    def f_ID(self):
        return truncate_id(self.c.get("Id", "")) if self.trunc else self.c.get("Id", "")

    def f_Names(self):
        names = [n[1:] if n.startswith("/") else n for n in self.c.get("Names") or []]
        if self.trunc:
            for n in names:
                if "/" not in n:
                    return n
        return ",".join(names)

    def f_Image(self):
        return familiar_image(self.c.get("Image", ""), self.c.get("ImageID", ""), self.trunc)

    def f_Command(self):
        cmd = self.c.get("Command", "")
        if self.trunc:
            cmd = ellipsis(cmd, 20)
        return go_quote(cmd)

    def f_CreatedAt(self):
        return go_time(self.c.get("Created", 0))

    def f_RunningFor(self):
        return since(self.c.get("Created", 0), self.now)

    def f_Ports(self):
        return displayable_ports(self.c.get("Ports"))

    def f_State(self):
        return self.c.get("State", "")

    def f_Status(self):
        return self.c.get("Status", "")

    def f_Size(self):
        srw = human_size(self.c.get("SizeRw") or 0, 3)
        virt = self.c.get("SizeRootFs") or 0
        return "%s (virtual %s)" % (srw, human_size(virt, 3)) if virt > 0 else srw

    def f_Labels(self):
        return ",".join("%s=%s" % kv for kv in (self.c.get("Labels") or {}).items())

    def f_Label(self, name):
        return (self.c.get("Labels") or {}).get(name, "")

    def f_Mounts(self):
        out = []
        for m in self.c.get("Mounts") or []:
            name = m.get("Name") or m.get("Source", "")
            out.append(ellipsis(name, 15) if self.trunc else name)
        return ",".join(out)

    def f_LocalVolumes(self):
        return str(sum(1 for m in self.c.get("Mounts") or [] if m.get("Driver") == "local"))

    def f_Networks(self):
        nets = ((self.c.get("NetworkSettings") or {}).get("Networks") or {})
        return ",".join(sorted(nets))

    def f_Platform(self):
        return self.c.get("ImageManifestDescriptor", {}).get("platform") if \
            self.c.get("ImageManifestDescriptor") else None


def cmd_ps(cli, argv):
    flags = [Flag("all", "a", BOOL, help="Show all containers (default shows just running)"),
             Flag("filter", "f", LIST, help="Filter output based on conditions provided",
                  metavar="filter"),
             Flag("format", kind=STR, help="Format output using a custom template"),
             Flag("last", "n", INT, default=-1, help="Show n last created containers (includes all states)"),
             Flag("latest", "l", BOOL, help="Show the latest created container (includes all states)"),
             Flag("no-trunc", kind=BOOL, help="Don't truncate output"),
             Flag("quiet", "q", BOOL, help="Only display container IDs"),
             Flag("size", "s", BOOL, help="Display total file sizes")]
    opts, _ = cli.parse(argv, "pallet ps [OPTIONS]", "List containers", flags, max_args=0,
                        aliases="pallet container ls, pallet container list, pallet container ps, pallet ps")
    from pallet.client.cmd_common import parse_filters
    limit = 1 if opts.latest else (opts.last if opts.last > 0 else None)
    size = opts.size
    user_fmt = opts.format
    if user_fmt and not opts.quiet and "size" not in opts.given:
        import re
        if ".Size" in user_fmt or re.search(r"json\s+\.\s*-?}}", user_fmt):
            size = True
    params = {"all": (opts.all or limit is not None or opts.last == 0) or None,
              "limit": limit, "size": size or None,
              "filters": cli.flag_value(parse_filters, opts.filter)}
    containers = cli.client.get("/containers/json", params) or []
    if opts.quiet:
        fmt = "{{.ID}}"
    elif user_fmt == "json":
        fmt = "{{json .}}"
    elif user_fmt:
        fmt = user_fmt
    else:
        fmt = "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"
        if opts.size:
            fmt += "\t{{.Size}}"
    now = time.time()
    rows = [ContainerRow(c, not opts.no_trunc, now) for c in containers]
    cli.out(render_rows(fmt, rows, HeaderContext(ContainerRow)))
    return 0


# -- simple per-container actions ---------------------------------------------
def _each(cli, names, action, print_name=True):
    """Run *action(name)* for each container; print names; gather errors (exit 1)."""
    errors = []
    for name in names:
        try:
            result = action(name)
        except DaemonError as e:
            errors.append(str(e))
            continue
        if print_name:
            cli.outln(name if result is None else str(result))
    if errors:
        raise StatusError("\n".join(errors), 1)
    return 0


def _post(cli, path, params=None):
    cli.client.request("POST", path, params).close()


def cmd_stop(cli, argv):
    flags = [Flag("signal", "s", STR, help="Signal to send to the container"),
             Flag("timeout", "t", INT, default=None, help="Seconds to wait before killing the container",
                  metavar="int"),
             Flag("time", kind=INT, default=None, hidden=True)]
    opts, args = cli.parse(argv, "pallet stop [OPTIONS] CONTAINER [CONTAINER...]",
                           "Stop one or more running containers", flags, min_args=1,
                           aliases="pallet container stop, pallet stop")
    t = opts.timeout if "timeout" in opts.given else (opts.time if "time" in opts.given else None)
    params = {"t": t, "signal": opts.signal or None}
    return _each(cli, args, lambda n: _post(cli, cpath(n, "/stop"), params))


def cmd_restart(cli, argv):
    flags = [Flag("signal", "s", STR, help="Signal to send to the container"),
             Flag("timeout", "t", INT, default=None, help="Seconds to wait before killing the container",
                  metavar="int"),
             Flag("time", kind=INT, default=None, hidden=True)]
    opts, args = cli.parse(argv, "pallet restart [OPTIONS] CONTAINER [CONTAINER...]",
                           "Restart one or more containers", flags, min_args=1,
                           aliases="pallet container restart, pallet restart")
    t = opts.timeout if "timeout" in opts.given else (opts.time if "time" in opts.given else None)
    params = {"t": t, "signal": opts.signal or None}
    return _each(cli, args, lambda n: _post(cli, cpath(n, "/restart"), params))


def cmd_kill(cli, argv):
    flags = [Flag("signal", "s", STR, help="Signal to send to the container")]
    opts, args = cli.parse(argv, "pallet kill [OPTIONS] CONTAINER [CONTAINER...]",
                           "Kill one or more running containers", flags, min_args=1,
                           aliases="pallet container kill, pallet kill")
    params = {"signal": opts.signal or None}
    return _each(cli, args, lambda n: _post(cli, cpath(n, "/kill"), params))


def cmd_rm(cli, argv):
    flags = [Flag("force", "f", BOOL, help="Force the removal of a running container (uses SIGKILL)"),
             Flag("link", "l", BOOL, help="Remove the specified link"),
             Flag("volumes", "v", BOOL, help="Remove anonymous volumes associated with the container")]
    opts, args = cli.parse(argv, "pallet rm [OPTIONS] CONTAINER [CONTAINER...]",
                           "Remove one or more containers", flags, min_args=1,
                           aliases="pallet container rm, pallet container remove, pallet rm")
    params = {"force": opts.force or None, "v": opts.volumes or None, "link": opts.link or None}

    def remove(name):
        name = name.strip("/")
        if not name:
            raise DaemonError(400, "Container name cannot be empty")
        cli.client.request("DELETE", cpath(name), params).close()

    return _each(cli, args, remove)


def cmd_pause(cli, argv):
    _, args = cli.parse(argv, "pallet pause CONTAINER [CONTAINER...]",
                        "Pause all processes within one or more containers", [], min_args=1,
                        aliases="pallet container pause, pallet pause")
    return _each(cli, args, lambda n: _post(cli, cpath(n, "/pause")))


def cmd_unpause(cli, argv):
    _, args = cli.parse(argv, "pallet unpause CONTAINER [CONTAINER...]",
                        "Unpause all processes within one or more containers", [], min_args=1,
                        aliases="pallet container unpause, pallet unpause")
    return _each(cli, args, lambda n: _post(cli, cpath(n, "/unpause")))


def wait_exit_code(cli, name, condition=None):
    """POST /containers/{id}/wait; return the exit status (raise DaemonError)."""
    params = {"condition": condition} if condition else None
    res = cli.client.post(cpath(name, "/wait"), params) or {}
    err = res.get("Error")
    if err and err.get("Message"):
        raise DaemonError(500, err["Message"])
    return res.get("StatusCode", 0)


def cmd_wait(cli, argv):
    _, args = cli.parse(argv, "pallet wait CONTAINER [CONTAINER...]",
                        "Block until one or more containers stop, then print their exit codes",
                        [], min_args=1, aliases="pallet container wait, pallet wait")
    return _each(cli, args, lambda n: wait_exit_code(cli, n))


def cmd_rename(cli, argv):
    _, args = cli.parse(argv, "pallet rename CONTAINER NEW_NAME", "Rename a container", [],
                        min_args=2, max_args=2, aliases="pallet container rename, pallet rename")
    old, new = args[0].strip(), args[1].strip()
    if not old or not new:
        raise StatusError("Error: Neither old nor new names may be empty", 1)
    try:
        _post(cli, cpath(old, "/rename"), {"name": new})
    except DaemonError as e:
        raise StatusError("%s\nError: failed to rename container named %s" % (e, old), 1) from None
    return 0


# -- top / port ------------------------------------------------------------------
def cmd_top(cli, argv):
    opts, args = cli.parse(argv, "pallet top CONTAINER [ps OPTIONS]",
                           "Display the running processes of a container", [], interspersed=False,
                           min_args=1, aliases="pallet container top, pallet top")
    params = {"ps_args": " ".join(args[1:])} if len(args) > 1 else None
    res = cli.client.get(cpath(args[0], "/top"), params) or {}
    lines = ["\t".join(res.get("Titles") or [])]
    for proc in res.get("Processes") or []:
        lines.append("\t".join(proc))
    cli.out(tabwrite("\n".join(lines) + "\n", minwidth=20, padding=3))
    return 0


def _natural_key(s):
    import re
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


def cmd_port(cli, argv):
    _, args = cli.parse(argv, "pallet port CONTAINER [PRIVATE_PORT[/PROTO]]",
                        "List port mappings or a specific mapping for the container", [],
                        min_args=1, max_args=2, aliases="pallet container port, pallet port")
    c = cli.client.get(cpath(args[0], "/json"))
    ports = (c.get("NetworkSettings") or {}).get("Ports") or {}
    out = []
    if len(args) == 2:
        port, _, proto = args[1].partition("/")
        proto = proto or "tcp"
        if not port.isdigit() or int(port) > 65535:
            raise StatusError('Error: invalid port (%s): strconv.ParseUint: parsing "%s": invalid syntax'
                              % (port, port), 1)
        frontends = ports.get("%s/%s" % (port, proto))
        if not frontends:
            raise StatusError("Error: No public port '%s' published for %s" % (args[1], args[0]), 1)
        for fe in frontends:
            out.append(_join_host_port(fe.get("HostIp", ""), fe.get("HostPort", "")))
    else:
        for frm, frontends in ports.items():
            for fe in frontends or []:
                out.append("%s -> %s" % (frm, _join_host_port(fe.get("HostIp", ""),
                                                              fe.get("HostPort", ""))))
    if out:
        out.sort(key=_natural_key)
        cli.outln("\n".join(out))
    return 0


# -- logs --------------------------------------------------------------------------
def get_timestamp(value, now=None):
    """docker's --since/--until value as the API wants it ('seconds.nanoseconds')."""
    now = time.time() if now is None else now
    import re

    from pallet.units.duration import parse_go_duration
    try:
        ns = parse_go_duration(value) if value != "0" else None
    except ValueError:
        ns = None
    if ns is not None:  # docker's GetTimestamp: a duration is before now
        t = now - ns / 1e9
        return "%d.%09d" % (int(t), int(round((t - int(t)) * 1e9)) % 1000000000)
    if re.match(r"^\d+(\.\d+)?$", value):
        return value
    from pallet.client.docker_format import parse_rfc3339
    import calendar
    t = parse_rfc3339(value)
    if t is None:
        for fmt, local in (("%Y-%m-%dT%H:%M:%S", True), ("%Y-%m-%dT%H:%M", True),
                           ("%Y-%m-%d", True)):
            try:
                st = time.strptime(value, fmt)
            except ValueError:
                continue
            t = time.mktime(st) if local else calendar.timegm(st)
            break
    if t is None:
        raise StatusError('invalid value for "since": failed to parse value as time or duration: '
                          '"%s"' % value, 1)
    return "%d.%09d" % (int(t), int(round((t - int(t)) * 1e9)) % 1000000000)


def copy_stream(resp, tty, out_fd=1, err_fd=2):
    """Copy a logs/attach body to stdout/stderr: raw for a TTY, else demultiplexed."""
    if tty:
        while True:
            chunk = resp.read1(65536)
            if not chunk:
                return
            _write_all(out_fd, chunk)
    for stream, payload in iter_frames(resp.readexactly):
        if stream == 3:
            # system error frame: the daemon's own error message
            _write_all(err_fd, payload)
        else:
            _write_all(err_fd if stream == 2 else out_fd, payload)


def _write_all(fd, data):
    while data:
        n = os.write(fd, data)
        data = data[n:]


def cmd_logs(cli, argv):
    flags = [Flag("details", kind=BOOL, help="Show extra details provided to logs"),
             Flag("follow", "f", BOOL, help="Follow log output"),
             Flag("since", kind=STR, help='Show logs since timestamp (e.g. "2013-01-02T13:23:37Z") '
                                         'or relative (e.g. "42m" for 42 minutes)'),
             Flag("tail", "n", STR, default="all",
                  help="Number of lines to show from the end of the logs"),
             Flag("timestamps", "t", BOOL, help="Show timestamps"),
             Flag("until", kind=STR, help="Show logs before a timestamp or relative")]
    opts, args = cli.parse(argv, "pallet logs [OPTIONS] CONTAINER",
                           "Fetch the logs of a container", flags, min_args=1, max_args=1,
                           aliases="pallet container logs, pallet logs")
    name = args[0]
    c = cli.client.get(cpath(name, "/json"))
    tty = bool((c.get("Config") or {}).get("Tty"))
    params = {"stdout": True, "stderr": True, "follow": opts.follow or None,
              "timestamps": opts.timestamps or None, "details": opts.details or None,
              "tail": opts.tail if opts.tail != "all" else None,
              "since": get_timestamp(opts.since) if opts.since else None,
              "until": get_timestamp(opts.until) if opts.until else None}
    resp = cli.client.request("GET", cpath(name, "/logs"), params)
    try:
        sys.stdout.flush()
        copy_stream(resp, tty)
    finally:
        resp.close()
    return 0


# -- inspect -----------------------------------------------------------------------
_INSPECT_PATHS = {
    "container": lambda n: cpath(n, "/json"),
    "image": lambda n: "/images/%s/json" % quote_path(n),
    "network": lambda n: "/networks/%s" % quote_path(n),
    "volume": lambda n: "/volumes/%s" % quote_path(n),
}


def inspect_one(cli, name, typ, size=False):
    """The raw inspect object of *name*; without a type, containers then images
    then networks then volumes are tried, as docker does."""
    if typ:
        params = {"size": True} if (size and typ == "container") else None
        return cli.client.get(_INSPECT_PATHS[typ](name), params)
    for t in ("container", "image", "network", "volume"):
        params = {"size": True} if (size and t == "container") else None
        try:
            return cli.client.get(_INSPECT_PATHS[t](name), params)
        except DaemonError as e:
            if e.status not in (404, 400):
                raise
    raise LookupError("Error: No such object: %s" % name)


def cmd_inspect(cli, argv):
    flags = [Flag("format", "f", STR, help="Format output using a custom template"),
             Flag("size", "s", BOOL, help="Display total file sizes if the type is container"),
             Flag("type", kind=STR, help="Only inspect objects of the given type")]
    opts, args = cli.parse(argv, "pallet inspect [OPTIONS] NAME|ID [NAME|ID...]",
                           "Return low-level information on Docker objects", flags, min_args=1)
    typ = opts.type
    if typ and typ not in _INSPECT_PATHS:
        raise StatusError('unknown type: "%s": must be one of "config", "container", "image", '
                          '"network", "node", "plugin", "secret", "service", "task", "volume"'
                          % typ, 1)
    tmpl = None
    if opts.format and opts.format != "json":
        from pallet.client.docker_template import parse_template
        tmpl = parse_template(opts.format)
    found, errors = [], []
    for name in args:
        try:
            found.append(inspect_one(cli, name, typ, opts.size))
        except DaemonError as e:
            errors.append(str(e))
        except LookupError as e:
            errors.append(str(e.args[0]))
    from pallet.client.cmd_common import print_inspected
    return print_inspected(cli, found, errors, tmpl)


# -- container prune -----------------------------------------------------------------
def cmd_container_prune(cli, argv):
    flags = [Flag("filter", kind=LIST, help='Provide filter values (e.g. "until=<timestamp>")',
                  metavar="filter"),
             Flag("force", "f", BOOL, help="Do not prompt for confirmation")]
    opts, _ = cli.parse(argv, "pallet container prune [OPTIONS]", "Remove all stopped containers",
                        flags, max_args=0)
    from pallet.client.cmd_common import confirm, parse_filters, report_deleted
    filters = cli.flag_value(parse_filters, opts.filter)
    if not opts.force and not confirm("WARNING! This will remove all stopped containers."):
        return 0
    res = cli.client.post("/containers/prune", {"filters": filters}) or {}
    report_deleted(cli, "Containers", res.get("ContainersDeleted") or [],
                   res.get("SpaceReclaimed") or 0)
    return 0


# -- update ---------------------------------------------------------------------------
def _nano_cpus(value):
    try:
        f = float(value)
    except ValueError:
        raise ValueError('invalid argument "%s" for "--cpus" flag: failed to parse %s as a '
                         'rational number' % (value, value)) from None
    return int(round(f * 1e9))


def cmd_update(cli, argv):
    from pallet.client.docker_runopts import ram_in_bytes
    flags = [Flag("blkio-weight", kind=INT, help="Block IO (relative weight), between 10 and "
                  "1000, or 0 to disable (default 0)", metavar="uint16"),
             Flag("cpu-period", kind=INT, help="Limit CPU CFS (Completely Fair Scheduler) period"),
             Flag("cpu-quota", kind=INT, help="Limit CPU CFS (Completely Fair Scheduler) quota"),
             Flag("cpu-rt-period", kind=INT, help="Limit the CPU real-time period in microseconds"),
             Flag("cpu-rt-runtime", kind=INT, help="Limit the CPU real-time runtime in "
                  "microseconds"),
             Flag("cpu-shares", "c", INT, help="CPU shares (relative weight)"),
             Flag("cpus", kind=STR, help="Number of CPUs", metavar="decimal"),
             Flag("cpuset-cpus", kind=STR, help="CPUs in which to allow execution (0-3, 0,1)"),
             Flag("cpuset-mems", kind=STR, help="MEMs in which to allow execution (0-3, 0,1)"),
             Flag("kernel-memory", kind=STR, hidden=True, metavar="bytes"),
             Flag("memory", "m", STR, help="Memory limit", metavar="bytes"),
             Flag("memory-reservation", kind=STR, help="Memory soft limit", metavar="bytes"),
             Flag("memory-swap", kind=STR, help='Swap limit equal to memory plus swap: -1 to '
                  'enable unlimited swap', metavar="bytes"),
             Flag("pids-limit", kind=INT, help="Tune container pids limit (set -1 for "
                  "unlimited)"),
             Flag("restart", kind=STR, help="Restart policy to apply when a container exits")]
    opts, args = cli.parse(argv, "pallet update [OPTIONS] CONTAINER [CONTAINER...]",
                           "Update configuration of one or more containers", flags, min_args=1,
                           aliases="pallet container update, pallet update")
    if not opts.given:
        raise StatusError("you must provide one or more flags when using this command", 1)

    def mem(flag, name):
        v = getattr(opts, name)
        if flag not in opts.given:
            return None
        if v == "-1" and name == "memory_swap":
            return -1
        return ram_in_bytes(v, "-m, --memory" if flag == "memory" else
                            "--" + flag.replace("_", "-"))

    try:
        body = {"BlkioWeight": opts.blkio_weight if "blkio_weight" in opts.given else None,
                "CpuPeriod": opts.cpu_period if "cpu_period" in opts.given else None,
                "CpuQuota": opts.cpu_quota if "cpu_quota" in opts.given else None,
                "CpuRealtimePeriod": opts.cpu_rt_period if "cpu_rt_period" in opts.given
                else None,
                "CpuRealtimeRuntime": opts.cpu_rt_runtime if "cpu_rt_runtime" in opts.given
                else None,
                "CpuShares": opts.cpu_shares if "cpu_shares" in opts.given else None,
                "NanoCpus": _nano_cpus(opts.cpus) if "cpus" in opts.given else None,
                "CpusetCpus": opts.cpuset_cpus if "cpuset_cpus" in opts.given else None,
                "CpusetMems": opts.cpuset_mems if "cpuset_mems" in opts.given else None,
                "Memory": mem("memory", "memory"),
                "MemoryReservation": mem("memory_reservation", "memory_reservation"),
                "MemorySwap": mem("memory_swap", "memory_swap"),
                "KernelMemory": mem("kernel_memory", "kernel_memory"),
                "PidsLimit": opts.pids_limit if "pids_limit" in opts.given else None}
    except Exception as e:  # noqa: BLE001 — ValueError or the runopts' FlagValueError
        if not isinstance(e, ValueError) and type(e).__name__ != "FlagValueError":
            raise
        raise StatusError("%s\n\nUsage:  %s\n\nRun '%s --help' for more information"
                          % (e, cli.usage, cli.command_path), 125) from None
    if "restart" in opts.given:
        from pallet.client.docker_runopts import parse_restart
        try:
            body["RestartPolicy"] = parse_restart(opts.restart)
        except Exception as e:  # noqa: BLE001 — its own message, as a flag error
            raise StatusError(str(e), 125) from None
    body = {k: v for k, v in body.items() if v is not None}
    errors, warnings = [], []
    for name in args:
        try:
            res = cli.client.post(cpath(name, "/update"), None, body) or {}
        except DaemonError as e:
            errors.append(str(e))
            continue
        warnings.extend(res.get("Warnings") or [])
        cli.outln(name)
    for w in warnings:
        cli.err(w)
    if errors:
        raise StatusError("\n".join(errors), 1)
    return 0
