"""Registry commands: pull, push, login, logout; and the display of docker's
JSON progress streams (pull, push, load, import).

Credentials live in docker's ``config.json`` (``auths`` with a base64
``auth``, found as :mod:`.docker_config` finds it); pull and push send the
registry's entry as ``X-Registry-Auth``, as docker does.
"""

import os
import sys

from pallet.client import docker_ref
from pallet.client.docker import StatusError
from pallet.client.docker_flags import BOOL, STR, Flag
from pallet.units.size import human_size


class StreamError(Exception):
    """An error reported inside a JSON message stream (``errorDetail``)."""


# -- JSON message streams -----------------------------------------------------------
def progress_text(detail, width):
    """moby's ``JSONProgress.String``: a bar (on wide terminals) and the counts."""
    current = int(detail.get("current") or 0)
    total = int(detail.get("total") or 0)
    if current <= 0 and total <= 0:
        return ""
    if total <= 0:
        return "%8s" % human_size(current)
    pct = min(int(current / total * 100) // 2, 50)
    bar = ""
    if width > 110:
        bar = "[%s>%s] " % ("=" * pct, " " * (50 - pct))
    numbers = "%8s/%s" % (human_size(current), human_size(total))
    if current > total:
        numbers = "%8s" % human_size(current)
    return bar + numbers


def _error_of(msg):
    detail = msg.get("errorDetail") or {}
    return detail.get("message") or msg.get("error") or "unknown error"


def display_json_messages(resp, out, terminal=None, aux=None):
    """Write a JSON progress stream as docker's CLI does.

    Without a terminal, byte counts are left out and every status is a line
    (``id: status``).  On a terminal each id keeps its line, rewritten in
    place (ANSI cursor up/down and erase line), with a progress bar.  An
    ``error`` ends the stream (StreamError); ``aux`` messages go to ``aux``.
    """
    if terminal is None:
        try:
            terminal = out.isatty()
        except (AttributeError, ValueError):
            terminal = False
    width = 200
    if terminal:
        try:
            width = os.get_terminal_size(out.fileno()).columns
        except (OSError, AttributeError, ValueError):
            width = 80
    ids = {}
    for msg in resp.json_stream():
        if not isinstance(msg, dict):
            continue
        if msg.get("errorDetail") or msg.get("error"):
            raise StreamError(_error_of(msg))
        if msg.get("aux") is not None:
            if aux is not None:
                aux(msg["aux"])
            continue
        detail = msg.get("progressDetail")
        has_progress = isinstance(detail, dict)
        mid = msg.get("id") or ""
        diff = 0
        if mid and (has_progress or msg.get("progress")):
            line = ids.get(mid)
            if line is None:
                line = len(ids)
                ids[mid] = line
                if terminal:
                    out.write("\n")
            diff = len(ids) - line
            if terminal:
                out.write("\x1b[%dA" % diff)
        else:
            ids = {}
        _display_one(msg, out, terminal, width, has_progress)
        if mid and terminal and diff:
            out.write("\x1b[%dB" % diff)
        out.flush()


def _display_one(msg, out, terminal, width, has_progress):
    detail = msg.get("progressDetail") if has_progress else None
    end = ""
    if terminal and not msg.get("stream") and has_progress:
        out.write("\x1b[2K\r")
        end = "\r"
    elif has_progress and progress_text(detail, width):
        return  # byte counts are for terminals only
    text = ("%s: " % msg["id"]) if msg.get("id") else ""
    status = msg.get("status") or ""
    if has_progress and terminal:
        text += "%s %s%s" % (status, progress_text(detail, width), end)
    elif msg.get("progress"):
        text += "%s %s%s" % (status, msg["progress"], end)
    elif msg.get("stream"):
        text += msg["stream"] + end
    else:
        text += status + end + "\n"
    out.write(text)


# -- credentials --------------------------------------------------------------------
def config_path(cli=None):
    """The client's config.json (``--config DIR``, ``$PALLET_CONFIG``, ``$DOCKER_CONFIG``,
    ``~/.docker``), as docker_config finds it."""
    from pallet.client import docker_config
    return docker_config.config_path(getattr(cli, "config", None))


def _auth_file(cli=None):
    from pallet.distribution.auth import AuthConfigFile
    return AuthConfigFile(config_path(cli))


def registry_auth_header(ref, cli=None):
    """``X-Registry-Auth`` for the registry of *ref* (from config.json)."""
    from pallet.core.errors import PalletError
    from pallet.distribution.reference import Reference
    from pallet.distribution.auth import encode_registry_auth, config_key
    try:
        host = Reference.parse(ref, default_tag=False).domain
        creds = _auth_file(cli).get(host)
    except PalletError:
        return {}
    if not creds:
        return {}
    return {"X-Registry-Auth": encode_registry_auth(creds, config_key(host))}


# -- pull ---------------------------------------------------------------------------
def pull_image(cli, ref, out, quiet=False, platform=None, all_tags=False):
    """POST /images/create for *ref*; raise DaemonError or StreamError on failure."""
    name, tag, digest = docker_ref.split(ref)
    params = {"fromImage": name, "tag": None if all_tags else (digest or tag or "latest")}
    if platform:
        params["platform"] = platform
    resp = cli.client.request("POST", "/images/create", params,
                              headers=registry_auth_header(name, cli))
    try:
        if quiet:
            for msg in resp.json_stream():
                if isinstance(msg, dict) and (msg.get("errorDetail") or msg.get("error")):
                    raise StreamError(_error_of(msg))
        else:
            display_json_messages(resp, out)
    finally:
        resp.close()


def _checked_ref(cli, ref: str, opts) -> tuple[str, str, str]:
    """The NAME[:TAG|@DIGEST] of pull and push checked as docker does: (name,
    tag, digest), the tag "latest" when none is given (said, unless -q) and
    not all tags are wanted."""
    try:
        docker_ref.validate(ref)
    except ValueError as e:
        raise StatusError(str(e), 1) from None
    name, tag, digest = docker_ref.split(ref)
    if opts.all_tags and (tag or digest):
        raise StatusError("tag can't be used with --all-tags/-a", 1)
    if not opts.all_tags and not tag and not digest:
        if not opts.quiet:
            cli.outln("Using default tag: latest")
        tag = "latest"
    return name, tag, digest


def cmd_pull(cli, argv):
    flags = [Flag("all-tags", "a", BOOL, help="Download all tagged images in the repository"),
             Flag("disable-content-trust", kind=BOOL, default=True,
                  help="Skip image verification"),
             Flag("platform", kind=STR, help="Set platform if server is multi-platform capable"),
             Flag("quiet", "q", BOOL, help="Suppress verbose output")]
    opts, args = cli.parse(argv, "pallet pull [OPTIONS] NAME[:TAG|@DIGEST]",
                           "Download an image from a registry", flags, min_args=1, max_args=1,
                           aliases="pallet image pull, pallet pull")
    ref = args[0]
    _checked_ref(cli, ref, opts)
    if not opts.all_tags:
        ref = docker_ref.with_default_tag(ref)
    try:
        pull_image(cli, ref, sys.stdout, quiet=opts.quiet, platform=opts.platform or None,
                   all_tags=opts.all_tags)
    except StreamError as e:
        raise StatusError(str(e), 1) from None
    name, tag, digest = docker_ref.split(ref)
    full = docker_ref.normalize_name(name)
    if not opts.all_tags:
        full += "@" + digest if digest else ":" + tag
    cli.outln(full)
    return 0


# -- push ---------------------------------------------------------------------------
def cmd_push(cli, argv):
    flags = [Flag("all-tags", "a", BOOL, help="Push all tags of an image to the repository"),
             Flag("disable-content-trust", kind=BOOL, default=True,
                  help="Skip image signing"),
             Flag("platform", kind=STR, help="Push a platform-specific manifest"),
             Flag("quiet", "q", BOOL, help="Suppress verbose output")]
    opts, args = cli.parse(argv, "pallet push [OPTIONS] NAME[:TAG]",
                           "Upload an image to a registry", flags, min_args=1, max_args=1,
                           aliases="pallet image push, pallet push")
    from pallet.client.docker_api import quote_path
    ref = args[0]
    name, tag, digest = _checked_ref(cli, ref, opts)
    resp = cli.client.request("POST", "/images/%s/push" % quote_path(name),
                              {"tag": digest or tag or None},
                              headers=registry_auth_header(name, cli))
    try:
        if opts.quiet:
            for msg in resp.json_stream():
                if isinstance(msg, dict) and (msg.get("errorDetail") or msg.get("error")):
                    raise StreamError(_error_of(msg))
        else:
            display_json_messages(resp, sys.stdout)
    except StreamError as e:
        raise StatusError(str(e), 1) from None
    finally:
        resp.close()
    if opts.quiet:
        cli.outln(ref if (tag or digest) and not opts.all_tags else name)
    return 0


# -- login / logout --------------------------------------------------------------------
def _server_key(server):
    from pallet.distribution.auth import config_key, normalize_server
    return config_key(normalize_server(server))


def cmd_login(cli, argv):
    flags = [Flag("password", "p", STR, help="Password"),
             Flag("password-stdin", kind=BOOL, help="Take the password from stdin"),
             Flag("username", "u", STR, help="Username")]
    opts, args = cli.parse(argv, "pallet login [OPTIONS] [SERVER]",
                           "Authenticate to a registry.\nDefaults to Docker Hub if no server "
                           "is specified.", flags, max_args=1)
    from pallet.client.docker_api import DaemonError
    from pallet.distribution.auth import Credentials, normalize_server
    server = args[0] if args else ""
    host = normalize_server(server)
    key = _server_key(server)
    username, password = opts.username, opts.password
    if opts.password and opts.password_stdin:
        raise StatusError("--password and --password-stdin are mutually exclusive", 1)
    if opts.password_stdin:
        if not username:
            raise StatusError("Must provide --username with --password-stdin", 1)
        password = sys.stdin.read()
        password = password[:-1] if password.endswith("\n") else password
        password = password[:-1] if password.endswith("\r") else password
    elif opts.password:
        cli.err("WARNING! Using --password via the CLI is insecure. Use --password-stdin.")
    if not username or not password:
        if not os.isatty(0):
            raise StatusError("Error: Cannot perform an interactive login from a non TTY "
                              "device", 1)
        import getpass
        if not username:
            sys.stdout.write("Username: ")
            sys.stdout.flush()
            username = sys.stdin.readline().strip()
            if not username:
                raise StatusError("Error: Non-null Username Required", 1)
        if not password:
            password = getpass.getpass("Password: ")
            if not password:
                raise StatusError("Error: Password Required", 1)
    body = {"username": username, "password": password, "serveraddress": key}
    try:
        answer = cli.client.post("/auth", None, body) or {}
    except DaemonError as e:
        raise StatusError(str(e), 1) from None
    creds = Credentials(username, password, answer.get("IdentityToken") or "")
    if creds.identity_token:
        creds = Credentials(username, "", creds.identity_token)
    _auth_file(cli).store(host, creds)
    cli.err("WARNING! Your credentials are stored unencrypted in '%s'.\nConfigure a credential "
            "helper to remove this warning. See\nhttps://docs.docker.com/go/credential-store/\n"
            % config_path(cli))
    cli.outln(answer.get("Status") or "Login Succeeded")
    return 0


def cmd_logout(cli, argv):
    opts, args = cli.parse(argv, "pallet logout [SERVER]",
                           "Log out from a registry.\nIf no server is specified, the default "
                           "is defined by the daemon.", [], max_args=1)
    from pallet.distribution.auth import normalize_server
    server = args[0] if args else ""
    host = normalize_server(server)
    shown = _server_key(server) if not server else server
    f = _auth_file(cli)
    if f.get(host) is None and not _has_entry(f, host):
        cli.outln("Not logged in to %s" % shown)
        return 0
    cli.outln("Removing login credentials for %s" % shown)
    f.erase(host)
    return 0


def _has_entry(f, host):
    import json
    try:
        with open(f.path) as fh:
            auths = (json.load(fh) or {}).get("auths") or {}
    except (OSError, ValueError):
        return False
    from pallet.distribution.auth import config_key, normalize_server
    return any(k == config_key(host) or normalize_server(k) == host for k in auths)
