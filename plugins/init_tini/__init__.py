"""init_tini: a tini-like PID 1 for containers started with --init.

``init.py`` is the init (``run(argv, env)``), ``spec.py`` its part of the
OCI spec, ``plugin.py`` the wiring.
"""
