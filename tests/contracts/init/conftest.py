"""Fixtures of the init contract tests: every installed init, each with every
installed runtime (runtime_oci on Debian's runc), on busybox bundles.

An init either runs as PID 1 under a runtime, or that runtime refuses the
spec with a clear error; the tests check which, never that --init silently
did nothing."""
from __future__ import annotations

import os
import shutil
import tempfile
import uuid

import pytest

from contract_helpers import (bundle_spec, create_to_pipe, delete_all, implementations,
                              kernel_for, read_to_eof, runtime_variants, wait_exit, write_bundle)
from pallet.core import errors

#: each init with each runtime; runtime_oci on one binary is enough here (its
#: runtime contract runs on every binary)
_RUNTIMES = [v for v in runtime_variants() if v[1] != "runtime_oci" or v[0] == "runtime_oci-runc"]
COMBINATIONS = [(init, rt) for init in implementations("init") for rt in _RUNTIMES]


class Setup:
    """An init and a runtime from one kernel, and the containers they run."""

    def __init__(self, init, runtime, rootfs: str, base: str):
        self.init, self.runtime, self.rootfs, self.base = init, runtime, rootfs, base

    def spec(self, args) -> dict:
        """A spec for ``args``, prepared by the init (as palletd's engine does)."""
        spec = bundle_spec(self.rootfs, args)
        self.init.prepare_spec(spec)
        return spec

    def create(self, args):
        """(id, pid, read end of its output) of a created container under the init."""
        cid = f"i-{uuid.uuid4().hex[:12]}"
        bundle = write_bundle(os.path.join(self.base, cid), self.spec(args))
        pid, r = create_to_pipe(self.runtime, cid, bundle)
        return cid, pid, r

    def run(self, args) -> tuple[int, bytes]:
        """(exit code, output) of ``args`` run to its end under the init."""
        cid, pid, r = self.create(args)
        try:
            self.runtime.start(cid)
            code = wait_exit(pid)
            out = read_to_eof(r)
        finally:
            os.close(r)
        self.runtime.delete(cid)
        return code, out

    def refusal(self):
        """The runtime's error if it refuses to run this init, else None
        (tried once per combination)."""
        key = (self.init.name, self.runtime.name, getattr(self.runtime, "binary", ""))
        if key not in _REFUSALS:
            try:
                self.run(["true"])
                _REFUSALS[key] = None
            except errors.PalletError as e:
                _REFUSALS[key] = e
        return _REFUSALS[key]

    def cleanup(self) -> None:
        delete_all(self.runtime)


_REFUSALS: dict = {}


@pytest.fixture(params=COMBINATIONS, ids=[f"{i}+{r[0]}" for i, r in COMBINATIONS])
def setup(request, busybox_root):
    from pallet.core.paths import Paths

    init_plugin, (_id, runtime_plugin, runtime_section) = request.param
    base = tempfile.mkdtemp(prefix="inc-", dir="/tmp")
    paths = Paths(os.path.join(base, "data"), os.path.join(base, "exec"))
    kernel = kernel_for("init", init_plugin, paths,
                        fill={"runtime": (runtime_plugin, runtime_section)})
    s = Setup(kernel.provide("init"),
              kernel.provide("runtime").with_root(os.path.join(base, "state")), busybox_root, base)
    try:
        yield s
    finally:
        s.cleanup()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def running(setup):
    """A combination whose runtime runs the init (the others are skipped here:
    test_the_init_runs_or_is_refused_clearly checks their refusal)."""
    refusal = setup.refusal()
    if refusal is not None:
        pytest.skip(f"{setup.runtime.name} refuses {setup.init.name}: {refusal}")
    return setup


@pytest.fixture(params=implementations("init"))
def init(request, tmp_path):
    from pallet.core.paths import Paths

    kernel = kernel_for("init", request.param, Paths(str(tmp_path / "d"), str(tmp_path / "e")))
    return kernel.provide("init")
