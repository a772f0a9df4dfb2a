"""Regenerate the Python modules of every .proto file under proto/.

Run with the project's interpreter (``make proto``)::

    .venv/bin/python proto/generate.py

The .proto sources keep containerd's own import paths (``containerd/...``,
``google/rpc/...``, ``ttrpc.proto``) so that their descriptors carry the same
package and message names as containerd's; the generated modules are then
moved into the ``pallet.proto`` namespace by rewriting their imports,
and every generated directory gets an ``__init__.py``.

Needs grpcio-tools; the generated code checks at import time that the
protobuf runtime is at least as new as the protoc bundled with grpcio-tools,
so pin grpcio-tools to a release whose protoc is not newer than the installed
protobuf (grpcio-tools 1.85.1 bundles protoc 35.1 -> protobuf >= 7.35.1).
"""
from __future__ import annotations

import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGE = "pallet.proto"
# top-level proto packages that live inside pallet.proto once generated
LOCAL_ROOTS = ("containerd", "cri", "google.rpc", "ttrpc_pb2")
SKIP_DIRS = {"__pycache__"}


def proto_files(root: str = HERE) -> list[str]:
    """Every .proto file under ``root``, relative to it, sorted."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        for name in filenames:
            if name.endswith(".proto"):
                found.append(os.path.relpath(os.path.join(dirpath, name), root))
    return sorted(found)


def _rewrite_imports(text: str) -> str:
    """Point the generated imports of local protos at ``pallet.proto``."""
    def repl_from(m: re.Match) -> str:
        module = m.group(2)
        if any(module == r or module.startswith(r + ".") for r in LOCAL_ROOTS):
            return f"{m.group(1)}from {PACKAGE}.{module} import"
        return m.group(0)

    text = re.sub(r"^(\s*)from ([\w.]+) import", repl_from, text, flags=re.M)
    # a proto at the top of the tree is imported as "import ttrpc_pb2 as ..."
    text = re.sub(r"^(\s*)import (ttrpc_pb2)( as \w+)?$",
                  lambda m: f"{m.group(1)}from {PACKAGE} import {m.group(2)}{m.group(3) or ''}",
                  text, flags=re.M)
    return text


def generate(root: str = HERE) -> list[str]:
    """Run protoc over every proto, rewrite imports, add ``__init__.py`` files.

    Returns the list of Python packages (dotted) that hold generated code.
    """
    import grpc_tools
    from grpc_tools import protoc

    protos = proto_files(root)
    if not protos:
        raise SystemExit(f"no .proto files under {root}")
    well_known = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    args = ["grpc_tools.protoc", f"-I{root}", f"-I{well_known}",
            f"--python_out={root}", f"--pyi_out={root}", f"--grpc_python_out={root}", *protos]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")

    packages = set()
    for proto in protos:
        base = os.path.join(root, proto[:-len(".proto")])
        for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py"):
            path = base + suffix
            if not os.path.exists(path):
                continue
            with open(path) as f:
                text = f.read()
            new = _rewrite_imports(text)
            if new != text:
                with open(path, "w") as f:
                    f.write(new)
        # every directory between root and the proto needs an __init__.py
        d = os.path.dirname(proto)
        while d:
            init = os.path.join(root, d, "__init__.py")
            if not os.path.exists(init):
                with open(init, "w") as f:
                    f.write("")
            packages.add(PACKAGE + "." + d.replace(os.sep, "."))
            d = os.path.dirname(d)
    return sorted(packages)


def main() -> None:
    packages = generate(HERE)
    print(f"generated {len(proto_files(HERE))} protos; packages:")
    for p in packages:
        print(f"  {p}")


if __name__ == "__main__":
    sys.exit(main())
