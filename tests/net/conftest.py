"""Fixtures of the networking tests (defined in net_helpers.py, which the test
modules also import their helpers from)."""
from net_helpers import client_ns, engine, image_tar, make_engine, upstream  # noqa: F401
