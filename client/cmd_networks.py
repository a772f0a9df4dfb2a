"""``pallet network``: create, ls, inspect, rm, prune, connect, disconnect."""

from pallet.client.cmd_common import confirm, list_format, parse_filters, report_deleted
from pallet.client.docker import StatusError
from pallet.client.docker_api import DaemonError, quote_path
from pallet.client.docker_flags import BOOL, LIST, STR, Flag
from pallet.client.docker_format import (HeaderContext, RowContext, parse_rfc3339, render_rows,
                                         truncate_id)


def _npath(name, suffix=""):
    return "/networks/" + quote_path(name) + suffix


class NetworkRow(RowContext):
    FIELDS = {"ID": "NETWORK ID", "Name": "NAME", "Driver": "DRIVER", "Scope": "SCOPE",
              "IPv4": "IPV4", "IPv6": "IPV6", "Internal": "INTERNAL", "Labels": "LABELS",
              "Label": lambda n: n, "CreatedAt": "CREATED AT"}
    JSON_FIELDS = tuple(k for k in FIELDS if k != "Label")
    GO_TYPE = "*formatter.networkContext"

    def __init__(self, n, trunc):
        self.n, self.trunc = n, trunc

    def f_ID(self):
        i = self.n.get("Id", "")
        return truncate_id(i) if self.trunc else i

    def f_Name(self):
        return self.n.get("Name", "")

    def f_Driver(self):
        return self.n.get("Driver", "")

    def f_Scope(self):
        return self.n.get("Scope", "")

    def f_IPv4(self):
        return "true" if self.n.get("EnableIPv4") else "false"

    def f_IPv6(self):
        return "true" if self.n.get("EnableIPv6") else "false"

    def f_Internal(self):
        return "true" if self.n.get("Internal") else "false"

    def f_Labels(self):
        return ",".join("%s=%s" % kv for kv in (self.n.get("Labels") or {}).items())

    def f_Label(self, name):
        return (self.n.get("Labels") or {}).get(name, "")

    def f_CreatedAt(self):
        return go_time_text(self.n.get("Created", ""))


def go_time_text(rfc3339):
    """Go's time.Time.String() of an RFC 3339 time: '2026-01-02 15:04:05.123456789 +0000 UTC'."""
    import time
    t = parse_rfc3339(rfc3339) if rfc3339 else None
    if t is None:
        return "0001-01-01 00:00:00 +0000 UTC"
    frac = ""
    if "." in rfc3339:
        digits = rfc3339.split(".", 1)[1]
        digits = "".join(c for c in digits if c.isdigit())
        frac = "." + digits.rstrip("0") if digits.rstrip("0") else ""
    lt = time.localtime(int(t))
    off = lt.tm_gmtoff
    sign = "+" if off >= 0 else "-"
    zone = "UTC" if off == 0 and lt.tm_zone in ("UTC", "GMT") else lt.tm_zone
    return "%s%s %s%02d%02d %s" % (time.strftime("%Y-%m-%d %H:%M:%S", lt), frac, sign,
                                  abs(off) // 3600, abs(off) % 3600 // 60, zone)


def cmd_network_ls(cli, argv):
    flags = [Flag("filter", "f", LIST, help='Provide filter values (e.g. "driver=bridge")',
                  metavar="filter"),
             Flag("format", kind=STR, help="Format output using a custom template"),
             Flag("no-trunc", kind=BOOL, help="Do not truncate the output"),
             Flag("quiet", "q", BOOL, help="Only display network IDs")]
    opts, _ = cli.parse(argv, "pallet network ls [OPTIONS]", "List networks", flags,
                        max_args=0, aliases="pallet network ls, pallet network list")
    filters = cli.flag_value(parse_filters, opts.filter)
    nets = cli.client.get("/networks", {"filters": filters}) or []
    nets.sort(key=lambda n: n.get("Name", ""))
    fmt = list_format(opts, "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}")
    rows = [NetworkRow(n, not opts.no_trunc) for n in nets]
    cli.out(render_rows(fmt, rows, HeaderContext(NetworkRow)))
    return 0


def cmd_network_inspect(cli, argv):
    flags = [Flag("format", "f", STR, help="Format output using a custom template"),
             Flag("verbose", "v", BOOL, help="Verbose output for diagnostics")]
    opts, args = cli.parse(argv, "pallet network inspect [OPTIONS] NETWORK [NETWORK...]",
                           "Display detailed information on one or more networks", flags,
                           min_args=1)
    from pallet.client.cmd_common import inspect_many
    suffix = "?verbose=true" if opts.verbose else ""
    return inspect_many(cli, args, lambda n: _npath(n) + suffix, opts.format)


def _kv(values, what):
    out = {}
    for v in values or ():
        k, sep, val = v.partition("=")
        if not sep and what:
            raise ValueError("invalid key/value pair format in %s" % what)
        out[k] = val
    return out


def cmd_network_create(cli, argv):
    flags = [Flag("attachable", kind=BOOL, help="Enable manual container attachment"),
             Flag("aux-address", kind=LIST, help="Auxiliary IPv4 or IPv6 addresses used by "
                  "Network driver", metavar="map"),
             Flag("config-from", kind=STR, help="The network from which to copy the configuration"),
             Flag("config-only", kind=BOOL, help="Create a configuration only network"),
             Flag("driver", "d", STR, default="bridge", help="Driver to manage the Network"),
             Flag("gateway", kind=LIST, help="IPv4 or IPv6 Gateway for the master subnet",
                  metavar="strings"),
             Flag("ingress", kind=BOOL, help="Create swarm routing-mesh network"),
             Flag("internal", kind=BOOL, help="Restrict external access to the network"),
             Flag("ip-range", kind=LIST, help="Allocate container ip from a sub-range",
                  metavar="strings"),
             Flag("ipam-driver", kind=STR, default="default", help="IP Address Management Driver"),
             Flag("ipam-opt", kind=LIST, help="Set IPAM driver specific options", metavar="map"),
             Flag("ipv6", kind=BOOL, help="Enable or disable IPv6 networking"),
             Flag("label", kind=LIST, help="Set metadata on a network", metavar="list"),
             Flag("opt", "o", LIST, help="Set driver specific options", metavar="map"),
             Flag("scope", kind=STR, help="Control the network's scope"),
             Flag("subnet", kind=LIST, help="Subnet in CIDR format that represents a network "
                  "segment", metavar="strings")]
    opts, args = cli.parse(argv, "pallet network create [OPTIONS] NETWORK", "Create a network",
                           flags, min_args=1, max_args=1)
    try:
        ipam_config = _ipam_config(opts)
    except ValueError as e:
        raise StatusError(str(e), 1) from None
    body = {"Name": args[0], "Driver": opts.driver, "Scope": opts.scope or "",
            "EnableIPv6": opts.ipv6 if "ipv6" in opts.given else None,
            "IPAM": {"Driver": opts.ipam_driver, "Config": ipam_config,
                     "Options": _kv(opts.ipam_opt, None)},
            "Internal": opts.internal, "Attachable": opts.attachable, "Ingress": opts.ingress,
            "ConfigOnly": opts.config_only, "Options": _kv(opts.opt, None),
            "Labels": _kv(opts.label, None), "CheckDuplicate": True}
    if opts.config_from:
        body["ConfigFrom"] = {"Network": opts.config_from}
    if body["EnableIPv6"] is None:
        del body["EnableIPv6"]
    res = cli.client.post("/networks/create", None, body) or {}
    if res.get("Warning"):
        cli.err(res["Warning"])
    cli.outln(res.get("Id", ""))
    return 0


def _ipam_config(opts):
    """--subnet/--ip-range/--gateway/--aux-address matched by subnet, as docker does."""
    import ipaddress
    if len(opts.subnet) < len(opts.gateway) or len(opts.subnet) < len(opts.ip_range):
        raise ValueError("every ip-range or gateway must have a corresponding subnet")
    pools = []
    nets = []
    for s in opts.subnet:
        pools.append({"Subnet": s})
        try:
            net = ipaddress.ip_network(s, strict=False)
        except ValueError:
            nets.append(None)  # the daemon says what is wrong with it
            continue
        for other in nets:
            if other is None:
                continue
            if net.overlaps(other):
                raise ValueError("multiple overlapping subnet configuration is not supported")
        nets.append(net)

    def owner(addr, what):
        try:
            ip = ipaddress.ip_network(addr, strict=False)
        except ValueError:
            raise ValueError("invalid %s address: %s" % (what, addr)) from None
        for pool, net in zip(pools, nets):
            if net is not None and ip.version == net.version and ip.subnet_of(net):
                return pool
        raise ValueError("no matching subnet for %s %s" % (what, addr))

    for r in opts.ip_range:
        p = owner(r, "range")
        if "IPRange" in p:
            raise ValueError("cannot configure multiple ranges (%s, %s) on the same subnet (%s)"
                             % (r, p["IPRange"], p["Subnet"]))
        p["IPRange"] = r
    for g in opts.gateway:
        p = owner(g, "gateway")
        if "Gateway" in p:
            raise ValueError("cannot configure multiple gateways (%s, %s) for the same subnet (%s)"
                             % (g, p["Gateway"], p["Subnet"]))
        p["Gateway"] = g
    for a in opts.aux_address:
        k, _, v = a.partition("=")
        owner(v, "aux-address").setdefault("AuxiliaryAddresses", {})[k] = v
    return pools


def cmd_network_rm(cli, argv):
    flags = [Flag("force", "f", BOOL, help="Do not error if the network does not exist")]
    opts, args = cli.parse(argv, "pallet network rm NETWORK [NETWORK...]",
                           "Remove one or more networks", flags, min_args=1,
                           aliases="pallet network rm, pallet network remove")
    errors = []
    for name in args:
        try:
            cli.client.request("DELETE", _npath(name)).close()
        except DaemonError as e:
            if opts.force and e.status == 404:
                continue
            errors.append(str(e))
            continue
        cli.outln(name)
    if errors:
        # docker's network rm ends with its own status line
        raise StatusError("\n".join(errors + ["exit status 1"]), 1)
    return 0


def cmd_network_prune(cli, argv):
    flags = [Flag("filter", kind=LIST, help='Provide filter values (e.g. "until=<timestamp>")',
                  metavar="filter"),
             Flag("force", "f", BOOL, help="Do not prompt for confirmation")]
    opts, _ = cli.parse(argv, "pallet network prune [OPTIONS]", "Remove all unused networks",
                        flags, max_args=0)
    filters = cli.flag_value(parse_filters, opts.filter)
    if not opts.force and not confirm("WARNING! This will remove all custom networks not used "
                                      "by at least one container."):
        return 0
    res = cli.client.post("/networks/prune", {"filters": filters}) or {}
    report_deleted(cli, "Networks", res.get("NetworksDeleted") or [])
    return 0


def cmd_network_connect(cli, argv):
    flags = [Flag("alias", kind=LIST, help="Add network-scoped alias for the container",
                  metavar="strings"),
             Flag("driver-opt", kind=LIST, help="driver options for the network",
                  metavar="strings"),
             Flag("gw-priority", kind=STR, hidden=True),
             Flag("ip", kind=STR, help="IPv4 address (e.g., \"172.30.100.104\")"),
             Flag("ip6", kind=STR, help="IPv6 address (e.g., \"2001:db8::33\")"),
             Flag("link", kind=LIST, help="Add link to another container", metavar="list"),
             Flag("link-local-ip", kind=LIST, help="Add a link-local address for the container",
                  metavar="strings")]
    opts, args = cli.parse(argv, "pallet network connect [OPTIONS] NETWORK CONTAINER",
                           "Connect a container to a network", flags, min_args=2, max_args=2)
    ipam = {}
    if opts.ip:
        ipam["IPv4Address"] = opts.ip
    if opts.ip6:
        ipam["IPv6Address"] = opts.ip6
    if opts.link_local_ip:
        ipam["LinkLocalIPs"] = list(opts.link_local_ip)
    endpoint = {"IPAMConfig": ipam or None, "Links": list(opts.link) or None,
                "Aliases": list(opts.alias) or None,
                "DriverOpts": _kv(opts.driver_opt, None) or None}
    cli.client.request("POST", _npath(args[0], "/connect"), None,
                       {"Container": args[1], "EndpointConfig": endpoint}).close()
    return 0


def cmd_network_disconnect(cli, argv):
    flags = [Flag("force", "f", BOOL, help="Force the container to disconnect from a network")]
    opts, args = cli.parse(argv, "pallet network disconnect [OPTIONS] NETWORK CONTAINER",
                           "Disconnect a container from a network", flags, min_args=2,
                           max_args=2)
    cli.client.request("POST", _npath(args[0], "/disconnect"), None,
                       {"Container": args[1], "Force": opts.force}).close()
    return 0
