"""Build arguments as dockerd's builder tracks them: ``--build-arg`` values,
the ARGs a stage declared (with their defaults), the ARGs before the first
FROM (meta args, for FROM lines and as defaults), and the predefined proxy
arguments, usable without an ARG and kept out of the cache key unless
declared."""
from __future__ import annotations

from typing import Mapping

from pallet.plugins.builder_dockerfile.instructions import PROXY_ARGS


class BuildArgs:
    """One stage's view of the build arguments."""

    def __init__(self, from_options: Mapping[str, str | None] | None = None):
        self.from_options: dict[str, str | None] = dict(from_options or {})
        self.allowed: dict[str, str | None] = {}
        self.meta: dict[str, str | None] = {}
        self.referenced: set[str] = set()

    def clone(self) -> "BuildArgs":
        out = BuildArgs(self.from_options)
        out.allowed = dict(self.allowed)
        out.meta = dict(self.meta)
        out.referenced = set(self.referenced)
        return out

    def for_stage(self) -> "BuildArgs":
        """A new stage's arguments: none allowed until it declares them (the
        meta args stay as defaults)."""
        out = self.clone()
        out.allowed = {}
        return out

    def add_arg(self, key: str, value: str | None) -> None:
        self.allowed[key] = value
        self.referenced.add(key)

    def add_meta_arg(self, key: str, value: str | None) -> None:
        self.meta[key] = value

    def merge_referenced(self, other: "BuildArgs") -> None:
        self.referenced |= other.referenced

    def is_referenced_or_not_builtin(self, key: str) -> bool:
        return key in self.referenced or key not in PROXY_ARGS

    def _get(self, key: str, mapping: Mapping[str, str | None]) -> tuple[str, bool]:
        exists = key in mapping
        default = mapping.get(key)
        if self.from_options.get(key) is not None:
            return self.from_options[key], True
        if default is None:
            if self.meta.get(key) is not None:
                return self.meta[key], True
            return "", False
        return default, exists

    def _all(self, mapping: Mapping[str, str | None]) -> dict[str, str]:
        out = {}
        for key in {*mapping, *PROXY_ARGS}:
            value, ok = self._get(key, mapping)
            if ok:
                out[key] = value
        return out

    def all_allowed(self) -> dict[str, str]:
        """Every argument a stage may use, with its value."""
        return self._all(self.allowed)

    def all_meta(self) -> dict[str, str]:
        """The arguments a FROM line may use."""
        return self._all(self.meta)

    def filter_allowed(self, env) -> list[str]:
        """``KEY=value`` of the allowed arguments the environment does not set."""
        keys = {e.partition("=")[0] for e in env or ()}
        return [f"{k}={v}" for k, v in sorted(self.all_allowed().items()) if k not in keys]

    def unused(self) -> list[str]:
        """The ``--build-arg``s no ARG took (the proxy ones never count)."""
        return sorted(k for k in self.from_options
                      if k not in self.referenced and k not in PROXY_ARGS)
