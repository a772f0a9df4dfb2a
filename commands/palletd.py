"""palletd: the daemon behind the Docker Engine API (dockerd's role).

    palletd [-H unix:///run/pallet/pallet.sock]... [--data-root DIR] [--exec-root DIR]
            [--containerd ADDRESS] [--config FILE] [--debug] [--pidfile FILE]
            [-G GROUP] [--tlsverify --tlscacert CA --tlscert CERT --tlskey KEY]
            [--tls[=false]] [--list-plugins]

``-H`` may be given several times: ``unix://PATH`` (mode 0660, group
``pallet`` or ``--group``), ``tcp://HOST:PORT`` (mutual TLS with
``--tlsverify``; plain tcp only with an explicit ``--tls=false``) and
``fd://`` / ``fd://N`` (systemd socket activation); see listeners.py.

Unless ``--containerd`` names a running containerd, palletd starts
``pallet-containerd`` under its own roots, supervises it (restarting it with
backoff when it dies) and stops it when palletd stops.  Imports are lazy:
``--list-plugins`` and ``--help`` stay quick.
"""
from __future__ import annotations

import sys


#: the roles palletd's engine uses; containerd, the image store and the
#: runtime belong to pallet-containerd and its shims
PALLETD_ROLES = ("client_protocol", "network", "port_proxy", "init", "builder")


def _parser():
    import argparse

    p = argparse.ArgumentParser(prog="palletd", description="pallet's Docker Engine API daemon")
    p.add_argument("-H", "--host", action="append", default=[], metavar="HOST",
                   help="socket to listen on (unix:///path, tcp://host:port, fd://); repeatable")
    p.add_argument("-G", "--group", help='group of the unix sockets (default "pallet", '
                   'created when missing)')
    p.add_argument("--tls", nargs="?", const=True, default=None, type=_flag_bool,
                   metavar="BOOL", help="use TLS on tcp listeners; --tls=false accepts plain tcp")
    p.add_argument("--tlsverify", nargs="?", const=True, default=None, type=_flag_bool,
                   metavar="BOOL", help="use TLS and require client certificates signed by "
                   "--tlscacert")
    p.add_argument("--tlscacert", help="trust client certificates signed only by this CA "
                   "(default ~/.docker/ca.pem)")
    p.add_argument("--tlscert", help="the server's TLS certificate (default ~/.docker/cert.pem)")
    p.add_argument("--tlskey", help="the server's TLS key (default ~/.docker/key.pem)")
    p.add_argument("--data-root", help="root of persistent state (default /var/lib/pallet)")
    p.add_argument("--exec-root", help="root of runtime state (default /run/pallet)")
    p.add_argument("--containerd", metavar="ADDRESS",
                   help="use the containerd at ADDRESS instead of starting pallet-containerd")
    p.add_argument("--config", help="configuration file (default /etc/pallet/pallet.toml)")
    p.add_argument("-D", "--debug", action="store_true", help="debug logging")
    p.add_argument("-p", "--pidfile", help="pid file (default <exec-root>/palletd.pid)")
    p.add_argument("--list-plugins", action="store_true",
                   help="list the installed plugins and their roles, then exit")
    p.add_argument("--metrics-addr", metavar="HOST:PORT",
                   help="serve Prometheus metrics at http://HOST:PORT/metrics (off by "
                        "default; also [daemon] metrics-addr)")
    p.add_argument("--live-restore", action="store_true", default=None,
                   help="keep containers running while palletd is down (also "
                        "[daemon] live-restore in the configuration)")
    return p


def _flag_bool(value: str) -> bool:
    """Go's strconv.ParseBool, as dockerd reads ``--tls=false``."""
    if value in ("1", "t", "T", "true", "TRUE", "True"):
        return True
    if value in ("0", "f", "F", "false", "FALSE", "False"):
        return False
    import argparse

    raise argparse.ArgumentTypeError(f"invalid boolean value {value!r}")


def _tls_options(args, daemon_config):
    from pallet.commands.listeners import TLSOptions

    def pick(name):
        v = getattr(args, name)
        return daemon_config.get(name) if v is None else v

    return TLSOptions(tls=pick("tls"), verify=bool(pick("tlsverify")),
                      cacert=pick("tlscacert"), cert=pick("tlscert"), key=pick("tlskey"))


def _fail(message: str) -> int:
    print(f"palletd: {message}", file=sys.stderr)
    return 1


def main(argv=None) -> int:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    from pallet.core.errors import ConfigError

    if args.list_plugins:
        from pallet.core.kernel import discover
        try:
            print(format_plugin_table(discover()))
        except ConfigError as e:
            return _fail(e.message)
        return 0
    try:
        kernel, listeners, pidfile = _prepare(args)
    except ConfigError as e:
        return _fail(e.message)
    import asyncio
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            return runner.run(_run(kernel, args, listeners))
    except ConfigError as e:
        return _fail(e.message)
    except KeyboardInterrupt:
        return 130
    finally:
        from pallet.commands.listeners import close_listeners

        close_listeners(listeners)
        _remove_pidfile(pidfile)


def _loop_factory():
    """uvloop's event loop (a dependency: it accepts and answers a connection
    about 0.1 ms sooner than asyncio's own loop, a good part of what palletd
    adds to a docker CLI command); asyncio's loop if it is not installed."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def _prepare(args):
    import logging
    import os

    from pallet.core.config import Config
    from pallet.core.errors import ConfigError
    from pallet.core.kernel import Kernel, Options
    from pallet.core.paths import Paths
    from pallet.commands.listeners import open_listeners

    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("grpc", "asyncio", "aiohttp"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    config = Config.load(args.config)
    data_root = os.path.abspath(args.data_root or config.daemon.get("data-root")
                                or Paths.data_root)
    exec_root = os.path.abspath(args.exec_root or config.daemon.get("exec-root")
                                or Paths.exec_root)
    paths = Paths(data_root, exec_root)
    live = args.live_restore if args.live_restore is not None \
        else config.daemon.get("live-restore", False)
    if not isinstance(live, bool):
        raise ConfigError("configuration: [daemon] live-restore must be true or false")
    options = Options(containerd_address=args.containerd or paths.containerd_socket,
                      debug=args.debug, live_restore=live, config_path=args.config)
    kernel = Kernel.load(config, paths=paths, options=options, roles=PALLETD_ROLES)
    for d in (data_root, exec_root):
        os.makedirs(d, mode=0o711, exist_ok=True)
    pidfile = args.pidfile or paths.palletd_pidfile
    _write_pidfile(pidfile)
    try:
        listeners = open_listeners(args.host or list(config.daemon.get("hosts") or []),
                                   paths.palletd_socket,
                                   group=args.group or config.daemon.get("group"),
                                   tls=_tls_options(args, config.daemon))
    except ConfigError:
        _remove_pidfile(pidfile)
        raise
    return kernel, listeners, pidfile


def _write_pidfile(path: str) -> None:
    import os

    from pallet.core.errors import ConfigError
    from pallet.core.files import write_atomic

    try:
        with open(path) as f:
            old = int(f.read().strip() or 0)
        if old and old != os.getpid():
            os.kill(old, 0)
            with open(f"/proc/{old}/cmdline", "rb") as f:
                if b"palletd" in f.read():
                    raise ConfigError(f"pid file found, ensure palletd is not running or "
                                      f"delete {path}")
    except (OSError, ValueError):
        pass
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    write_atomic(path, str(os.getpid()), fsync=False)


def _remove_pidfile(path: str | None) -> None:
    import os

    if not path:
        return
    try:
        with open(path) as f:
            if f.read().strip() != str(os.getpid()):
                return
        os.unlink(path)
    except OSError:
        pass


def _containerd_argv(kernel, config_path: str | None) -> list[str]:
    import os
    import shutil

    exe = os.path.join(os.path.dirname(sys.executable), "pallet-containerd")
    if not os.access(exe, os.X_OK):
        exe = shutil.which("pallet-containerd")
    paths = kernel.paths
    argv = [exe] if exe else [sys.executable, "-m", "pallet.commands.containerd"]
    argv += ["--address", paths.containerd_socket, "--root", paths.containerd_root,
             "--state", paths.containerd_state]
    if config_path:
        argv += ["--config", config_path]
    return argv


async def _run(kernel, args, listeners) -> int:
    import asyncio
    import logging
    import os
    import signal

    log = logging.getLogger("palletd")
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    protocol = engine = None

    def on_signal() -> None:
        stopping.set()
        if protocol is not None:
            protocol.stop()

    # before anything else: a SIGTERM during start-up stops palletd in order too
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    supervisor = None
    try:
        if not args.containerd:
            from pallet.core.supervisor import Supervisor
            from pallet.linux.sockets import answers

            os.makedirs(kernel.paths.containerd_state, mode=0o711, exist_ok=True)
            supervisor = Supervisor(
                _containerd_argv(kernel, args.config), name="pallet-containerd",
                ready=lambda: answers(kernel.paths.containerd_socket),
                pidfile=os.path.join(kernel.paths.containerd_state, "pallet-containerd.pid"))
            try:
                await supervisor.start()
            except (OSError, RuntimeError) as e:
                print(f"palletd: start pallet-containerd: {e}", file=sys.stderr)
                return 1
        if stopping.is_set():
            return 0
        from pallet.engine.engine import Engine

        protocol = kernel.provide("client_protocol")
        engine = await Engine.from_kernel(kernel, metrics_addr=args.metrics_addr).start()
        kernel.hook.pallet_startup(kernel=kernel)
        if stopping.is_set():
            protocol.stop()
        log.info("palletd ready (containerd at %s)", kernel.options.containerd_address)
        await protocol.serve(engine, listeners)
    finally:
        if engine is not None:
            await engine.close()
            try:
                kernel.hook.pallet_shutdown(kernel=kernel)
            except Exception:  # noqa: BLE001 — shutting down regardless
                log.exception("pallet_shutdown failed")
        if supervisor is not None:
            await supervisor.stop()
    return 0


def format_plugin_table(found: dict) -> str:
    """The table ``palletd --list-plugins`` prints."""
    from pallet.core import hookspecs

    rows = [("NAME", "ROLE", "DISTRIBUTION", "VERSION")]
    order = {r: i for i, r in enumerate(hookspecs.ROLES)}
    for p in sorted(found.values(), key=lambda p: (order.get(p.role, 99), p.name)):
        rows.append((p.name, p.role or "extension", p.distribution, p.version))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("   ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


if __name__ == "__main__":
    sys.exit(main())
