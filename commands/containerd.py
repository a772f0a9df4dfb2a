"""pallet-containerd: containerd's v1 gRPC API over pallet's image store and shims.

Flags as containerd's: ``--address/-a``, ``--root``, ``--state``,
``--config/-c``, ``--log-level/-l``.  The configuration file is pallet's TOML
(roles, plugin sections); containerd's own top-level ``root``, ``state`` and
``[grpc] address`` keys are honoured in it too, so that a containerd-style
config file can be passed as it is.  Flags win over the file.
"""
from __future__ import annotations

import sys

PROG = "pallet-containerd"
LEVELS = {"trace": 5, "debug": 10, "info": 20, "warn": 30, "warning": 30, "error": 40,
          "fatal": 50, "panic": 50}


def parse_args(argv):
    import argparse

    p = argparse.ArgumentParser(prog=PROG, description="containerd's v1 gRPC API, by pallet")
    p.add_argument("-a", "--address", help="address for containerd's GRPC server")
    p.add_argument("--root", help="containerd root directory")
    p.add_argument("--state", help="containerd state directory")
    p.add_argument("-c", "--config", help="path to the configuration file")
    p.add_argument("-l", "--log-level", default="info", help="set the logging level "
                   "[trace, debug, info, warn, error, fatal, panic]")
    p.add_argument("-v", "--version", action="store_true", help="print the version")
    return p.parse_args(argv)


def _containerd_keys(path: str | None) -> dict:
    """containerd's own settings if the file has them (root, state, grpc.address)."""
    if not path:
        return {}
    import tomllib

    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError):
        return {}  # Config.load reports the problem
    grpc = doc.get("grpc") if isinstance(doc.get("grpc"), dict) else {}
    return {"root": doc.get("root"), "state": doc.get("state"), "address": grpc.get("address")}


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.version:
        from pallet.containerd_services.services import pallet_version

        v, rev = pallet_version()
        print(f"{PROG} pallet {v} {rev}")
        return 0
    level = LEVELS.get(args.log_level.lower())
    if level is None:
        print(f"{PROG}: unknown log level {args.log_level!r}", file=sys.stderr)
        return 1
    import logging
    import os

    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from pallet.core.config import Config
    from pallet.core.errors import PalletError
    from pallet.core.kernel import Kernel, Options
    from pallet.core.paths import Paths

    try:
        config = Config.load(args.config)
        if config.source:
            # the shims' zygote loads the runtime role with the same configuration
            os.environ["PALLET_CONFIG"] = os.path.abspath(config.source)
        keys = _containerd_keys(args.config or config.source)
        defaults = Paths(config.daemon.get("data-root", Paths.data_root),
                         config.daemon.get("exec-root", Paths.exec_root))
        root = os.path.abspath(args.root or keys.get("root") or defaults.containerd_root)
        state = os.path.abspath(args.state or keys.get("state") or defaults.containerd_state)
        address = args.address or keys.get("address") or os.path.join(state, "containerd.sock")
        if address.startswith("unix://"):
            address = address[len("unix://"):]
        os.makedirs(root, mode=0o711, exist_ok=True)
        os.makedirs(state, mode=0o711, exist_ok=True)
        paths = Paths.for_containerd(root, state)
        kernel = Kernel.load(config, paths=paths, roles=["containerd", "image_store"],
                             options=Options(config_path=config.source))
        return _serve(kernel, os.path.abspath(address))
    except PalletError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"{PROG}: {e.strerror or e}: {getattr(e, 'filename', '') or ''}".rstrip(": "),
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


def _serve(kernel, address: str) -> int:
    """Serve containerd's services on ``address`` until SIGTERM or SIGINT."""
    import logging
    import signal
    import threading

    from pallet.containerd_services.services import Backend

    log = logging.getLogger("pallet.containerd")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    services = Backend(kernel, address)
    server = kernel.provide("containerd")
    try:
        server.listen(address)
        services.start()
        server.start(services)
        kernel.hook.pallet_startup(kernel=kernel)
        while not stop.wait(1):
            pass
        log.info("shutting down")
        try:
            kernel.hook.pallet_shutdown(kernel=kernel)
        except Exception:  # noqa: BLE001 — shutting down regardless
            log.exception("shutdown hook failed")
    finally:
        server.stop()
        services.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
