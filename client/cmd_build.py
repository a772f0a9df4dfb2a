"""``pallet build``, ``pallet commit`` and ``pallet builder prune``, as the
docker CLI's classic builder path does them.

The context is made here: the directory's files minus what .dockerignore
excludes (the Dockerfile and .dockerignore are always sent, the daemon drops
them when excluded), as a tar whose headers are the docker CLI's (numeric
owners, times in seconds, permission bits), so that palletd's
checksums, and its cache, are the ones a ``docker build`` of the same
directory gets.  ``-`` reads a tar or a lone Dockerfile from stdin; a URL is
built by the daemon (``remote``).  A Dockerfile outside the context (or
``-f -``) is added under a random name that .dockerignore then names.
"""

import io
import json
import os
import sys
import tarfile

from pallet.client.docker import StatusError
from pallet.client.docker_flags import BOOL, LIST, STR, Flag

_REMOTE = ("http://", "https://", "git://", "git@", "github.com/")


def _fail(message, code=1):
    raise StatusError(message, code)


# -- the context ---------------------------------------------------------------------------
def _header(ti, mode):
    """A tar header as the docker CLI writes it (permission bits only)."""
    ti.mode = mode & 0o7777
    return ti.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


class ContextWriter:
    """Writes a context tar to a file object, entry by entry."""

    def __init__(self, out):
        self.out = out
        self.inodes = {}
        self.size = 0

    def _write(self, data):
        self.out.write(data)
        self.size += len(data)

    def add_path(self, full, name):
        import stat
        st = os.lstat(full)
        fmt = stat.S_IFMT(st.st_mode)
        if fmt == stat.S_IFSOCK:
            return
        ti = tarfile.TarInfo(name + "/" if fmt == stat.S_IFDIR else name)
        ti.uid, ti.gid, ti.mtime = st.st_uid, st.st_gid, int(st.st_mtime)
        ti.uname = ti.gname = ""
        mode = st.st_mode & 0o177777
        if fmt == stat.S_IFDIR:
            ti.type = tarfile.DIRTYPE
        elif fmt == stat.S_IFLNK:
            ti.type, ti.linkname = tarfile.SYMTYPE, os.readlink(full)
        elif fmt == stat.S_IFREG:
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in self.inodes:
                ti.type, ti.linkname = tarfile.LNKTYPE, self.inodes[key]
            else:
                if st.st_nlink > 1:
                    self.inodes[key] = name
                ti.type, ti.size = tarfile.REGTYPE, st.st_size
        elif fmt in (stat.S_IFCHR, stat.S_IFBLK):
            ti.type = tarfile.CHRTYPE if fmt == stat.S_IFCHR else tarfile.BLKTYPE
            ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        elif fmt == stat.S_IFIFO:
            ti.type = tarfile.FIFOTYPE
        self._write(_header(ti, mode))
        if ti.type == tarfile.REGTYPE and ti.size:
            left = ti.size
            with open(full, "rb") as f:
                while left:
                    data = f.read(min(left, 1 << 20))
                    if not data:
                        _fail("error checking context: file %s changed while it was read"
                              % name)
                    self._write(data)
                    left -= len(data)
            pad = -ti.size % tarfile.BLOCKSIZE
            if pad:
                self._write(b"\0" * pad)

    def add_bytes(self, name, data, mode=0o100600):
        ti = tarfile.TarInfo(name)
        ti.size, ti.mtime = len(data), 0
        ti.uname = ti.gname = ""
        self._write(_header(ti, mode))
        self._write(data + b"\0" * (-len(data) % tarfile.BLOCKSIZE))

    def close(self):
        self._write(b"\0" * (2 * tarfile.BLOCKSIZE))


def _walk(root, matcher):
    """Relative paths to send, in order; excluded directories are skipped
    unless an exception (``!pattern``) may reach inside them."""
    out = []

    def visit(rel):
        full = os.path.join(root, rel) if rel else root
        try:
            names = sorted(os.listdir(full))
        except OSError as e:
            _fail("error checking context: '%s'." % (e.strerror or str(e)).lower())
        for name in names:
            path = os.path.join(rel, name) if rel else name
            excluded = matcher.matches(path) if matcher else False
            is_dir = os.path.isdir(os.path.join(root, path)) and \
                not os.path.islink(os.path.join(root, path))
            if not excluded:
                out.append(path)
            if is_dir and (not excluded or matcher.exclusions):
                visit(path)
    visit("")
    return out


def make_context(root, dockerfile, extra=None, out=None):
    """The context tar of directory ``root`` into ``out`` (a file); the
    name the Dockerfile has in it.  ``extra``: ``(name, bytes)`` of a
    Dockerfile from elsewhere (stdin, outside the context)."""
    from pallet.engine.build_ignore import PatternMatcher, read_patterns

    patterns = []
    ignore_path = os.path.join(root, ".dockerignore")
    if os.path.isfile(ignore_path):
        with open(ignore_path, "rb") as f:
            patterns = read_patterns(f.read())
    matcher = PatternMatcher(patterns)
    keep = [".dockerignore"] + ([dockerfile] if dockerfile and not extra else [])
    for name in keep:
        if matcher.matches(name):
            patterns.append("!" + name)
    matcher = PatternMatcher(patterns) if patterns else None
    w = ContextWriter(out)
    for rel in _walk(root, matcher):
        if extra and rel == ".dockerignore":
            continue
        w.add_path(os.path.join(root, rel), rel)
    if extra:
        name, data = extra
        w.add_bytes(name, data)
        text = b"\n".join(p.encode() for p in patterns + [".dockerignore", name]) + b"\n"
        w.add_bytes(".dockerignore", text)
    w.close()
    return w.size


def _random_name():
    return ".dockerfile." + os.urandom(10).hex()


def _is_archive(head):
    from pallet.distribution.compression import detect_compression
    if detect_compression(head) != "none":
        return True
    return len(head) >= 262 and head[257:262] == b"ustar"


# -- the command ----------------------------------------------------------------------------
BUILD_FLAGS = [
    Flag("add-host", kind=LIST, help="Add a custom host-to-IP mapping (\"host:ip\")",
         metavar="list"),
    Flag("build-arg", kind=LIST, help="Set build-time variables", metavar="list"),
    Flag("cache-from", kind=LIST, help="Images to consider as cache sources", metavar="strings"),
    Flag("cgroup-parent", kind=STR, help="Set the parent cgroup for the \"RUN\" instructions "
         "during build", metavar="string"),
    Flag("compress", kind=BOOL, help="Compress the build context using gzip"),
    Flag("cpu-period", kind=STR, help="Limit the CPU CFS (Completely Fair Scheduler) period",
         metavar="int"),
    Flag("cpu-quota", kind=STR, help="Limit the CPU CFS (Completely Fair Scheduler) quota",
         metavar="int"),
    Flag("cpu-shares", "c", STR, help="CPU shares (relative weight)", metavar="int"),
    Flag("cpuset-cpus", kind=STR, help="CPUs in which to allow execution (0-3, 0,1)",
         metavar="string"),
    Flag("cpuset-mems", kind=STR, help="MEMs in which to allow execution (0-3, 0,1)",
         metavar="string"),
    Flag("disable-content-trust", kind=BOOL, default=True, help="Skip image verification"),
    Flag("file", "f", STR, help="Name of the Dockerfile (Default is \"PATH/Dockerfile\")",
         metavar="string"),
    Flag("force-rm", kind=BOOL, help="Always remove intermediate containers"),
    Flag("iidfile", kind=STR, help="Write the image ID to the file", metavar="string"),
    Flag("isolation", kind=STR, help="Container isolation technology", metavar="string"),
    Flag("label", kind=LIST, help="Set metadata for an image", metavar="list"),
    Flag("memory", "m", STR, help="Memory limit", metavar="bytes"),
    Flag("memory-swap", kind=STR, help="Swap limit equal to memory plus swap: -1 to enable "
         "unlimited swap", metavar="bytes"),
    Flag("network", kind=STR, default="default", help="Set the networking mode for the RUN "
         "instructions during build", metavar="string"),
    Flag("no-cache", kind=BOOL, help="Do not use cache when building the image"),
    Flag("platform", kind=STR, help="Set platform if server is multi-platform capable",
         metavar="string"),
    Flag("pull", kind=BOOL, help="Always attempt to pull a newer version of the image"),
    Flag("quiet", "q", BOOL, help="Suppress the build output and print image ID on success"),
    Flag("rm", kind=BOOL, default=True, help="Remove intermediate containers after a "
         "successful build"),
    Flag("security-opt", kind=LIST, help="Security options", metavar="strings"),
    Flag("shm-size", kind=STR, help="Size of \"/dev/shm\"", metavar="bytes"),
    Flag("tag", "t", LIST, help="Name and optionally a tag in the \"name:tag\" format",
         metavar="list"),
    Flag("target", kind=STR, help="Set the target build stage to build.", metavar="string"),
    Flag("ulimit", kind=LIST, help="Ulimit options", metavar="ulimit"),
]


def _query(opts):
    from pallet.client import docker_ref
    from pallet.client.docker_runopts import ram_in_bytes

    q = [("version", "1")]
    for tag in opts.tag or ():
        try:
            docker_ref.validate(tag)
        except ValueError as e:
            _fail("invalid argument \"%s\" for \"-t, --tag\" flag: %s" % (tag, e), 125)
        q.append(("t", tag))
    args = {}
    for item in opts.build_arg or ():
        key, eq, value = item.partition("=")
        if eq:
            args[key] = value
        else:
            args[key] = os.environ.get(key)  # unset: sent as null, so the daemon can warn
    labels = {}
    for item in opts.label or ():
        key, _, value = item.partition("=")
        labels[key] = value
    for host in opts.add_host or ():
        q.append(("extrahosts", host))
    for name, value in (("buildargs", args), ("labels", labels)):
        if value:
            q.append((name, json.dumps(value)))
    if opts.cache_from:
        q.append(("cachefrom", json.dumps(list(opts.cache_from))))
    for flag, name in (("no_cache", "nocache"), ("pull", "pull"), ("quiet", "q"),
                       ("force_rm", "forcerm")):
        if getattr(opts, flag):
            q.append((name, "1"))
    q.append(("rm", "1" if opts.rm else "0"))
    for flag, name in (("target", "target"), ("cgroup_parent", "cgroupparent"),
                       ("cpuset_cpus", "cpusetcpus"), ("cpuset_mems", "cpusetmems"),
                       ("platform", "platform"), ("isolation", "isolation"),
                       ("cpu_shares", "cpushares"), ("cpu_period", "cpuperiod"),
                       ("cpu_quota", "cpuquota")):
        if getattr(opts, flag):
            q.append((name, getattr(opts, flag)))
    if opts.network and opts.network != "default":
        q.append(("networkmode", opts.network))
    for flag, name, shown in (("memory", "memory", "-m, --memory"),
                              ("shm_size", "shmsize", "--shm-size")):
        if getattr(opts, flag):
            q.append((name, str(ram_in_bytes(getattr(opts, flag), shown))))
    if opts.memory_swap:
        q.append(("memswap", "-1" if opts.memory_swap == "-1" else
                  str(ram_in_bytes(opts.memory_swap, "--memory-swap"))))
    if opts.ulimit:
        q.append(("ulimits", json.dumps([_ulimit(u) for u in opts.ulimit])))
    return q


def _ulimit(spec):
    name, _, values = spec.partition("=")
    soft, _, hard = values.partition(":")
    try:
        soft_v = int(soft)
        hard_v = int(hard) if hard else soft_v
    except ValueError:
        _fail("invalid argument \"%s\" for \"--ulimit\" flag: invalid ulimit argument: %s"
              % (spec, spec), 125)
    return {"Name": name, "Soft": soft_v, "Hard": hard_v}


def _registry_config(cli):
    """Every credential of config.json, as the docker CLI sends them with a build."""
    import base64

    from pallet.client.cmd_registry import _auth_file
    try:
        f = _auth_file(cli)
        doc = f._load() if hasattr(f, "_load") else {}
    except Exception:  # noqa: BLE001 — no credentials is fine for a build
        return {}
    auths = {}
    for server, entry in ((doc or {}).get("auths") or {}).items():
        if isinstance(entry, dict):
            auths[server] = {k: v for k, v in entry.items()
                             if k in ("auth", "username", "password", "identitytoken")}
    if not auths:
        return {}
    return {"X-Registry-Config": base64.urlsafe_b64encode(json.dumps(auths).encode()).decode()}


def _context(opts, spec):
    """``(body, query additions, size)`` for the context ``spec``."""
    import tempfile

    dockerfile = opts.file
    if spec == "-":
        if dockerfile == "-":
            _fail("invalid argument: can't use stdin for both build context and dockerfile")
        data = os.fdopen(os.dup(0), "rb").read()
        if _is_archive(data[:512]):
            return data, [("dockerfile", dockerfile)] if dockerfile else [], len(data)
        buf = io.BytesIO()
        w = ContextWriter(buf)
        w.add_bytes("Dockerfile", data)
        w.close()
        return buf.getvalue(), [], w.size
    if spec.startswith(_REMOTE):
        return b"", [("remote", spec)] + ([("dockerfile", dockerfile)] if dockerfile else []), 0
    root = os.path.abspath(spec)
    if not os.path.isdir(root):
        _fail('unable to prepare context: path "%s" not found' % spec)
    extra = None
    if dockerfile == "-":
        extra = (_random_name(), os.fdopen(os.dup(0), "rb").read())
        rel = extra[0]
    else:
        path = os.path.abspath(dockerfile) if dockerfile else os.path.join(root, "Dockerfile")
        if not dockerfile and not os.path.exists(path) and \
                os.path.exists(os.path.join(root, "dockerfile")):
            path = os.path.join(root, "dockerfile")
        if not os.path.isfile(path):
            _fail("unable to prepare context: unable to evaluate symlinks in Dockerfile path: "
                  "lstat %s: no such file or directory" % path)
        rel = os.path.relpath(path, root)
        if rel.startswith(".." + os.sep):
            with open(path, "rb") as f:
                extra = (_random_name(), f.read())
            rel = extra[0]
    spool = tempfile.TemporaryFile()
    size = make_context(root, rel, extra, spool)
    spool.seek(0)
    return spool, [("dockerfile", rel)], size


def _chunks(body):
    if isinstance(body, bytes):
        yield body
        return
    while True:
        data = body.read(1 << 20)
        if not data:
            return
        yield data


class _Messages:
    def __init__(self, resp, seen):
        self.resp = resp
        self.seen = seen

    def json_stream(self):
        for msg in self.resp.json_stream():
            if isinstance(msg, dict) and (msg.get("errorDetail") or msg.get("error")):
                self.seen["error"] = msg
                return
            yield msg


def cmd_build(cli, argv):
    opts, args = cli.parse(argv, "pallet build [OPTIONS] PATH | URL | -",
                           "Build an image from a Dockerfile", BUILD_FLAGS, min_args=1,
                           max_args=1,
                           aliases="pallet image build, pallet build, pallet builder build")
    if opts.security_opt:
        _fail("Error response from daemon: The daemon on this platform does not support "
              "setting security options on build")
    query = _query(opts)
    body, more, size = _context(opts, args[0])
    query += more
    headers = {"Content-Type": "application/x-tar"}
    headers.update(_registry_config(cli))
    if opts.compress and body:
        import gzip
        data = body if isinstance(body, bytes) else body.read()
        body = gzip.compress(data, 6)
    from pallet.units.size import human_size
    if size and not opts.quiet:
        sys.stdout.write("Sending build context to Docker daemon  %s\n" % human_size(size))
        sys.stdout.flush()
    image_id = {}
    seen = {}
    try:
        from pallet.client.docker_api import urlencode
        resp = cli.client.request("POST", "/build?" + urlencode(query), body=_chunks(body),
                                  headers=headers)
    finally:
        if hasattr(body, "close"):
            body.close()
    from pallet.client.cmd_registry import StreamError, display_json_messages
    held = io.StringIO()
    try:
        display_json_messages(_Messages(resp, seen), held if opts.quiet else sys.stdout,
                              aux=lambda a: image_id.update(a or {}))
    except StreamError as e:
        _fail(str(e))
    finally:
        resp.close()
    if "error" in seen:
        err = seen["error"]
        detail = err.get("errorDetail") or {}
        if opts.quiet:
            sys.stderr.write(held.getvalue())
        _fail(detail.get("message") or err.get("error") or "unknown error",
              detail.get("code") or 1)
    iid = image_id.get("ID", "")
    if opts.iidfile:
        try:
            with open(opts.iidfile, "w") as f:
                f.write(iid)
        except OSError as e:
            _fail("Failed to write image ID to file: %s" % (e.strerror or e))
    if opts.quiet:
        sys.stdout.write(iid + "\n")
    return 0


def cmd_commit(cli, argv):
    flags = [Flag("author", "a", STR, help="Author (e.g., \"John Hannibal Smith "
                  "<hannibal@a-team.com>\")", metavar="string"),
             Flag("change", "c", LIST, help="Apply Dockerfile instruction to the created image",
                  metavar="list"),
             Flag("message", "m", STR, help="Commit message", metavar="string"),
             Flag("pause", "p", BOOL, default=True, help="Pause container during commit")]
    opts, args = cli.parse(argv, "pallet commit [OPTIONS] CONTAINER [REPOSITORY[:TAG]]",
                           "Create a new image from a container's changes", flags, min_args=1,
                           max_args=2, aliases="pallet container commit, pallet commit")
    query = [("container", args[0]), ("comment", opts.message), ("author", opts.author),
             ("pause", "1" if opts.pause else "0")]
    if len(args) == 2:
        from pallet.client import docker_ref
        try:
            docker_ref.validate(args[1])
        except ValueError as e:
            _fail(str(e))
        name, tag, _ = docker_ref.split(args[1])
        query += [("repo", name), ("tag", tag or "")]
    for change in opts.change or ():
        query.append(("changes", change))
    from pallet.client.docker_api import urlencode
    out = cli.client.request("POST", "/commit?" + urlencode(query), body=b"null",
                             headers={"Content-Type": "application/json"}).json()
    cli.out(out.get("Id", "") + "\n")
    return 0


def cmd_builder_prune(cli, argv):
    flags = [Flag("all", "a", BOOL, help="Remove all unused build cache, not just dangling ones"),
             Flag("filter", kind=LIST, help="Provide filter values (e.g. \"until=24h\")",
                  metavar="filter"),
             Flag("force", "f", BOOL, help="Do not prompt for confirmation"),
             Flag("keep-storage", kind=STR, help="Amount of disk space to keep for cache",
                  metavar="bytes")]
    opts, _ = cli.parse(argv, "pallet builder prune", "Remove build cache", flags, max_args=0)
    from pallet.client.cmd_common import confirm, parse_filters, report_deleted
    from pallet.client.docker_api import urlencode
    if not opts.force and not confirm("WARNING! This will remove all dangling build cache."):
        return 0
    query = [("all", "1" if opts.all else "0")]
    if opts.keep_storage:
        from pallet.client.docker_runopts import ram_in_bytes
        query.append(("keep-storage", str(ram_in_bytes(opts.keep_storage, "--keep-storage"))))
    filters = cli.flag_value(parse_filters, opts.filter)
    if filters:
        query.append(("filters", filters))
    out = cli.client.request("POST", "/build/prune?" + urlencode(query)).json() or {}
    report_deleted(cli, "build cache objects", out.get("CachesDeleted") or [],
                   out.get("SpaceReclaimed", 0))
    return 0
