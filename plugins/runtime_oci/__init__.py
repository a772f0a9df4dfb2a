"""runtime_oci: the ``runtime`` role filled by any OCI runtime binary (runc,
crun, pallet-runc), driven through runc's command line.

Modules: ``command`` (running the binary, collecting its output and its
error message, classifying that message as a core error class),
``runtime`` (``OciRuntime``: runc's verbs as the contract's methods),
``plugin`` (wiring).  Nothing is imported here so that ``plugin.py`` stays
cheap to load.
"""
