"""Fixtures of the CRI tests (helpers in cri_helpers.py)."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from cri_helpers import CriDaemon, ContainerdCri  # noqa: E402


@pytest.fixture(scope="module")
def cri(busybox_tar):
    """pallet-containerd with api_cri, busybox in k8s.io (one per test module)."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    d = CriDaemon()
    try:
        d.start()
        d.import_image(busybox_tar)
        yield d
    finally:
        d.stop()


@pytest.fixture(scope="module")
def paused(busybox_tar, tmp_path_factory):
    """pallet-containerd with a ``sandbox_image`` (containerd's pause image), which
    runs as each pod's own task."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    from cri_helpers import PAUSE, pause_archive

    pause = str(tmp_path_factory.mktemp("pause") / "pause.tar")
    pause_archive(pause)
    d = CriDaemon(f'sandbox_image = "{PAUSE}"\nrestrict_oom_score_adj = true\n')
    try:
        d.start()
        d.import_image(busybox_tar)
        d.import_image(pause)
        yield d
    finally:
        d.stop()


@pytest.fixture(scope="module")
def both(busybox_tar, tmp_path_factory):
    """pallet-containerd and Debian's containerd 1.6 side by side, busybox (and
    the pause image containerd's CRI plugin needs) in both."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    from cri_helpers import CONTAINERD, pause_archive

    if not os.path.exists(CONTAINERD):
        pytest.skip("needs containerd")
    pause = str(tmp_path_factory.mktemp("pause") / "pause.tar")
    pause_archive(pause)
    daemons = {"pallet": CriDaemon(), "containerd": ContainerdCri()}
    try:
        for d in daemons.values():
            d.start()
            d.import_image(busybox_tar)
        daemons["containerd"].import_image(pause)
        yield daemons
    finally:
        for d in daemons.values():
            d.stop()
