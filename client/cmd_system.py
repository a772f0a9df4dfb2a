"""``pallet version`` and ``pallet info``."""

import platform
import sys
import time

from pallet.client.docker import VERSION, StatusError
from pallet.client.docker_flags import STR, Flag


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


def _bytes_size(n):
    """go-units BytesSize: binary units with 4 significant digits ('23.54GiB')."""
    units = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB")
    size = float(n)
    i = 0
    while size >= 1024.0 and i < len(units) - 1:
        size /= 1024.0
        i += 1
    return "%.4g%s" % (size, units[i])


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
    add(" Total Memory: %s" % _bytes_size(i.get("MemTotal", 0)))
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
