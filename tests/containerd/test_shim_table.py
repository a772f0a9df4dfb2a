"""Runtime name -> shim binary (pure logic): containerd's rule, pallet's names,
the ``[containerd.runtimes]`` table in front of them."""
from __future__ import annotations

import shutil

import pytest

from pallet.containerd_services.shims import ShimTable, binary_name
from pallet.core import errors


def test_containerds_rule_and_pallets_names():
    assert binary_name("io.containerd.runc.v2") == "containerd-shim-runc-v2"
    assert binary_name("com.example.kata.v2") == "containerd-shim-kata-v2"
    table = ShimTable()
    assert table.resolve("io.containerd.pallet.v2") == ""   # pallet-shim, via the zygote
    assert table.resolve("io.containerd.pallet.v1") == ""
    assert table.resolve("") == ""
    runc = shutil.which("containerd-shim-runc-v2")
    if runc:
        assert table.resolve("io.containerd.runc.v2") == runc
    with pytest.raises(errors.NotFound, match='binary not installed "containerd-shim-nope-v9"'):
        table.resolve("io.containerd.nope.v9")
    with pytest.raises(errors.InvalidArgument, match="invalid runtime name"):
        table.resolve("runc")
    with pytest.raises(errors.NotFound, match="no such executable"):
        table.resolve("/nonexistent/containerd-shim-x-v1")


def test_the_table_goes_first():
    table = ShimTable({"io.containerd.runc.v2": "pallet-shim", "io.x.sh.v1": "/bin/sh",
                       "io.x.named.v1": "sh"})
    assert table.resolve("io.containerd.runc.v2") == ""
    assert table.resolve("io.x.sh.v1") == "/bin/sh"
    assert table.resolve("io.x.named.v1") == shutil.which("sh")


@pytest.mark.parametrize("bad", ["not a table", {"io.x.y.v1": "relative/path"},
                                 {"io.x.y.v1": 3}, {"io.x.y.v1": ""}])
def test_a_malformed_table_is_refused(bad):
    with pytest.raises(errors.ConfigError, match=r"\[containerd.runtimes\]"):
        ShimTable(bad)
