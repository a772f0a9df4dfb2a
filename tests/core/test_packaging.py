"""pyproject.toml lists every package of the repository (the layout is mapped
by hand with package-dir, so a new sub-package must be added there)."""
import os
import tomllib

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_every_package_is_listed():
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)
    setuptools = project["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    found = set()
    for prefix, top in setuptools["package-dir"].items():
        base = os.path.join(REPO, top)
        for d, subs, files in os.walk(base):
            subs[:] = [s for s in subs if s != "__pycache__"]
            if "__init__.py" in files:
                rel = os.path.relpath(d, base)
                found.add(prefix if rel == "." else f"{prefix}.{rel.replace(os.sep, '.')}")
    assert found - listed == set(), "add to pyproject.toml packages"
    assert listed - found == set(), "listed packages that do not exist"
