"""A free tcp port on 127.0.0.1 for the fuzzed palletd."""
import socket


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port
