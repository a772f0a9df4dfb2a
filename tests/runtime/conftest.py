"""Fixtures for the runtime_ns and init_tini tests: busybox bundles, a runtime
on its own root, and cleanup that runs even when a test fails.

Each test gets its own state root and container ids with a random suffix, so
that several runs (or other helpers' tests) can share the machine.
"""
from __future__ import annotations

import os
import subprocess
import uuid

import pytest

pytest.register_assert_rewrite("differential")

from rt_helpers import BUSYBOX, Bundle, Output, reap_all


def pytest_collection_modifyitems(config, items):
    if os.geteuid() != 0:
        skip = pytest.mark.skip(reason="runtime tests need root")
        for item in items:
            if "tests/runtime" in str(item.fspath):
                item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def _subreaper():
    """The test process plays the shim: a child subreaper that waits for PID 1."""
    from pallet.plugins.runtime_ns.linux import set_child_subreaper
    set_child_subreaper()


@pytest.fixture(scope="session")
def applets() -> list[str]:
    out = subprocess.run([BUSYBOX, "--list"], check=True, capture_output=True, text=True).stdout
    return [a for a in out.split() if a and a != "busybox"]


@pytest.fixture
def bundle(tmp_path, applets) -> Bundle:
    path = tmp_path / "bundle"
    path.mkdir()
    return Bundle(str(path), applets)


@pytest.fixture
def state_root(tmp_path) -> str:
    return str(tmp_path / f"state-{uuid.uuid4().hex[:6]}")


@pytest.fixture
def runtime(state_root):
    """An NsRuntime with the builtin init; every container it holds is
    force-deleted at the end, whatever the test did."""
    from pallet.plugins.init_tini.init import TiniInit
    from pallet.plugins.runtime_ns.runtime import NsRuntime

    rt = NsRuntime(state_root, init=TiniInit())
    yield rt
    for st in rt.list():
        try:
            rt.delete(st["id"], force=True)
        except Exception:
            pass
    reap_all()


@pytest.fixture
def output(tmp_path):
    out = Output(str(tmp_path / "out.txt"))
    yield out
    out.close()


@pytest.fixture
def diff_bundle(tmp_path, applets):
    """A bundle for a differential test (runc's default spec, busybox rootfs);
    skipped without Debian's runc 1.1."""
    from differential import DiffBundle, runc_available

    if not runc_available():
        pytest.skip("Debian's runc 1.1 is not installed (apt-get install runc)")
    # the containers of run -d and create go to the machine's init, which
    # reaps them, as under a shell: a subreaper that does not reap while a
    # command waits for PID 1 to go would keep it a zombie
    from pallet.linux.syscalls import prctl
    reap_all()
    prctl(36, 0)  # PR_SET_CHILD_SUBREAPER
    yield DiffBundle(str(tmp_path / "bundle"), applets)
    prctl(36, 1)


@pytest.fixture
def open_diff_bundle(diff_bundle):
    """A differential bundle in a directory anyone may cross (/tmp/pl-diff-*),
    for user namespaces, whose root is not the host's."""
    import shutil
    import tempfile

    top = tempfile.mkdtemp(prefix="pl-diff-")
    os.chmod(top, 0o755)
    diff_bundle.path = os.path.join(top, "bundle")
    diff_bundle.rootfs = os.path.join(diff_bundle.path, "rootfs")
    yield diff_bundle
    subprocess.run(["umount", "-R", "-l", diff_bundle.rootfs], capture_output=True)
    shutil.rmtree(top, ignore_errors=True)
