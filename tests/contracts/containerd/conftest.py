"""Fixtures of the containerd role's contract tests.

``containerd`` is every installed implementation of the role (pallet-containerd
started with ``[roles] containerd = <plugin>``) and, as the reference the
others must match, Debian's containerd 1.6: the same client calls go to
each, one daemon per module and implementation, on roots of its own.
"""
from __future__ import annotations

import os
import sys

import pytest

from contract_helpers import implementations

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "containerd"))

from cd_util import CONTAINERD, start_pallet_containerd, start_real_containerd  # noqa: E402

REFERENCE = "containerd-1.6"
IMPLEMENTATIONS = implementations("containerd")


@pytest.fixture(scope="module", params=IMPLEMENTATIONS + [REFERENCE])
def containerd(request, tmp_path_factory):
    """A running daemon of the role (``.address``, ``.name``), its own roots."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    if request.param == REFERENCE:
        if not os.path.exists(CONTAINERD):
            pytest.skip("needs Debian's containerd")
        d = start_real_containerd()
    else:
        # the file stays while the daemon runs: its shims load their roles with it
        config = tmp_path_factory.mktemp("config") / "pallet.toml"
        config.write_text(f'[roles]\ncontainerd = "{request.param}"\n')
        d = start_pallet_containerd("--config", str(config))
    d.name = request.param
    try:
        yield d
    finally:
        d.stop()
