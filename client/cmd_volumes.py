"""``pallet volume``: create, ls, inspect, rm, prune."""

from pallet.client.cmd_common import (confirm, each, inspect_many, list_format, parse_filters,
                                      report_deleted)
from pallet.client.docker import StatusError
from pallet.client.docker_api import api_at_least, quote_path
from pallet.client.docker_flags import BOOL, LIST, STR, Flag
from pallet.client.docker_format import HeaderContext, RowContext, render_rows
from pallet.units.size import human_size


class VolumeRow(RowContext):
    FIELDS = {"Name": "VOLUME NAME", "Driver": "DRIVER", "Scope": "SCOPE",
              "Mountpoint": "MOUNTPOINT", "Labels": "LABELS", "Label": lambda n: n,
              "Links": "LINKS", "Size": "SIZE", "Group": "GROUP",
              "Availability": "AVAILABILITY", "Status": "STATUS"}
    JSON_FIELDS = tuple(k for k in FIELDS if k != "Label")
    GO_TYPE = "*formatter.volumeContext"

    def __init__(self, v):
        self.v = v

    def f_Name(self):
        return self.v.get("Name", "")

    def f_Driver(self):
        return self.v.get("Driver", "")

    def f_Scope(self):
        return self.v.get("Scope", "")

    def f_Mountpoint(self):
        return self.v.get("Mountpoint", "")

    def f_Labels(self):
        return ",".join("%s=%s" % kv for kv in (self.v.get("Labels") or {}).items())

    def f_Label(self, name):
        return (self.v.get("Labels") or {}).get(name, "")

    def _usage(self, key):
        u = self.v.get("UsageData")
        if not u or u.get(key, -1) == -1:
            return "N/A"
        return u[key]

    def f_Links(self):
        v = self._usage("RefCount")
        return v if v == "N/A" else str(v)

    def f_Size(self):
        v = self._usage("Size")
        return v if v == "N/A" else human_size(v, 3)

    def f_Group(self):
        return "N/A"

    def f_Availability(self):
        return "N/A"

    def f_Status(self):
        return "N/A"


def cmd_volume_create(cli, argv):
    flags = [Flag("driver", "d", STR, default="local", help="Specify volume driver name"),
             Flag("label", kind=LIST, help="Set metadata for a volume", metavar="list"),
             Flag("name", kind=STR, hidden=True, help="Specify volume name"),
             Flag("opt", "o", LIST, help="Set driver specific options", metavar="map")]
    opts, args = cli.parse(argv, "pallet volume create [OPTIONS] [VOLUME]", "Create a volume",
                           flags, max_args=1)
    name = opts.name
    if args:
        if name and name != args[0]:
            raise StatusError("conflicting options: cannot specify a volume-name through both "
                              "--name and as a positional arg", 1)
        name = args[0]
    body = {"Name": name, "Driver": opts.driver,
            "DriverOpts": _kv(opts.opt), "Labels": _kv(opts.label)}
    res = cli.client.post("/volumes/create", None, body) or {}
    cli.outln(res.get("Name", ""))
    return 0


def _kv(values):
    out = {}
    for v in values or ():
        k, _, val = v.partition("=")
        out[k] = val
    return out


def cmd_volume_ls(cli, argv):
    flags = [Flag("filter", "f", LIST, help="Provide filter values (e.g. \"dangling=true\")",
                  metavar="filter"),
             Flag("format", kind=STR, help="Format output using a custom template"),
             Flag("quiet", "q", BOOL, help="Only display volume names")]
    opts, _ = cli.parse(argv, "pallet volume ls [OPTIONS]", "List volumes", flags, max_args=0,
                        aliases="pallet volume ls, pallet volume list")
    filters = cli.flag_value(parse_filters, opts.filter)
    res = cli.client.get("/volumes", {"filters": filters}) or {}
    for w in res.get("Warnings") or []:
        cli.err(w)
    vols = sorted(res.get("Volumes") or [], key=lambda v: v.get("Name", ""))
    fmt = list_format(opts, "table {{.Driver}}\t{{.Name}}", "{{.Name}}")
    cli.out(render_rows(fmt, [VolumeRow(v) for v in vols], HeaderContext(VolumeRow)))
    return 0


def _vpath(name):
    return "/volumes/" + quote_path(name)


def cmd_volume_inspect(cli, argv):
    flags = [Flag("format", "f", STR, help="Format output using a custom template")]
    opts, args = cli.parse(argv, "pallet volume inspect [OPTIONS] VOLUME [VOLUME...]",
                           "Display detailed information on one or more volumes", flags,
                           min_args=1)
    return inspect_many(cli, args, _vpath, opts.format)


def cmd_volume_rm(cli, argv):
    flags = [Flag("force", "f", BOOL, help="Force the removal of one or more volumes")]
    opts, args = cli.parse(argv, "pallet volume rm [OPTIONS] VOLUME [VOLUME...]",
                           "Remove one or more volumes. You cannot remove a volume that is in "
                           "use by a container.", flags, min_args=1,
                           aliases="pallet volume rm, pallet volume remove")
    params = {"force": True} if opts.force else None
    return each(cli, args, lambda n: cli.client.request("DELETE", _vpath(n), params).close())


def cmd_volume_prune(cli, argv):
    flags = [Flag("all", "a", BOOL, help="Remove all unused volumes, not just anonymous ones"),
             Flag("filter", kind=LIST, help='Provide filter values (e.g. "label=<label>")',
                  metavar="filter"),
             Flag("force", "f", BOOL, help="Do not prompt for confirmation")]
    opts, _ = cli.parse(argv, "pallet volume prune [OPTIONS]", "Remove unused local volumes",
                        flags, max_args=0)
    import json
    filters = json.loads(cli.flag_value(parse_filters, opts.filter) or "{}")
    if opts.all:
        if not api_at_least(cli.client, "1.42"):
            raise StatusError('"--all" requires API version 1.42, but the Docker daemon API '
                              'version is %s' % cli.client.version, 1)
        filters["all"] = {"true": True}
    warning = ("WARNING! This will remove all local volumes not used by at least one container."
               if opts.all or not api_at_least(cli.client, "1.42") else
               "WARNING! This will remove anonymous local volumes not used by at least one "
               "container.")
    if not opts.force and not confirm(warning):
        return 0
    res = cli.client.post("/volumes/prune",
                          {"filters": json.dumps(filters) if filters else None}) or {}
    report_deleted(cli, "Volumes", res.get("VolumesDeleted") or [],
                   res.get("SpaceReclaimed") or 0)
    return 0
