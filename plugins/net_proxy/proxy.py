"""pallet-proxy: forwards one published port to a container, as docker-proxy does.

    pallet-proxy -proto tcp -host-ip 0.0.0.0 -host-port 8080 \\
                 -container-ip 172.17.0.2 -container-port 80

Flags are docker-proxy's (Go style: one dash, ``-flag value`` or
``-flag=value``).  For now only TCP is forwarded, with a plain
bidirectional copy per connection.  When fd 3 is an inherited pipe, the
proxy reports readiness on it as docker-proxy does: ``0`` once listening, or
``1`` and the error.  SIGTERM/SIGINT stop it.
"""
from __future__ import annotations

import sys


def _parse(argv):
    import argparse

    p = argparse.ArgumentParser(prog="pallet-proxy", prefix_chars="-",
                                description="forward a host port to a container port")
    for flag, default in (("proto", "tcp"), ("host-ip", ""), ("host-port", "-1"),
                          ("container-ip", ""), ("container-port", "-1")):
        p.add_argument(f"-{flag}", f"--{flag}", dest=flag.replace("-", "_"), default=default)
    a = p.parse_args(argv)
    try:
        a.host_port = int(a.host_port)
        a.container_port = int(a.container_port)
    except ValueError:
        p.error("ports must be numbers")
    if a.proto not in ("tcp", "tcp4", "tcp6"):
        p.error(f"unsupported protocol {a.proto}: only tcp is forwarded for now")
    if not a.host_ip or not a.container_ip or not (0 <= a.host_port < 65536) \
            or not (0 < a.container_port < 65536):
        p.error("-host-ip, -host-port, -container-ip and -container-port are required")
    return a


def _report(ok: bool, message: str = "") -> None:
    """docker-proxy's start-up report on fd 3, when fd 3 is a pipe."""
    import os
    import stat

    try:
        if not stat.S_ISFIFO(os.fstat(3).st_mode):
            return
        os.write(3, b"0\n" if ok else b"1\n" + message.encode())
        os.close(3)
    except OSError:
        pass


async def _pipe(reader, writer) -> None:
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        try:
            if writer.can_write_eof():
                writer.write_eof()
        except (OSError, RuntimeError):
            pass


async def _serve(a) -> None:
    import asyncio
    import signal

    async def handle(client_r, client_w):
        try:
            backend_r, backend_w = await asyncio.open_connection(a.container_ip,
                                                                 a.container_port)
        except OSError:
            client_w.close()
            return
        await asyncio.gather(_pipe(client_r, backend_w), _pipe(backend_r, client_w))
        for w in (client_w, backend_w):
            w.close()

    server = await asyncio.start_server(handle, a.host_ip, a.host_port, reuse_address=True)
    _report(True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main(argv=None) -> int:
    import asyncio

    a = _parse(sys.argv[1:] if argv is None else argv)
    try:
        asyncio.run(_serve(a))
    except OSError as e:
        msg = f"listen {a.proto} {a.host_ip}:{a.host_port}: {(e.strerror or str(e)).lower()}"
        _report(False, msg)
        print(f"pallet-proxy: {msg}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
