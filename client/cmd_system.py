"""``pallet version`` and ``pallet info``."""

import platform
import sys
import time

from pallet.client.docker import VERSION, StatusError
from pallet.client.docker_flags import BOOL, LIST as LIST_KIND, STR, Flag
from pallet.units.size import bytes_size


def _ansic(ts_text):
    """Go's time.ANSIC layout ('Thu May  7 21:09:36 2026') of an RFC 3339 time, local."""
    from pallet.client.docker_format import parse_rfc3339
    t = parse_rfc3339(ts_text)
    if t is None:
        return ts_text
    lt = time.localtime(t)
    return time.strftime("%a %b ", lt) + ("%2d" % lt.tm_mday) + time.strftime(" %H:%M:%S %Y", lt)


def _arch():
    m = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}.get(m, m)


def _kv_block(rows, minwidth=20):
    """Lines 'key:<TAB>value' aligned like docker's tabwriter(minwidth, padding 1)."""
    from pallet.client.docker_format import tabwrite
    return tabwrite("\n".join(rows), minwidth=minwidth, padding=1)


def cmd_version(cli, argv):
    flags = [Flag("format", "f", STR, help="Format output using a custom template")]
    opts, _ = cli.parse(argv, "pallet version [OPTIONS]", "Show the pallet version information",
                        flags, max_args=0)
    from pallet.client.docker_api import MAX_API_VERSION, ConnectError, DaemonError
    client = cli.client
    server = None
    error = None
    try:
        api = client.version
        server = client.get("/version")
    except (ConnectError, DaemonError) as e:
        error = e
        api = MAX_API_VERSION
    client_info = {
        "Platform": {"Name": ""},
        "Version": VERSION,
        "ApiVersion": api,
        "DefaultAPIVersion": MAX_API_VERSION,
        "PythonVersion": platform.python_version(),
        "Os": sys.platform if sys.platform != "linux" else "linux",
        "Arch": _arch(),
        "Context": "default",
    }
    if opts.format:
        from pallet.client.docker_template import parse_template, run_template
        tmpl = parse_template(opts.format)
        cli.outln(run_template(tmpl, {"Client": client_info, "Server": server}))
    else:
        rows = ["Client:",
                " Version:\t" + VERSION,
                " API version:\t" + api + ("" if api == MAX_API_VERSION else
                                          " (downgraded from %s)" % MAX_API_VERSION),
                " Python version:\t" + client_info["PythonVersion"],
                " OS/Arch:\t%s/%s" % (client_info["Os"], client_info["Arch"]),
                " Context:\t" + client_info["Context"]]
        cli.out(_kv_block(rows) + "\n")
        if server is not None:
            cli.out("\n" + _server_version(server) + "\n")
    if error is not None:
        raise StatusError(str(error), 1)
    return 0


def _server_version(v):
    rows = ["Server:" + ((" " + v["Platform"]["Name"]) if (v.get("Platform") or {}).get("Name") else "")]
    comps = v.get("Components")
    if not comps:
        comps = [{"Name": "Engine", "Version": v.get("Version", ""), "Details": {
            "ApiVersion": v.get("ApiVersion", ""), "MinAPIVersion": v.get("MinAPIVersion", ""),
            "GoVersion": v.get("GoVersion", ""), "GitCommit": v.get("GitCommit", ""),
            "BuildTime": v.get("BuildTime", ""), "Os": v.get("Os", ""), "Arch": v.get("Arch", ""),
            "Experimental": str(v.get("Experimental", "false")).lower()}}]
    for c in comps:
        d = c.get("Details") or {}
        rows.append(" %s:" % c.get("Name", ""))
        rows.append("  Version:\t%s" % c.get("Version", ""))
        if c.get("Name") == "Engine":
            rows.append("  API version:\t%s (minimum version %s)" % (d.get("ApiVersion", ""),
                                                                   d.get("MinAPIVersion", "")))
            if "GoVersion" in d:
                rows.append("  Go version:\t%s" % d["GoVersion"])
            if "PythonVersion" in d:
                rows.append("  Python version:\t%s" % d["PythonVersion"])
            rows.append("  Git commit:\t%s" % d.get("GitCommit", ""))
            rows.append("  Built:\t%s" % _ansic(d.get("BuildTime", "")))
            rows.append("  OS/Arch:\t%s/%s" % (d.get("Os", ""), d.get("Arch", "")))
            rows.append("  Experimental:\t%s" % d.get("Experimental", "false"))
        else:
            for k in sorted(d):
                rows.append("  %s:\t%s" % (k, d[k]))
    return _kv_block(rows)


def cmd_info(cli, argv):
    flags = [Flag("format", "f", STR, help="Format output using a custom template")]
    opts, _ = cli.parse(argv, "pallet info [OPTIONS]", "Display system-wide information",
                        flags, max_args=0)
    from pallet.client.docker_api import ConnectError, DaemonError
    try:
        info = cli.client.get("/info")
        error = None
    except (ConnectError, DaemonError) as e:
        info, error = None, e
    if opts.format:
        from pallet.client.docker_template import parse_template, run_template
        tmpl = parse_template(opts.format)
        if info is None:
            raise StatusError(str(error), 1)
        cli.outln(run_template(tmpl, info))
        return 0
    cli.out("Client:\n Version:    %s\n Context:    default\n Debug Mode: %s\n\n"
            % (VERSION, "true" if cli.debug else "false"))
    if info is None:
        cli.outln("Server:")
        raise StatusError(str(error), 1)
    cli.out(_server_info(info))
    for w in info.get("Warnings") or []:
        cli.err(w)
    return 0


def _server_info(i):
    out = []
    add = out.append
    add("Server:")
    add(" Containers: %s" % i.get("Containers", 0))
    add("  Running: %s" % i.get("ContainersRunning", 0))
    add("  Paused: %s" % i.get("ContainersPaused", 0))
    add("  Stopped: %s" % i.get("ContainersStopped", 0))
    add(" Images: %s" % i.get("Images", 0))
    add(" Server Version: %s" % i.get("ServerVersion", ""))
    add(" Storage Driver: %s" % i.get("Driver", ""))
    for pair in i.get("DriverStatus") or []:
        if len(pair) == 2:
            add("  %s: %s" % (pair[0], pair[1]))
    add(" Logging Driver: %s" % i.get("LoggingDriver", ""))
    add(" Cgroup Driver: %s" % i.get("CgroupDriver", ""))
    if i.get("CgroupVersion"):
        add(" Cgroup Version: %s" % i["CgroupVersion"])
    plugins = i.get("Plugins") or {}
    add(" Plugins:")
    add("  Volume: %s" % " ".join(plugins.get("Volume") or []))
    add("  Network: %s" % " ".join(plugins.get("Network") or []))
    if plugins.get("Authorization"):
        add("  Authorization: %s" % " ".join(plugins["Authorization"]))
    add("  Log: %s" % " ".join(plugins.get("Log") or []))
    swarm = (i.get("Swarm") or {}).get("LocalNodeState") or "inactive"
    add(" Swarm: %s" % swarm)
    runtimes = i.get("Runtimes") or {}
    if runtimes:
        add(" Runtimes: %s" % " ".join(sorted(runtimes)))
        add(" Default Runtime: %s" % i.get("DefaultRuntime", ""))
    if i.get("InitBinary") is not None:
        add(" Init Binary: %s" % i.get("InitBinary", ""))
    for key, label in (("ContainerdCommit", "containerd"), ("RuncCommit", "runc"),
                       ("InitCommit", "init")):
        if key in i:
            add(" %s version: %s" % (label, (i.get(key) or {}).get("ID", "")))
    secopts = i.get("SecurityOptions") or []
    if secopts:
        add(" Security Options:")
        for so in secopts:
            kv = dict(p.split("=", 1) for p in so.split(",") if "=" in p)
            add("  %s" % kv.get("name", so))
            for k, v in kv.items():
                if k != "name":
                    add("   %s: %s" % (k[:1].upper() + k[1:], v))
    add(" Kernel Version: %s" % i.get("KernelVersion", ""))
    add(" Operating System: %s" % i.get("OperatingSystem", ""))
    add(" OSType: %s" % i.get("OSType", ""))
    add(" Architecture: %s" % i.get("Architecture", ""))
    add(" CPUs: %s" % i.get("NCPU", 0))
    add(" Total Memory: %s" % bytes_size(i.get("MemTotal", 0)))
    add(" Name: %s" % i.get("Name", ""))
    add(" ID: %s" % i.get("ID", ""))
    add(" Docker Root Dir: %s" % i.get("DockerRootDir", ""))
    add(" Debug Mode: %s" % ("true" if i.get("Debug") else "false"))
    for key, label in (("HttpProxy", "HTTP Proxy"), ("HttpsProxy", "HTTPS Proxy"),
                       ("NoProxy", "No Proxy")):
        if i.get(key):
            add(" %s: %s" % (label, i[key]))
    if i.get("Labels"):
        add(" Labels:")
        for lbl in i["Labels"]:
            add("  %s" % lbl)
    add(" Experimental: %s" % ("true" if i.get("ExperimentalBuild") else "false"))
    reg = i.get("RegistryConfig") or {}
    insecure = [c for c in reg.get("InsecureRegistryCIDRs") or []]
    for name, idx in sorted((reg.get("IndexConfigs") or {}).items()):
        if not idx.get("Secure", True) and not idx.get("Official"):
            insecure.append(name)
    if insecure:
        add(" Insecure Registries:")
        for r in insecure:
            add("  %s" % r)
    if reg.get("Mirrors"):
        add(" Registry Mirrors:")
        for m in reg["Mirrors"]:
            add("  %s" % m)
    add(" Live Restore Enabled: %s" % ("true" if i.get("LiveRestoreEnabled") else "false"))
    return "\n".join(out) + "\n\n"


# -- system df / prune -------------------------------------------------------------------
def _reclaimable(size, total):
    from pallet.units.size import human_size
    if total > 0:
        return "%s (%d%%)" % (human_size(size), int(size * 100 / total))
    return human_size(size)


def df_rows(df):
    """The four summary rows of ``system df`` as (Type, TotalCount, Active, Size, Reclaimable)."""
    from pallet.units.size import human_size as hs
    images = df.get("Images") or []
    containers = df.get("Containers") or []
    volumes = df.get("Volumes") or []
    cache = df.get("BuildCache") or []
    img_size = df.get("LayersSize") or sum(i.get("Size", 0) for i in images)
    img_active = sum(1 for i in images if (i.get("Containers") or 0) > 0)
    img_used = sum(i.get("Size", 0) - (i.get("SharedSize") or 0) if i.get("SharedSize", -1) >= 0
                   else i.get("Size", 0) for i in images if (i.get("Containers") or 0) > 0)
    c_size = sum(c.get("SizeRw") or 0 for c in containers)
    c_active = sum(1 for c in containers if c.get("State") in ("running", "paused"))
    c_reclaim = sum(c.get("SizeRw") or 0 for c in containers
                    if c.get("State") not in ("running", "paused"))
    v_size = sum(max(0, (v.get("UsageData") or {}).get("Size", 0)) for v in volumes)
    v_active = sum(1 for v in volumes if (v.get("UsageData") or {}).get("RefCount", 0) > 0)
    v_reclaim = sum(max(0, (v.get("UsageData") or {}).get("Size", 0)) for v in volumes
                    if (v.get("UsageData") or {}).get("RefCount", 0) <= 0)
    b_size = sum(b.get("Size", 0) for b in cache if not b.get("Shared"))
    b_active = sum(1 for b in cache if b.get("InUse"))
    b_reclaim = sum(b.get("Size", 0) for b in cache if not b.get("InUse") and not b.get("Shared"))
    return [
        ("Images", len(images), img_active, hs(img_size),
         _reclaimable(max(0, img_size - img_used), img_size)),
        ("Containers", len(containers), c_active, hs(c_size), _reclaimable(c_reclaim, c_size)),
        ("Local Volumes", len(volumes), v_active, hs(v_size), _reclaimable(v_reclaim, v_size)),
        ("Build Cache", len(cache), b_active, hs(b_size), hs(b_reclaim)),
    ]


class DiskUsageRow:
    FIELDS = {"Type": "TYPE", "TotalCount": "TOTAL", "Active": "ACTIVE", "Size": "SIZE",
              "Reclaimable": "RECLAIMABLE"}
    GO_TYPE = "*formatter.diskUsageImagesContext"

    def __init__(self, row):
        self.row = row

    def template_field(self, name, args):
        if name not in self.FIELDS:
            raise KeyError(name)
        v = self.row[list(self.FIELDS).index(name)]
        return str(v)

    def to_json(self):
        return {k: self.template_field(k, ()) for k in sorted(self.FIELDS)}


def cmd_system_df(cli, argv):
    flags = [Flag("format", kind=STR, help="Format output using a custom template"),
             Flag("verbose", "v", BOOL, help="Show detailed information on space usage")]
    opts, _ = cli.parse(argv, "pallet system df [OPTIONS]", "Show docker disk usage", flags,
                        max_args=0)
    from pallet.client.docker_format import HeaderContext, render_rows
    df = cli.client.get("/system/df") or {}
    if opts.verbose:
        return _df_verbose(cli, df)
    fmt = opts.format or "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t" \
        "{{.Reclaimable}}"
    if fmt == "json":
        fmt = "{{json .}}"
    rows = [DiskUsageRow(r) for r in df_rows(df)]
    cli.out(render_rows(fmt, rows, HeaderContext(DiskUsageRow)))
    return 0


def _df_verbose(cli, df):
    from pallet.units.size import human_size as hs
    from pallet.client.docker_format import since, tabwrite, truncate_id
    lines = ["Images space usage:", "",
             "REPOSITORY\tTAG\tIMAGE ID\tCREATED\tSIZE\tSHARED SIZE\tUNIQUE SIZE\tCONTAINERS"]
    for i in df.get("Images") or []:
        tags = i.get("RepoTags") or ["<none>:<none>"]
        for t in tags:
            repo, _, tag = t.rpartition(":")
            shared = i.get("SharedSize", -1)
            lines.append("\t".join([repo, tag, truncate_id(i.get("Id", "")),
                                    since(i.get("Created", 0)), hs(i.get("Size", 0)),
                                    hs(shared) if shared >= 0 else "N/A",
                                    hs(i.get("Size", 0) - shared) if shared >= 0 else "N/A",
                                    str(i.get("Containers", 0))]))
    lines += ["", "Containers space usage:", "",
              "CONTAINER ID\tIMAGE\tCOMMAND\tLOCAL VOLUMES\tSIZE\tCREATED\tSTATUS\tNAMES"]
    for c in df.get("Containers") or []:
        names = ",".join(n.lstrip("/") for n in c.get("Names") or [])
        lines.append("\t".join([truncate_id(c.get("Id", "")), c.get("Image", ""),
                                '"%s"' % (c.get("Command", "")[:19] + "…" if
                                          len(c.get("Command", "")) > 20 else
                                          c.get("Command", "")),
                                str(sum(1 for m in c.get("Mounts") or []
                                        if m.get("Type") == "volume")),
                                hs(c.get("SizeRw") or 0), since(c.get("Created", 0)),
                                c.get("Status", ""), names]))
    lines += ["", "Local Volumes space usage:", "", "VOLUME NAME\tLINKS\tSIZE"]
    for v in df.get("Volumes") or []:
        u = v.get("UsageData") or {}
        lines.append("\t".join([v.get("Name", ""), str(u.get("RefCount", 0)),
                                hs(max(0, u.get("Size", 0)))]))
    lines += ["", "Build cache usage: %s" % hs(sum(b.get("Size", 0)
                                                  for b in df.get("BuildCache") or [])), ""]
    cli.out(tabwrite("\n".join(lines) + "\n"))
    return 0


def cmd_system_prune(cli, argv):
    flags = [Flag("all", "a", BOOL, help="Remove all unused images not just dangling ones"),
             Flag("filter", kind=LIST_KIND, help='Provide filter values (e.g. "label=<key>=<value>")',
                  metavar="filter"),
             Flag("force", "f", BOOL, help="Do not prompt for confirmation"),
             Flag("volumes", kind=BOOL, help="Prune anonymous volumes")]
    opts, _ = cli.parse(argv, "pallet system prune [OPTIONS]", "Remove unused data", flags,
                        max_args=0)
    import json
    from pallet.client.cmd_common import confirm, parse_filters
    from pallet.units.size import human_size
    from pallet.client.docker_api import DaemonError
    base = json.loads(cli.flag_value(parse_filters, opts.filter) or "{}")
    warning = ["WARNING! This will remove:", "  - all stopped containers",
               "  - all networks not used by at least one container"]
    if opts.volumes:
        warning.append("  - all anonymous volumes not used by at least one container")
    warning.append("  - all images without at least one container associated to them"
                   if opts.all else "  - all dangling images")
    warning.append("  - all build cache" if opts.all else "  - unused build cache")
    if not opts.force and not confirm("\n".join(warning) + "\n"):
        return 0
    reclaimed = 0
    out = []

    def prune(path, filters, key, title, extra=None):
        nonlocal reclaimed
        params = {"filters": json.dumps(filters) if filters else None}
        params.update(extra or {})
        res = cli.client.post(path, params) or {}
        reclaimed += res.get("SpaceReclaimed") or 0
        items = res.get(key) or []
        if items and key == "ImagesDeleted":
            items = ["%s: %s" % (("untagged", i["Untagged"]) if i.get("Untagged") else
                                 ("deleted", i.get("Deleted", ""))) for i in items]
        if items:
            out.append("Deleted %s:\n" % title + "".join(i + "\n" for i in items))

    prune("/containers/prune", base, "ContainersDeleted", "Containers")
    prune("/networks/prune", base, "NetworksDeleted", "Networks")
    if opts.volumes:
        prune("/volumes/prune", base, "VolumesDeleted", "Volumes")
    img = dict(base, dangling={"false" if opts.all else "true": True})
    prune("/images/prune", img, "ImagesDeleted", "Images")
    try:
        prune("/build/prune", base, "CachesDeleted", "build cache objects",
              {"all": True} if opts.all else None)
    except DaemonError as e:
        if e.status not in (404, 501):
            raise
    text = "".join(o + "\n" for o in out)
    cli.out(text + "Total reclaimed space: %s\n" % human_size(reclaimed))
    return 0
