"""init_exec: the ``init`` role filled by an external static init binary
(Debian's tini-static by default), bind-mounted into the container as
dockerd's ``--init-path`` does.

``init.py`` is the role's object (its part of the OCI spec), ``plugin.py``
the wiring.
"""
