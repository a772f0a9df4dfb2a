"""The OCI runtime spec as data: the default spec ``runc spec`` writes (and
its rootless form), the mounts and paths every Linux container gets, and
JSON reading and writing that needs neither ``json`` nor ``re`` (command-line
start-up time) and writes what Go's encoding/json writes.

Shared by the runtime plugins, ``pallet-runc`` and the engine library, so
that one default spec exists.  Imports only the standard library.
"""
