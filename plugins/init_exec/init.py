"""An init that is a binary on the host, put in front of the container's
process as dockerd does for ``--init`` (moby's ``WithInit``: the binary
bind-mounted read-only at ``/sbin/docker-init``, and ``process.args``
becoming ``/sbin/docker-init -- ARGS...``).

It works with any runtime, since the spec asks for nothing but a bind
mount.  The binary must be static: it runs inside the container's root,
where the host's libraries are not.
"""
from __future__ import annotations

import os

from pallet.core import errors

DEFAULT_BINARY = "/usr/bin/tini-static"
#: where dockerd mounts its docker-init
TARGET = "/sbin/docker-init"


class ExecInit:
    """The object of the ``init`` role (``pallet.core.contracts.Init``)."""

    name = "init_exec"

    def __init__(self, binary: str = DEFAULT_BINARY):
        self.binary = binary

    def host_path(self) -> str:
        """The binary on the host (looked up on PATH for a bare name, as
        dockerd looks up docker-init); ``ConfigError`` if it is not there."""
        if "/" not in self.binary:
            for d in (os.environ.get("PATH") or "/usr/local/bin:/usr/bin:/bin").split(":"):
                path = os.path.join(d or ".", self.binary)
                if os.path.isfile(path) and os.access(path, os.X_OK):
                    return path
        elif os.path.isfile(self.binary) and os.access(self.binary, os.X_OK):
            return os.path.abspath(self.binary)
        raise errors.ConfigError(
            f"init_exec: init binary {self.binary}: no such executable file (install Debian's "
            "tini for /usr/bin/tini-static, or set [plugins.init_exec] binary)")

    def prepare_spec(self, spec: dict) -> None:
        """Bind-mount the binary at /sbin/docker-init and run the process under
        it (``docker-init -- ARGS``); a second call changes nothing."""
        source = self.host_path()
        mounts = spec.setdefault("mounts", [])
        if not any(m.get("destination") == TARGET for m in mounts):
            mounts.append({"destination": TARGET, "type": "bind", "source": source,
                           "options": ["bind", "ro"]})
        process = spec.setdefault("process", {})
        args = list(process.get("args") or [])
        if args[:1] != [TARGET]:
            process["args"] = [TARGET, "--"] + args

    def run(self, argv, env):
        """Not an in-process init: the runtime execs the binary."""
        raise errors.NotImplementedYet(
            f"init_exec runs {self.binary} as the container's PID 1; it has no in-process init")
