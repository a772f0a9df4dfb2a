"""An init that is a binary on the host, put in front of the container's
process as dockerd does for ``--init`` (moby's ``WithInit``: the binary
bind-mounted read-only at ``/sbin/docker-init``, and ``process.args``
becoming ``/sbin/docker-init -- ARGS...``).

It works with any runtime, since the spec asks for nothing but a bind
mount (``pallet.engine.spec.with_init_binary``, dockerd's way).  The
binary must be static: it runs inside the container's root, where the
host's libraries are not.
"""
from __future__ import annotations

import os

from pallet.core import errors

DEFAULT_BINARY = "/usr/bin/tini-static"


class ExecInit:
    """The object of the ``init`` role (``pallet.core.contracts.Init``)."""

    name = "init_exec"

    def __init__(self, binary: str = DEFAULT_BINARY):
        self.binary = binary

    def host_path(self) -> str:
        """The binary on the host (a bare name is looked up on PATH, as dockerd
        looks up docker-init); ``ConfigError`` if it is not there."""
        import shutil

        path = shutil.which(self.binary)
        if path is None:
            raise errors.ConfigError(
                f"init_exec: init binary {self.binary}: no such executable file (install "
                "Debian's tini for /usr/bin/tini-static, or set [plugins.init_exec] binary)")
        return os.path.abspath(path)

    def prepare_spec(self, spec: dict) -> None:
        """Bind-mount the binary at /sbin/docker-init and run the process under
        it (``docker-init -- ARGS``); a second call changes nothing."""
        from pallet.engine.spec import with_init_binary

        with_init_binary(spec, self.host_path())

    def run(self, argv, env):
        """Not an in-process init: the runtime execs the binary."""
        raise errors.NotImplementedYet(
            f"init_exec runs {self.binary} as the container's PID 1; it has no in-process init")
