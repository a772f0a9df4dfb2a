"""The ``init`` role's contract (``pallet.core.contracts.Init``) against every
installed init (init_tini, init_exec), each under every installed runtime:
PID 1 is the init, which runs the command as its child, forwards signals,
reaps orphans and exits with the command's status -- or the runtime refuses
the spec with an error naming the fix.  ``--init`` never silently does nothing."""
from __future__ import annotations

import copy
import os
import signal

import pytest

from contract_helpers import bundle_spec, kernel_for, wait_exit
from pallet.core import contracts, errors

pytestmark = pytest.mark.root

#: per init: a configuration under which it cannot work (prepare_spec must say so)
BROKEN = {"init_exec": {"binary": "/no/such/init"}, "init_tini": {"init_path": "/no/such/init"}}


def test_fills_the_contract(init):
    assert isinstance(init, contracts.Init)
    assert isinstance(init.name, str) and init.name


def test_prepare_spec_twice_changes_nothing(init):
    spec = bundle_spec("/rootfs", ["sh", "-c", "true"])
    init.prepare_spec(spec)
    once = copy.deepcopy(spec)
    init.prepare_spec(spec)
    assert spec == once


def test_run_is_an_init_or_not_implemented(init):
    """``run`` becomes the init of argv in this process (exit status passed
    on), or says NotImplementedYet for an init that only runs as a binary."""
    child = os.fork()
    if child == 0:
        code = 223
        try:
            init.run(["sh", "-c", "exit 5"], {"PATH": "/bin:/usr/bin"})
        except errors.NotImplementedYet:
            code = 222
        finally:
            os._exit(code)
    assert wait_exit(child) in (5, 222)


def test_a_configuration_it_cannot_use_is_a_config_error(init, tmp_path):
    broken = BROKEN.get(init.name)
    if broken is None:
        pytest.skip(f"no broken configuration known for {init.name}")
    from pallet.core.paths import Paths

    kernel = kernel_for("init", init.name, Paths(str(tmp_path / "d"), str(tmp_path / "e")),
                        broken)
    with pytest.raises(errors.ConfigError, match="/no/such/init"):
        kernel.provide("init").prepare_spec(bundle_spec("/rootfs", ["true"]))


def test_the_init_runs_or_is_refused_clearly(setup):
    """PID 1 is the init and the exit status the command's; or create fails,
    naming the role to configure, and leaves nothing behind."""
    refusal = setup.refusal()
    if refusal is not None:
        assert isinstance(refusal, errors.InvalidArgument), refusal
        assert "[roles] init" in refusal.message, refusal.message
        assert setup.runtime.list() == []
        return
    code, out = setup.run(["sh", "-c", "echo $$; exit 3"])
    assert code == 3
    assert out.strip() != b"1", "the command is PID 1: it runs without the init"


def test_signals_are_forwarded_to_the_command(running):
    # sleep has no handler: as PID 1 it would ignore SIGTERM (pid_namespaces(7))
    cid, pid, r = running.create(["sh", "-c", "echo up; exec sleep 1000"])
    try:
        running.runtime.start(cid)
        assert os.read(r, 100) == b"up\n"
        running.runtime.kill(cid, signal.SIGTERM)
        assert wait_exit(pid) == 128 + signal.SIGTERM
    finally:
        os.close(r)
    running.runtime.delete(cid)


def test_orphans_are_reaped(running):
    code, out = running.run(["sh", "-c", "(sleep 0.1 &); sleep 0.8; cat /proc/[0-9]*/stat"])
    assert code == 0
    states = [line.rpartition(b")")[2].split()[0] for line in out.splitlines() if b")" in line]
    assert states and b"Z" not in states, out
