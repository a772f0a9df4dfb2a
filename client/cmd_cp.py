"""``pallet cp`` (the archive API: HEAD/GET/PUT /containers/{id}/archive) and
``pallet export``.

cp follows docker's rules: a directory source ending in ``/.`` copies its
contents; a destination that exists as a directory receives the source under
its own name; one that does not exist is the new name of the source; a file
is never replaced by a directory.  The archive from the container is
extracted with tarfile's ``tar`` filter (no absolute paths, no ``..``, no
links out of the destination: the container's files are not trusted).
"""

import base64
import json
import os
import sys

if sys.version_info >= (3, 11, 4):
    import tarfile
else:  # the extraction filters (PEP 706) came with 3.11.4; Debian 12's python3 is 3.11.2
    from backports import tarfile

from pallet.client.docker import StatusError
from pallet.client.docker_api import DaemonError, quote_path
from pallet.client.docker_flags import BOOL, STR, Flag

USAGE = ("pallet cp [OPTIONS] CONTAINER:SRC_PATH DEST_PATH|-\n"
         "\tpallet cp [OPTIONS] SRC_PATH|- CONTAINER:DEST_PATH")


def _split(arg):
    """(container, path) of 'name:path'; container None for a local path."""
    if arg.startswith((".", "/")) or ":" not in arg:
        return None, arg
    name, _, path = arg.partition(":")
    return name, path


def _archive_path(name):
    return "/containers/%s/archive" % quote_path(name)


def _stat(cli, name, path):
    """The container path's stat (name, size, mode, mtime, linkTarget) or DaemonError."""
    try:
        resp = cli.client.request("HEAD", _archive_path(name), {"path": path})
    except DaemonError as e:
        if e.status == 404 and e.message in ("unknown error", ""):
            # a HEAD answer has no body: say what docker says
            raise DaemonError(404, "Could not find the file %s in container %s"
                              % (path, name)) from None
        raise
    try:
        raw = resp.headers.get("X-Docker-Container-Path-Stat", "")
    finally:
        resp.close()
    if not raw:
        return {}
    return json.loads(base64.b64decode(raw + "=" * (-len(raw) % 4)))


_MODE_DIR = 1 << 31  # Go's os.ModeDir


def _is_dir(stat):
    return bool(stat.get("mode", 0) & _MODE_DIR)


def _has_trailing_sep(p):
    return p.endswith("/")


def _ends_with_dot(p):
    return p == "." or p.endswith("/.")


def cmd_cp(cli, argv):
    flags = [Flag("archive", "a", BOOL, help="Archive mode (copy all uid/gid information)"),
             Flag("follow-link", "L", BOOL, help="Always follow symbol link in SRC_PATH"),
             Flag("quiet", "q", BOOL, help="Suppress progress output during copy. Progress "
                  "output is automatically suppressed if no terminal is attached")]
    opts, args = cli.parse(argv, USAGE, "Copy files/folders between a container and the local "
                           "filesystem", flags, min_args=2, max_args=2,
                           aliases="pallet container cp, pallet cp")
    src_c, src = _split(args[0])
    dst_c, dst = _split(args[1])
    if src_c and dst_c:
        raise StatusError("copying between containers is not supported", 1)
    if not src_c and not dst_c:
        raise StatusError("must specify at least one container source", 1)
    if (src_c is not None and not src_c) or (dst_c is not None and not dst_c):
        raise StatusError("must specify at least one container source", 1)
    if src_c:
        n = _copy_from(cli, src_c, src, dst, opts)
        where = dst
    else:
        n = _copy_to(cli, src, dst_c, dst, opts)
        where = "%s:%s" % (dst_c, dst)
    if not opts.quiet and os.isatty(2) and dst != "-":
        from pallet.units.size import human_size
        sys.stderr.write("Successfully copied %s to %s\n" % (human_size(n), where))
    return 0


# -- from the container ---------------------------------------------------------------
def _copy_from(cli, name, src, dst, opts):
    if not src:
        src = "/"
    if not os.path.isabs(src):
        src = "/" + src
    try:
        stat = _stat(cli, name, src)
    except DaemonError as e:
        raise StatusError(str(e), 1) from None
    if opts.follow_link and stat.get("linkTarget"):
        src = stat["linkTarget"]
        stat = _stat(cli, name, src)
    resp = cli.client.request("GET", _archive_path(name), {"path": src})
    try:
        if dst == "-":
            n = 0
            while True:
                chunk = resp.read1(65536)
                if not chunk:
                    return n
                _write_all(1, chunk)
                n += len(chunk)
        return _extract(resp, stat, src, dst, opts)
    finally:
        resp.close()


def _write_all(fd, data):
    while data:
        data = data[os.write(fd, data):]


def _extract(resp, stat, src, dst, opts):
    src_is_dir = _is_dir(stat)
    base = stat.get("name") or os.path.basename(src.rstrip("/")) or "/"
    if os.path.isdir(dst):
        if src_is_dir and _ends_with_dot(src):
            target_dir, rename = dst, ""  # the contents
        else:
            target_dir, rename = dst, None
    elif os.path.exists(dst):
        if src_is_dir:
            raise StatusError("cannot copy directory", 1)
        target_dir, rename = os.path.dirname(os.path.abspath(dst)), os.path.basename(dst)
    else:
        parent = os.path.dirname(os.path.abspath(dst.rstrip("/") or "/"))
        if _has_trailing_sep(dst) and not src_is_dir:
            raise StatusError("destination directory %s must exist" % dst, 1)
        if not os.path.isdir(parent):
            raise StatusError("%s: no such file or directory" % parent, 1)
        target_dir, rename = parent, os.path.basename(dst.rstrip("/"))
    uid, gid = os.getuid(), os.getgid()
    count = [0]

    def member_filter(member, path):
        member = tarfile.tar_filter(member, path)
        if member is None:
            return None
        parts = member.name.split("/", 1)
        if rename is not None:
            if parts[0] != base:
                return None
            if rename == "":
                if len(parts) == 1:
                    return None  # the directory itself: its contents only
                member = member.replace(name=parts[1], deep=False)
            else:
                member = member.replace(name=rename + ("/" + parts[1] if len(parts) > 1 else ""),
                                        deep=False)
        if not opts.archive:
            member = member.replace(uid=uid, gid=gid, uname=None, gname=None, deep=False)
        count[0] += member.size if member.isfile() else 0
        return member

    try:
        with tarfile.open(fileobj=resp.raw, mode="r|") as tf:
            tf.extractall(target_dir, filter=member_filter, numeric_owner=True)
    except (tarfile.TarError, OSError) as e:
        raise StatusError("copy from container: %s" % e, 1) from None
    return count[0]


# -- into the container ---------------------------------------------------------------
def _copy_to(cli, src, name, dst, opts):
    if not dst:
        dst = "/"
    if not os.path.isabs(dst):
        dst = "/" + dst
    if src == "-":
        return _put(cli, name, dst, sys.stdin.buffer, opts)
    if opts.follow_link:
        src = os.path.realpath(src)
    if not os.path.lexists(src):
        raise StatusError("lstat %s: no such file or directory" % os.path.abspath(src), 1)
    src_is_dir = os.path.isdir(src) and not os.path.islink(src)
    try:
        dstat = _stat(cli, name, dst)
        exists = True
    except DaemonError as e:
        if e.status != 404:
            raise StatusError(str(e), 1) from None
        dstat, exists = {}, False
    if exists and _is_dir(dstat):
        target, arcname = dst, (None if (src_is_dir and _ends_with_dot(src)) else
                                os.path.basename(os.path.normpath(src)))
    elif exists:
        if src_is_dir:
            raise StatusError("cannot copy directory", 1)
        target, arcname = os.path.dirname(dst) or "/", os.path.basename(dst)
    else:
        if _has_trailing_sep(dst):
            raise StatusError("no such directory", 1)
        parent = os.path.dirname(dst.rstrip("/")) or "/"
        try:
            pstat = _stat(cli, name, parent)
        except DaemonError as e:
            raise StatusError(str(e), 1) from None
        if not _is_dir(pstat):
            raise StatusError("no such directory", 1)
        target, arcname = parent, os.path.basename(dst.rstrip("/"))
    import tempfile
    size = 0
    with tempfile.TemporaryFile() as buf:
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
            if arcname is None:
                for entry in sorted(os.listdir(src)):
                    tf.add(os.path.join(src, entry), arcname=entry)
            else:
                tf.add(src, arcname=arcname)
            for m in tf.getmembers():
                size += m.size if m.isfile() else 0
        buf.seek(0)
        _put(cli, name, target, buf, opts)
    return size


def _put(cli, name, target, fileobj, opts):
    def chunks():
        while True:
            b = fileobj.read(65536)
            if not b:
                return
            yield b

    data = b"".join(chunks())
    params = {"path": target, "noOverwriteDirNonDir": True,
              "copyUIDGID": True if opts.archive else None}
    try:
        cli.client.request("PUT", _archive_path(name), params, data,
                           headers={"Content-Type": "application/x-tar"}).close()
    except DaemonError as e:
        raise StatusError(str(e), 1) from None
    return len(data)


# -- export ---------------------------------------------------------------------------
def cmd_export(cli, argv):
    flags = [Flag("output", "o", STR, help="Write to a file, instead of STDOUT")]
    opts, args = cli.parse(argv, "pallet export [OPTIONS] CONTAINER",
                           "Export a container's filesystem as a tar archive", flags,
                           min_args=1, max_args=1, aliases="pallet container export, pallet export")
    if not opts.output and os.isatty(1):
        raise StatusError("cowardly refusing to save to a terminal. Use the -o flag or "
                          "redirect", 1)
    resp = cli.client.request("GET", "/containers/%s/export" % quote_path(args[0]))
    try:
        if opts.output:
            tmp = opts.output + ".pallet-tmp"
            try:
                with open(tmp, "wb") as f:
                    while True:
                        chunk = resp.read1(65536)
                        if not chunk:
                            break
                        f.write(chunk)
                os.replace(tmp, opts.output)
            except OSError as e:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
                raise StatusError("failed to export container: %s" % e, 1) from None
        else:
            while True:
                chunk = resp.read1(65536)
                if not chunk:
                    break
                _write_all(1, chunk)
    finally:
        resp.close()
    return 0
