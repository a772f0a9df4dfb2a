"""Image commands: images, load, pull, rmi, save, tag."""

import os
import sys
import time

from pallet.client import docker_ref
from pallet.client.docker import StatusError
from pallet.client.docker_api import DaemonError, quote_path
from pallet.client.docker_flags import BOOL, LIST, STR, Flag
from pallet.client.docker_format import (HeaderContext, RowContext, go_time, human_size,
                                         render_rows, since, truncate_id)


# -- JSON message streams (pull, load) ---------------------------------------
class StreamError(Exception):
    """An error reported inside a JSON message stream (``errorDetail``)."""


def display_json_messages(resp, out):
    """Write a JSON progress stream the way docker does without a terminal.

    Progress-bar updates are left out; statuses, ``stream`` text and
    ``id: status`` lines are written; an ``error`` ends the stream.
    """
    for msg in resp.json_stream():
        if not isinstance(msg, dict):
            continue
        if msg.get("errorDetail") or msg.get("error"):
            detail = msg.get("errorDetail") or {}
            raise StreamError(detail.get("message") or msg.get("error") or "unknown error")
        if msg.get("aux") is not None and not msg.get("stream") and not msg.get("status"):
            continue
        if msg.get("progressDetail") and msg.get("progress"):
            continue
        line = ""
        if msg.get("id"):
            line += "%s: " % msg["id"]
        if msg.get("stream"):
            out.write(line + msg["stream"])
        elif msg.get("status") is not None:
            out.write(line + msg["status"] + "\n")
        out.flush()


def pull_image(cli, ref, out, quiet=False, platform=None):
    """POST /images/create for *ref*; raise DaemonError or StreamError on failure."""
    name, tag, digest = docker_ref.split(ref)
    params = {"fromImage": name, "tag": digest or tag or "latest"}
    if platform:
        params["platform"] = platform
    resp = cli.client.request("POST", "/images/create", params)
    try:
        if quiet:
            for msg in resp.json_stream():
                if isinstance(msg, dict) and (msg.get("errorDetail") or msg.get("error")):
                    detail = msg.get("errorDetail") or {}
                    raise StreamError(detail.get("message") or msg.get("error"))
        else:
            display_json_messages(resp, out)
    finally:
        resp.close()


def cmd_pull(cli, argv):
    flags = [Flag("all-tags", "a", BOOL, help="Download all tagged images in the repository"),
             Flag("platform", kind=STR, help="Set platform if server is multi-platform capable"),
             Flag("quiet", "q", BOOL, help="Suppress verbose output")]
    opts, args = cli.parse(argv, "pallet pull [OPTIONS] NAME[:TAG|@DIGEST]",
                           "Download an image from a registry", flags, min_args=1, max_args=1)
    ref = args[0]
    try:
        docker_ref.validate(ref)
    except ValueError as e:
        raise StatusError(str(e), 1) from None
    if opts.all_tags:
        name = docker_ref.split(ref)[0]
        params = {"fromImage": name}
        resp = cli.client.request("POST", "/images/create", params)
        try:
            display_json_messages(resp, sys.stdout)
        except StreamError as e:
            raise StatusError(str(e), 1) from None
        finally:
            resp.close()
        full = docker_ref.normalize_name(name)
    else:
        ref = docker_ref.with_default_tag(ref)
        try:
            pull_image(cli, ref, sys.stdout, quiet=opts.quiet, platform=opts.platform or None)
        except StreamError as e:
            raise StatusError(str(e), 1) from None
        name, tag, digest = docker_ref.split(ref)
        full = docker_ref.normalize_name(name) + ("@" + digest if digest else ":" + tag)
    cli.outln(full)
    return 0


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
        return human_size(self.i.get("Size", 0))

    def f_Containers(self):
        n = self.i.get("Containers", -1)
        return "N/A" if n is None or n == -1 else str(n)

    def f_VirtualSize(self):
        return human_size(self.i.get("VirtualSize", self.i.get("Size", 0)), 4)

    def f_SharedSize(self):
        n = self.i.get("SharedSize", -1)
        return "N/A" if n is None or n == -1 else human_size(n, 4)

    def f_UniqueSize(self):
        shared = self.i.get("SharedSize", -1)
        virt = self.i.get("VirtualSize", self.i.get("Size", 0))
        if shared is None or shared == -1 or virt == -1:
            return "N/A"
        return human_size(virt - shared, 4)


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
        headers["Content-Length"] = str(os.fstat(f.fileno()).st_size)
        body = f
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
    from urllib.parse import urlencode
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
