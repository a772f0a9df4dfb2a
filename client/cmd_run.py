"""Commands that create containers or stream their stdio: run, create, start,
attach, exec.

``run`` follows docker's sequence: create (pulling the image when it is
missing), attach through a hijacked connection, register the wait
(``condition=removed`` with ``--rm``, else ``next-exit``), start, copy the
stream, then exit with the container's status.
"""

import os
import sys

from pallet.client import docker_ref
from pallet.client.cmd_containers import cpath
from pallet.client.docker import PROG, StatusError
from pallet.client.docker_api import ConnectError, DaemonError
from pallet.client.docker_flags import BOOL, LIST, STR, Flag
from pallet.client.docker_runopts import (BadFlag, FlagValueError, build_create_body,
                                          container_flags, parse_env)
from pallet.client.docker_stream import (SignalProxy, Terminal, check_tty, detach_keys,
                                         install_winch, pump, resize)

RUN_USAGE = "pallet run [OPTIONS] IMAGE [COMMAND] [ARG...]"
CREATE_USAGE = "pallet create [OPTIONS] IMAGE [COMMAND] [ARG...]"


# -- errors as docker run reports them --------------------------------------------------
def _run_error(e, usage_cmd):
    """docker's toStatusError: 127 for a missing executable, 126 when not
    executable, 125 for the rest, with '<prog>: <error>' and the help hint."""
    msg = str(e)
    if ("executable file not found" in msg or "no such file or directory" in msg
            or "system cannot find the file specified" in msg):
        code = 127
    elif "permission denied" in msg or "is a directory" in msg:
        code = 126
    else:
        code = 125
    return StatusError("%s: %s\n\nRun '%s --help' for more information" % (PROG, msg, usage_cmd), code)


def create_container(cli, body, name, pull, platform, quiet):
    """POST /containers/create, pulling the image when it is missing; return (id, warnings)."""
    try:
        from pallet.client.cmd_registry import StreamError, pull_image
    except ImportError:  # before the registry commands had their own module
        from pallet.client.cmd_registry import StreamError, pull_image
    image = body["Image"]
    tagged = docker_ref.with_default_tag(image)
    params = {"name": name or None, "platform": platform or None}
    if pull not in ("always", "missing", "never"):
        raise BadFlag('invalid pull option: \'%s\': must be one of "always", "missing" or "never"'
                      % pull)
    if pull == "always":
        pull_image(cli, tagged, sys.stderr, quiet=quiet, platform=platform)
    try:
        res = cli.client.post("/containers/create", params, body)
    except DaemonError as e:
        if not (e.status == 404 and "no such image" in e.message.lower() and pull == "missing"):
            raise
        cli.err("Unable to find image '%s' locally" % tagged)
        try:
            pull_image(cli, tagged, sys.stderr, quiet=quiet, platform=platform)
        except StreamError as se:
            raise DaemonError(500, str(se)) from None
        res = cli.client.post("/containers/create", params, body)
    return res.get("Id", ""), res.get("Warnings") or []


# -- run / create ----------------------------------------------------------------------
def cmd_run(cli, argv):
    flags = container_flags(run=True)
    opts, args = cli.parse(argv, RUN_USAGE, "Create and run a new container from an image", flags,
                           interspersed=False, min_args=1,
                           aliases="pallet container run, pallet run")
    path = cli.command_path
    try:
        docker_ref.validate(args[0])
        body = build_create_body(opts, args, run=True, detach=opts.detach)
    except FlagValueError as e:
        raise StatusError("%s\n\nUsage:  %s\n\nRun '%s --help' for more information"
                          % (e, RUN_USAGE, path), 125) from None
    except (BadFlag, ValueError) as e:
        raise StatusError("%s: %s\n\nRun '%s --help' for more information" % (PROG, e, path),
                          125) from None
    if not opts.detach:
        check_tty(opts)
    try:
        cid, warnings = create_container(cli, body, opts.name, opts.pull, opts.platform, opts.quiet)
    except BadFlag as e:
        raise StatusError("%s: %s\n\nRun '%s --help' for more information" % (PROG, e, path),
                          125) from None
    except (DaemonError, ConnectError) as e:
        raise _run_error(e, path) from None
    for w in warnings:
        cli.err("WARNING: " + w)
    if opts.cidfile:
        _write_cidfile(opts.cidfile, cid)
    if opts.detach:
        try:
            cli.client.request("POST", cpath(cid, "/start")).close()
        except (DaemonError, ConnectError) as e:
            raise _run_error(e, path) from None
        cli.outln(cid)
        return 0
    return attach_start_wait(cli, cid, body, opts.rm, path, sig_proxy=opts.sig_proxy,
                             keys=opts.detach_keys)


def attach_start_wait(cli, cid, body, autoremove, path, sig_proxy=True, start=True, keys=None):
    """Attach, register the wait, start, copy the stream; return the exit status
    (0 when the user detached with the key sequence)."""
    tty = body["Tty"]
    want_in, want_out, want_err = body["AttachStdin"], body["AttachStdout"], body["AttachStderr"]
    seq, spec = detach_keys(cli, keys)
    hj = None
    try:
        if want_in or want_out or want_err:
            hj = cli.client.hijack(cpath(cid, "/attach"),
                                   {"stream": True, "stdin": want_in, "stdout": want_out,
                                    "stderr": want_err, "detachKeys": keys or None})
        waiter = cli.client.start_request("POST", cpath(cid, "/wait"),
                                          {"condition": "removed" if autoremove else "next-exit"})
    except (DaemonError, ConnectError) as e:
        raise _run_error(e, path) from None
    if start:
        try:
            cli.client.request("POST", cpath(cid, "/start")).close()
        except (DaemonError, ConnectError) as e:
            if hj is not None:
                hj.close()
            if autoremove:
                try:
                    cli.client.request("DELETE", cpath(cid), {"force": True}).close()
                except (DaemonError, ConnectError):
                    pass
            raise _run_error(e, path) from None
    term = None
    proxy = None
    try:
        if tty and want_in and os.isatty(0):
            term = Terminal(0).__enter__()
        if tty:
            resize(cli, cpath(cid, "/resize"))
            if os.isatty(1):
                install_winch(cli, cpath(cid, "/resize"))
        elif sig_proxy:
            proxy = SignalProxy(cli, cid).__enter__()
        if hj is not None:
            detached = pump(hj, tty, stdin=want_in, detach_keys=seq)
            hj.close()
            if detached:
                return 0
        try:
            res = waiter().json() or {}
        except DaemonError as e:
            if autoremove and e.status == 404:
                return 0
            raise
    finally:
        if term is not None:
            term.__exit__(None, None, None)
        if proxy is not None:
            proxy.__exit__(None, None, None)
    err = res.get("Error") or {}
    if err.get("Message"):
        cli.err("Error waiting for container: %s" % err["Message"])
        return 125
    return int(res.get("StatusCode", 0))


def _write_cidfile(path, cid):
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        raise StatusError("Container ID file found, make sure the other container isn't running "
                          "or delete %s" % path, 125) from None
    with os.fdopen(fd, "w") as f:
        f.write(cid)


def cmd_create(cli, argv):
    flags = container_flags(run=False)
    opts, args = cli.parse(argv, CREATE_USAGE, "Create a new container", flags, interspersed=False,
                           min_args=1, aliases="pallet container create, pallet create")
    path = cli.command_path
    try:
        docker_ref.validate(args[0])
        body = build_create_body(opts, args, run=False, detach=False)
        cid, warnings = create_container(cli, body, opts.name, opts.pull, opts.platform, opts.quiet)
    except FlagValueError as e:
        raise StatusError("%s\n\nUsage:  %s\n\nRun '%s --help' for more information"
                          % (e, CREATE_USAGE, path), 125) from None
    except (BadFlag, ValueError) as e:
        raise StatusError("%s: %s\n\nRun '%s --help' for more information" % (PROG, e, path),
                          125) from None
    except (DaemonError, ConnectError) as e:
        raise _run_error(e, path) from None
    for w in warnings:
        cli.err("WARNING: " + w)
    if opts.cidfile:
        _write_cidfile(opts.cidfile, cid)
    cli.outln(cid)
    return 0


# -- start / attach ---------------------------------------------------------------------
def cmd_start(cli, argv):
    flags = [Flag("attach", "a", BOOL, help="Attach STDOUT/STDERR and forward signals"),
             Flag("detach-keys", kind=STR, help="Override the key sequence for detaching a container"),
             Flag("interactive", "i", BOOL, help="Attach container's STDIN")]
    opts, args = cli.parse(argv, "pallet start [OPTIONS] CONTAINER [CONTAINER...]",
                           "Start one or more stopped containers", flags, min_args=1,
                           aliases="pallet container start, pallet start")
    if opts.attach or opts.interactive:
        if len(args) > 1:
            raise StatusError("you cannot start and attach multiple containers at once", 1)
        c = cli.client.get(cpath(args[0], "/json"))
        cfg = c.get("Config") or {}
        body = {"Tty": bool(cfg.get("Tty")),
                "AttachStdin": bool(opts.interactive and cfg.get("OpenStdin")),
                "AttachStdout": True, "AttachStderr": True}
        autoremove = bool((c.get("HostConfig") or {}).get("AutoRemove"))
        if body["Tty"] and body["AttachStdin"] and not os.isatty(0):
            raise StatusError("the input device is not a TTY", 1)
        try:
            return attach_start_wait(cli, c["Id"], body, autoremove, cli.command_path,
                                     keys=opts.detach_keys)
        except StatusError as e:
            # docker start reports daemon errors without the run-style prefix
            msg = e.message.split("\n\n")[0]
            if msg.startswith(PROG + ": "):
                msg = msg[len(PROG) + 2:]
            raise StatusError(msg, 1) from None
    errors, failed = [], []
    for name in args:
        try:
            cli.client.request("POST", cpath(name, "/start")).close()
        except DaemonError as e:
            errors.append(str(e))
            failed.append(name)
            continue
        cli.outln(name)
    if errors:
        errors.append("Error: failed to start containers: %s" % ", ".join(failed))
        raise StatusError("\n".join(errors), 1)
    return 0


def cmd_attach(cli, argv):
    flags = [Flag("detach-keys", kind=STR, help="Override the key sequence for detaching a container"),
             Flag("no-stdin", kind=BOOL, help="Do not attach STDIN"),
             Flag("sig-proxy", kind=BOOL, default=True, help="Proxy all received signals to the process")]
    opts, args = cli.parse(argv, "pallet attach [OPTIONS] CONTAINER",
                           "Attach local standard input, output, and error streams to a running container",
                           flags, min_args=1, max_args=1,
                           aliases="pallet container attach, pallet attach")
    c = cli.client.get(cpath(args[0], "/json"))
    state = c.get("State") or {}
    if not state.get("Running"):
        raise StatusError("You cannot attach to a stopped container, start it first", 1)
    if state.get("Paused"):
        raise StatusError("You cannot attach to a paused container, unpause it first", 1)
    cfg = c.get("Config") or {}
    tty = bool(cfg.get("Tty"))
    want_in = bool(cfg.get("OpenStdin")) and not opts.no_stdin
    if tty and want_in and not os.isatty(0):
        raise StatusError("the input device is not a TTY", 1)
    seq, _ = detach_keys(cli, opts.detach_keys)
    hj = cli.client.hijack(cpath(c["Id"], "/attach"),
                           {"stream": True, "stdin": want_in, "stdout": True, "stderr": True,
                            "detachKeys": opts.detach_keys or None})
    term = proxy = None
    try:
        if tty and want_in and os.isatty(0):
            term = Terminal(0).__enter__()
        if tty:
            resize(cli, cpath(c["Id"], "/resize"))
            if os.isatty(1):
                install_winch(cli, cpath(c["Id"], "/resize"))
        elif opts.sig_proxy:
            proxy = SignalProxy(cli, c["Id"]).__enter__()
        if pump(hj, tty, stdin=want_in, detach_keys=seq):
            return 0
    finally:
        hj.close()
        if term is not None:
            term.__exit__(None, None, None)
        if proxy is not None:
            proxy.__exit__(None, None, None)
    try:
        after = cli.client.get(cpath(c["Id"], "/json"))
    except DaemonError:
        return 0
    st = after.get("State") or {}
    return 0 if st.get("Running") else int(st.get("ExitCode", 0))


# -- exec -------------------------------------------------------------------------------
def cmd_exec(cli, argv):
    flags = [Flag("detach", "d", BOOL, help="Detached mode: run command in the background"),
             Flag("detach-keys", kind=STR, help="Override the key sequence for detaching a container"),
             Flag("env", "e", LIST, help="Set environment variables", metavar="list"),
             Flag("env-file", kind=LIST, help="Read in a file of environment variables", metavar="list"),
             Flag("interactive", "i", BOOL, help="Keep STDIN open even if not attached"),
             Flag("privileged", kind=BOOL, help="Give extended privileges to the command"),
             Flag("tty", "t", BOOL, help="Allocate a pseudo-TTY"),
             Flag("user", "u", STR, help="Username or UID (format: \"<name|uid>[:<group|gid>]\")"),
             Flag("workdir", "w", STR, help="Working directory inside the container")]
    opts, args = cli.parse(argv, "pallet exec [OPTIONS] CONTAINER COMMAND [ARG...]",
                           "Execute a command in a running container", flags, interspersed=False,
                           min_args=2, aliases="pallet container exec, pallet exec")
    try:
        env = parse_env(opts)
    except BadFlag as e:
        raise StatusError(str(e), 125) from None
    check_tty(opts)
    name, cmd = args[0], args[1:]
    seq, _ = detach_keys(cli, opts.detach_keys)
    body = {"User": opts.user, "Privileged": opts.privileged, "Tty": opts.tty,
            "AttachStdin": opts.interactive and not opts.detach,
            "AttachStdout": not opts.detach, "AttachStderr": not opts.detach,
            "Detach": opts.detach, "Env": env or None, "WorkingDir": opts.workdir, "Cmd": cmd,
            "DetachKeys": opts.detach_keys or ""}
    if opts.tty:
        size = _console_size()
        if size:
            body["ConsoleSize"] = size
    res = cli.client.post(cpath(name, "/exec"), None, body)
    exec_id = res.get("Id", "")
    if opts.detach:
        cli.client.request("POST", "/exec/%s/start" % exec_id, None,
                           {"Detach": True, "Tty": opts.tty}).close()
        return 0
    hj = cli.client.hijack("/exec/%s/start" % exec_id, None,
                           {"Detach": False, "Tty": opts.tty,
                            "ConsoleSize": body.get("ConsoleSize")})
    term = None
    try:
        if opts.tty and opts.interactive and os.isatty(0):
            term = Terminal(0).__enter__()
        if opts.tty:
            resize(cli, "/exec/%s/resize" % exec_id)
            if os.isatty(1):
                install_winch(cli, "/exec/%s/resize" % exec_id)
        detached = pump(hj, opts.tty, stdin=opts.interactive, detach_keys=seq)
    finally:
        hj.close()
        if term is not None:
            term.__exit__(None, None, None)
    if detached:
        return 0
    return _exec_exit_code(cli, exec_id)


def _console_size():
    try:
        size = os.get_terminal_size(1)
    except OSError:
        return None
    return [size.lines, size.columns]


def _exec_exit_code(cli, exec_id):
    """The exec's exit status; the stream can end a moment before the daemon
    records it, so ask until it is no longer running (bounded)."""
    import time
    deadline = time.monotonic() + 10
    delay = 0.005
    while True:
        info = cli.client.get("/exec/%s/json" % exec_id) or {}
        if not info.get("Running") or time.monotonic() > deadline:
            break
        time.sleep(delay)
        delay = min(delay * 2, 0.1)
    code = info.get("ExitCode")
    return int(code) if code is not None else 0
