"""Human-readable sizes and durations as docker/go-units prints and parses
them (``1.98MB``, ``23.54GiB``, ``About an hour``, ``512m``).

A library of its own, importing nothing, so that every process can use it,
pallet-runc's start-up included: :mod:`.size` and :mod:`.duration` follow
go-units' ``size.go`` and ``duration.go``.  Import the submodule you need;
this package imports neither.
"""
