"""Contract tests (see contract_helpers.py): the role directories below
import ``contract_helpers`` from here."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def busybox_root(tmp_path_factory) -> str:
    """A busybox-static root filesystem that bundles share read-only (runtime
    and init contracts); the test process becomes a child subreaper, as the
    shim is, to reap the containers' processes."""
    from contract_helpers import busybox_rootfs
    from pallet.linux.syscalls import set_child_subreaper

    set_child_subreaper()
    return busybox_rootfs(str(tmp_path_factory.mktemp("busybox-root")))
