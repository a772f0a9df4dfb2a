"""Image references are normalised as docker normalises them."""
import pytest

from pallet.core.errors import InvalidArgument
from pallet.distribution.reference import Reference, familiar_name

D = "sha256:" + "ab" * 32


@pytest.mark.parametrize("text, full, familiar", [
    ("busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("busybox:1.36", "docker.io/library/busybox:1.36", "busybox:1.36"),
    ("library/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("user/app", "docker.io/user/app:latest", "user/app:latest"),
    ("index.docker.io/user/app:v1", "docker.io/user/app:v1", "user/app:v1"),
    ("localhost/app", "localhost/app:latest", "localhost/app:latest"),
    ("localhost:5000/a/b:t", "localhost:5000/a/b:t", "localhost:5000/a/b:t"),
    ("127.0.0.1:5000/app", "127.0.0.1:5000/app:latest", "127.0.0.1:5000/app:latest"),
    (f"busybox@{D}", f"docker.io/library/busybox@{D}", f"busybox@{D}"),
    (f"busybox:1@{D}", f"docker.io/library/busybox:1@{D}", f"busybox:1@{D}"),
])
def test_normalised(text, full, familiar):
    ref = Reference.parse(text)
    assert str(ref) == full
    assert ref.familiar == familiar
    assert familiar_name(full) == familiar


@pytest.mark.parametrize("text, message", [
    ("", "invalid reference format"),
    ("Busybox", "repository name (Busybox) must be lowercase"),
    ("busy box", "invalid reference format"),
    ("busybox:", "invalid reference format"),
    ("a" * 64, "cannot specify 64-byte hexadecimal strings"),
    ("busybox@sha256:xyz", "invalid reference format"),
])
def test_invalid(text, message):
    with pytest.raises(InvalidArgument) as e:
        Reference.parse(text)
    assert message in str(e.value)
