"""Image commands: images, history, load, save, import, rmi, tag, image prune
(pull and push are in :mod:`.cmd_registry`)."""

import os
import sys
import time

from pallet.client import docker_ref
from pallet.client.cmd_registry import StreamError, display_json_messages
from pallet.client.docker import StatusError
from pallet.client.docker_api import DaemonError, quote_path
from pallet.client.docker_flags import BOOL, LIST, STR, Flag
from pallet.client.docker_format import (HeaderContext, RowContext, go_time,
                                         render_rows, since, truncate_id)
from pallet.units.size import human_size


# -- images -----------------------------------------------------------------
class ImageRow(RowContext):
    FIELDS = {"ID": "IMAGE ID", "Repository": "REPOSITORY", "Tag": "TAG", "Digest": "DIGEST",
              "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "Size": "SIZE",
              "Containers": "CONTAINERS", "VirtualSize": "SIZE",
              "SharedSize": "SHARED SIZE", "UniqueSize": "UNIQUE SIZE"}
    GO_TYPE = "*formatter.imageContext"

    def __init__(self, image, repo, tag, digest, trunc, now):
        self.i, self.repo, self.tag, self.digest, self.trunc, self.now = (
            image, repo, tag, digest, trunc, now)

    def f_ID(self):
        iid = self.i.get("Id", "")
        return truncate_id(iid) if self.trunc else iid

    def f_Repository(self):
        return self.repo

    def f_Tag(self):
        return self.tag

    def f_Digest(self):
        return self.digest

    def f_CreatedSince(self):
        created = self.i.get("Created", 0)
        if not created:
            return "N/A"
        return since(created, self.now)

    def f_CreatedAt(self):
        return go_time(self.i.get("Created", 0))

    def f_Size(self):
        return human_size(self.i.get("Size", 0), 3)

    def f_Containers(self):
        n = self.i.get("Containers", -1)
        return "N/A" if n is None or n == -1 else str(n)

    def f_VirtualSize(self):
        return human_size(self.i.get("VirtualSize", self.i.get("Size", 0)))

    def f_SharedSize(self):
        n = self.i.get("SharedSize", -1)
        return "N/A" if n is None or n == -1 else human_size(n)

    def f_UniqueSize(self):
        shared = self.i.get("SharedSize", -1)
        virt = self.i.get("VirtualSize", self.i.get("Size", 0))
        if shared is None or shared == -1 or virt == -1:
            return "N/A"
        return human_size(virt - shared)


def image_rows(images, digests, trunc, now=None):
    """One row per repository:tag (and per digest with --digests), as docker lists them."""
    now = time.time() if now is None else now
    rows = []
    for image in images:
        repo_tags = {}
        for ref in image.get("RepoTags") or []:
            name, tag, digest = docker_ref.split(ref)
            if not tag or name == "<none>" or digest:
                continue
            repo_tags.setdefault(docker_ref.familiar_name(name), []).append(tag)
        repo_digests = {}
        for ref in image.get("RepoDigests") or []:
            name, _, digest = ref.partition("@")
            if not digest or name == "<none>":
                continue
            repo_digests.setdefault(docker_ref.familiar_name(name), []).append(digest)
        out = []
        for repo, tags in repo_tags.items():
            ds = repo_digests.pop(repo, [])
            if not digests:
                ds = []
            for tag in tags:
                if not ds:
                    out.append(ImageRow(image, repo, tag, "<none>", trunc, now))
                for d in ds:
                    out.append(ImageRow(image, repo, tag, d, trunc, now))
        for repo, ds in repo_digests.items():
            if digests:
                for d in ds:
                    out.append(ImageRow(image, repo, "<none>", d, trunc, now))
            else:
                out.append(ImageRow(image, repo, "<none>", "<none>", trunc, now))
        if not out:
            out.append(ImageRow(image, "<none>", "<none>", "<none>", trunc, now))
        rows.extend(out)
    return rows


def parse_filters(values):
    """``--filter k=v`` flags to the API's filters JSON: {"k": {"v": true}}."""
    import json
    filters = {}
    for f in values:
        k, sep, v = f.partition("=")
        if not sep:
            raise ValueError('invalid argument "%s" for "-f, --filter" flag: bad format of '
                             'filter (expected name=value)' % f)
        filters.setdefault(k.strip(), {})[v] = True
    return json.dumps(filters) if filters else None


def cmd_images(cli, argv):
    flags = [Flag("all", "a", BOOL, help="Show all images (default hides intermediate images)"),
             Flag("digests", kind=BOOL, help="Show digests"),
             Flag("filter", "f", LIST, help="Filter output based on conditions provided",
                  metavar="filter"),
             Flag("format", kind=STR, help="Format output using a custom template"),
             Flag("no-trunc", kind=BOOL, help="Don't truncate output"),
             Flag("quiet", "q", BOOL, help="Only show image IDs")]
    opts, args = cli.parse(argv, "pallet images [OPTIONS] [REPOSITORY[:TAG]]", "List images",
                           flags, max_args=1, aliases="pallet image ls, pallet image list, pallet images")
    filter_values = list(opts.filter)
    if args:
        filter_values.append("reference=" + args[0])
    params = {"all": opts.all or None, "filters": cli.flag_value(parse_filters, filter_values)}
    if opts.digests:
        params["digests"] = True
    images = cli.client.get("/images/json", params) or []
    if opts.quiet:
        fmt = "{{.ID}}"
    elif opts.format == "json":
        fmt = "{{json .}}"
    elif opts.format:
        fmt = opts.format
    elif opts.digests:
        fmt = "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
    else:
        fmt = "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
    show_digests = opts.digests or ".Digest" in fmt
    rows = image_rows(images, show_digests, not opts.no_trunc)
    cli.out(render_rows(fmt, rows, HeaderContext(ImageRow),
                        errors=("template parsing error", "template parsing error")))
    return 0


# -- load / save --------------------------------------------------------------
def _file_chunks(fileobj, size=65536):
    while True:
        data = fileobj.read(size)
        if not data:
            return
        yield data


def cmd_load(cli, argv):
    flags = [Flag("input", "i", STR, help="Read from tar archive file, instead of STDIN",
                  metavar="string"),
             Flag("quiet", "q", BOOL, help="Suppress the load output")]
    opts, _ = cli.parse(argv, "pallet load [OPTIONS]", "Load an image from a tar archive or STDIN",
                        flags, max_args=0, aliases="pallet image load, pallet load")
    headers = {"Content-Type": "application/x-tar"}
    if opts.input:
        try:
            f = open(opts.input, "rb")
        except OSError as e:
            raise StatusError("open %s: %s" % (opts.input, (e.strerror or str(e)).lower()), 1) from None
        body = f  # sent chunked by the API client
    else:
        if sys.stdin is None or os.isatty(0):
            raise StatusError("requested load from stdin, but stdin is empty", 1)
        f = os.fdopen(os.dup(0), "rb")
        body = _file_chunks(f)
    quiet = opts.quiet or not sys.stdout.isatty()
    try:
        resp = cli.client.request("POST", "/images/load", {"quiet": quiet}, body=body,
                                  headers=headers)
    finally:
        f.close()
    try:
        if "json" in (resp.headers.get("Content-Type") or ""):
            try:
                display_json_messages(resp, sys.stdout)
            except StreamError as e:
                raise StatusError(str(e), 1) from None
        else:
            data = resp.read()
            sys.stdout.write(data.decode("utf-8", "replace"))
    finally:
        resp.close()
    return 0


def cmd_save(cli, argv):
    flags = [Flag("output", "o", STR, help="Write to a file, instead of STDOUT")]
    opts, args = cli.parse(argv, "pallet save [OPTIONS] IMAGE [IMAGE...]",
                           "Save one or more images to a tar archive (streamed to STDOUT by default)",
                           flags, min_args=1)
    if not opts.output and os.isatty(1):
        raise StatusError("cowardly refusing to save to a terminal. Use the -o flag or redirect", 1)
    from pallet.client.docker_api import urlencode
    path = "/images/get?" + urlencode([("names", n) for n in args])
    client = cli.client
    resp = client._receive(client._send("GET", "/v%s%s" % (client.version, path)))
    tmp = None
    try:
        if opts.output:
            tmp = opts.output + ".pallet-tmp"
            out = open(tmp, "wb")
        else:
            sys.stdout.flush()
            out = os.fdopen(os.dup(1), "wb")
        with out:
            while True:
                chunk = resp.read1(1 << 20)
                if not chunk:
                    break
                out.write(chunk)
        if tmp:
            os.replace(tmp, opts.output)
            tmp = None
    finally:
        resp.close()
        if tmp and os.path.exists(tmp):
            os.unlink(tmp)
    return 0


# -- rmi / tag ------------------------------------------------------------------
def cmd_rmi(cli, argv):
    flags = [Flag("force", "f", BOOL, help="Force removal of the image"),
             Flag("no-prune", kind=BOOL, help="Do not delete untagged parents")]
    opts, args = cli.parse(argv, "pallet rmi [OPTIONS] IMAGE [IMAGE...]",
                           "Remove one or more images", flags, min_args=1,
                           aliases="pallet image rm, pallet image remove, pallet rmi")
    errors = []
    for name in args:
        try:
            items = cli.client.delete("/images/" + quote_path(name),
                                      {"force": opts.force or None,
                                       "noprune": opts.no_prune or None}) or []
        except DaemonError as e:
            errors.append(str(e))
            continue
        for item in items:
            if item.get("Untagged"):
                cli.outln("Untagged: %s" % item["Untagged"])
            if item.get("Deleted"):
                cli.outln("Deleted: %s" % item["Deleted"])
    if errors:
        raise StatusError("\n".join(errors), 1)
    return 0


def cmd_tag(cli, argv):
    opts, args = cli.parse(argv, "pallet tag SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]",
                           "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE", [],
                           min_args=2, max_args=2, aliases="pallet image tag, pallet tag")
    source, target = args
    try:
        docker_ref.validate(target)
    except ValueError as e:
        raise StatusError('Error parsing reference: "%s" is not a valid repository/tag: %s'
                          % (target, e), 1) from None
    name, tag, digest = docker_ref.split(target)
    if digest:
        raise StatusError("refusing to create a tag with a digest reference", 1)
    cli.client.request("POST", "/images/%s/tag" % quote_path(source),
                       {"repo": name, "tag": tag or "latest"}).close()
    return 0


# -- history --------------------------------------------------------------------
class HistoryRow(RowContext):
    FIELDS = {"ID": "IMAGE", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT",
              "CreatedBy": "CREATED BY", "Size": "SIZE", "Comment": "COMMENT"}
    GO_TYPE = "*formatter.historyContext"

    def __init__(self, entry, trunc, human, now):
        self.h, self.trunc, self.human, self.now = entry, trunc, human, now

    def f_ID(self):
        hid = self.h.get("Id", "")
        return truncate_id(hid) if self.trunc and hid.startswith("sha256:") else hid

    def f_CreatedSince(self):
        if not self.human:
            return self.f_CreatedAt()
        created = self.h.get("Created", 0) or 0
        if created <= _EPOCH_2000:
            return "N/A"  # docker shows no age for dates before 2000 (reproducible builds)
        return since(created, self.now)

    def f_CreatedAt(self):
        created = self.h.get("Created", 0) or 0
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(created)) + _rfc3339_offset(
            created)

    def f_CreatedBy(self):
        from pallet.client.docker_format import ellipsis
        text = (self.h.get("CreatedBy") or "").replace("\t", " ")
        return ellipsis(text, 45) if self.trunc else text

    def f_Size(self):
        size = self.h.get("Size", 0)
        return human_size(size, 3) if self.human else str(size)

    def f_Comment(self):
        return self.h.get("Comment") or ""


_EPOCH_2000 = 946684800


def _rfc3339_offset(ts):
    off = time.localtime(ts).tm_gmtoff or 0
    if off == 0:
        return "Z"
    sign = "+" if off > 0 else "-"
    off = abs(off)
    return "%s%02d:%02d" % (sign, off // 3600, off % 3600 // 60)


def cmd_history(cli, argv):
    flags = [Flag("format", kind=STR, help="Format output using a custom template"),
             Flag("human", "H", BOOL, default=True,
                  help="Print sizes and dates in human readable format"),
             Flag("no-trunc", kind=BOOL, help="Don't truncate output"),
             Flag("platform", kind=STR, help="Show history for the given platform"),
             Flag("quiet", "q", BOOL, help="Only show image IDs")]
    opts, args = cli.parse(argv, "pallet history [OPTIONS] IMAGE", "Show the history of an image",
                           flags, min_args=1, max_args=1,
                           aliases="pallet image history, pallet history")
    entries = cli.client.get("/images/%s/history" % quote_path(args[0])) or []
    if opts.quiet:
        fmt = "{{.ID}}"
    elif opts.format == "json":
        fmt = "{{json .}}"
    elif opts.format:
        fmt = opts.format
    elif not opts.human:
        fmt = "table {{.ID}}\t{{.CreatedAt}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}"
    else:
        fmt = "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}"
    now = time.time()
    rows = [HistoryRow(e, not opts.no_trunc, opts.human, now) for e in entries]
    cli.out(render_rows(fmt, rows, HeaderContext(HistoryRow),
                        errors=("template parsing error", "template parsing error")))
    return 0


# -- import -------------------------------------------------------------------------
def cmd_import(cli, argv):
    flags = [Flag("change", "c", LIST, help="Apply Dockerfile instruction to the created image",
                  metavar="list"),
             Flag("message", "m", STR, help="Set commit message for imported image"),
             Flag("platform", kind=STR, help="Set platform if server is multi-platform capable")]
    opts, args = cli.parse(argv, "pallet import [OPTIONS] file|URL|- [REPOSITORY[:TAG]]",
                           "Import the contents from a tarball to create a filesystem image",
                           flags, min_args=1, max_args=2,
                           aliases="pallet image import, pallet import")
    source = args[0]
    repo = args[1] if len(args) > 1 else ""
    if repo:
        try:
            docker_ref.validate(repo)
        except ValueError as e:
            raise StatusError(str(e), 1) from None
    params = {"fromSrc": "-", "repo": repo or None, "message": opts.message or None,
              "platform": opts.platform or None}
    items = [(k, v) for k, v in params.items() if v is not None]
    items += [("changes", c) for c in opts.change]
    headers = {"Content-Type": "application/x-tar"}
    f = None
    if source == "-":
        f = os.fdopen(os.dup(0), "rb")
        body = _file_chunks(f)
    elif "://" in source:
        items = [(k, v) if k != "fromSrc" else (k, source) for k, v in items]
        body = None
    else:
        try:
            f = open(source, "rb")
        except OSError as e:
            raise StatusError("open %s: %s" % (source, (e.strerror or str(e)).lower()), 1) \
                from None
        body = f  # sent chunked by the API client
    from pallet.client.docker_api import urlencode
    client = cli.client
    url = "/v%s/images/create?%s" % (client.version, urlencode(items))
    try:
        resp = client._receive(client._send("POST", url, body, headers))
    finally:
        if f is not None:
            f.close()
    try:
        display_json_messages(resp, sys.stdout)
    except StreamError as e:
        raise StatusError(str(e), 1) from None
    finally:
        resp.close()
    return 0


# -- image prune -----------------------------------------------------------------------
def confirm(cli, warning):
    """docker's prune prompt on stdin; False when not answered yes."""
    sys.stdout.write(warning + "\nAre you sure you want to continue? [y/N] ")
    sys.stdout.flush()
    answer = sys.stdin.readline() if sys.stdin is not None else ""
    return answer.strip().lower() in ("y", "yes")


def cmd_image_prune(cli, argv):
    flags = [Flag("all", "a", BOOL, help="Remove all unused images, not just dangling ones"),
             Flag("filter", kind=LIST, help='Provide filter values (e.g. "until=<timestamp>")',
                  metavar="filter"),
             Flag("force", "f", BOOL, help="Do not prompt for confirmation")]
    opts, _ = cli.parse(argv, "pallet image prune [OPTIONS]", "Remove unused images", flags,
                        max_args=0)
    import json
    filters = json.loads(cli.flag_value(parse_filters, list(opts.filter)) or "{}")
    filters["dangling"] = {"false" if opts.all else "true": True}
    if not opts.force:
        warning = ("WARNING! This will remove all images without at least one container "
                   "associated to them." if opts.all else
                   "WARNING! This will remove all dangling images.")
        if not confirm(cli, warning):
            return 0
    report = cli.client.post("/images/prune", {"filters": json.dumps(filters)}) or {}
    deleted = report.get("ImagesDeleted") or []
    if deleted:
        lines = ["Deleted Images:"]
        for item in deleted:
            if item.get("Untagged"):
                lines.append("untagged: " + item["Untagged"])
            if item.get("Deleted"):
                lines.append("deleted: " + item["Deleted"])
        cli.outln("\n".join(lines) + "\n")
    cli.outln("Total reclaimed space: " + human_size(report.get("SpaceReclaimed") or 0))
    return 0
