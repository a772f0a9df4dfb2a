"""pallet.units.size against the strings docker, go-units and containerd print
(go-units' own size_test.go cases, docker's columns, ctr's counters)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from pallet.units.size import bytes_size, human_size, progress_bytes, ram_in_bytes

KB, MB, GB, TB, PB = (1000 ** n for n in range(1, 6))
KiB, MiB, GiB, TiB, PiB = (1024 ** n for n in range(1, 6))


@pytest.mark.parametrize("size,text", [
    # go-units' TestHumanSize (HumanSize: 4 significant digits)
    (1000, "1kB"), (1024, "1.024kB"), (1000000, "1MB"), (1048576, "1.049MB"), (2 * MB, "2MB"),
    (3.42 * GB, "3.42GB"), (5.372 * TB, "5.372TB"), (2.22 * PB, "2.22PB"),
    (10000000000000 * PB, "1e+04YB"),
    # docker pull/push progress, system df, cp, build context
    (0, "0B"), (999, "999B"), (1087923, "1.088MB"), (2140160, "2.14MB"), (1984234, "1.984MB"),
    (999999, "1000kB"),
])
def test_human_size(size, text):
    assert human_size(size) == text


@pytest.mark.parametrize("size,text", [
    # docker's images / ps --size / volume ls / stats columns: precision 3
    (0, "0B"), (999, "999B"), (1000, "1kB"), (1984234, "1.98MB"), (999999, "1e+03kB"),
    (5 * GB, "5GB"), (4_860_000, "4.86MB"),
])
def test_human_size_precision_3(size, text):
    assert human_size(size, 3) == text


@pytest.mark.parametrize("size,text", [
    # go-units' TestBytesSize, docker info's Total Memory, docker stats' MEM USAGE
    (1024, "1KiB"), (1024 * 1024, "1MiB"), (2 * MiB, "2MiB"), (3.42 * GiB, "3.42GiB"),
    (5.372 * TiB, "5.372TiB"), (2.22 * PiB, "2.22PiB"),
    (KiB * KiB * KiB * KiB * KiB * PiB, "1.049e+06YiB"), (0, "0B"), (1023, "1023B"),
])
def test_bytes_size(size, text):
    assert bytes_size(size) == text


@pytest.mark.parametrize("size,text", [
    # ctr pull's "total:" and images ls' SIZE (containerd's progress.Bytes)
    (0, "0.0 B"), (1023, "1023.0 B"), (1024, "1.0 KiB"), (1536, "1.5 KiB"),
    (772 * KiB + 100, "772.1 KiB"), (3 * GiB, "3.0 GiB"),
])
def test_progress_bytes(size, text):
    assert progress_bytes(size) == text


@pytest.mark.parametrize("text,n", [
    # go-units' TestRAMInBytes
    ("32", 32), ("32b", 32), ("32B", 32), ("32k", 32 * KiB), ("32K", 32 * KiB),
    ("32kb", 32 * KiB), ("32Kb", 32 * KiB), ("32Mb", 32 * MiB), ("32Gb", 32 * GiB),
    ("32Tb", 32 * TiB), ("32Pb", 32 * PiB), ("32PB", 32 * PiB), ("32P", 32 * PiB),
    ("32.3", 32), ("32.3 mb", int(32.3 * MiB)),
    # the v0.4 expression: an optional "i" on its own, one space
    ("512m", 512 * MiB), ("1.5 GiB", 3 << 29), ("64ki", 64 * KiB), ("7i", 7),
])
def test_ram_in_bytes(text, n):
    assert ram_in_bytes(text) == n


@pytest.mark.parametrize("text", [
    "", "hello", "-32", " 32 ", "32m b", "32bm", "1.", ".5", "32  m", "32\n", "\u0663m", "1e3",
])
def test_ram_in_bytes_refuses(text):
    with pytest.raises(ValueError, match=r"^invalid size: '%s'$" % text.replace(".", r"\.")):
        ram_in_bytes(text)


def test_ram_in_bytes_several_dots_fail_in_strconv():
    # go-units' expression takes "1.2.3"; Go's float parser then refuses it
    with pytest.raises(ValueError) as e:
        ram_in_bytes("1.2.3m")
    assert str(e.value) == 'strconv.ParseFloat: parsing "1.2.3": invalid syntax'


def test_imports_nothing():
    """pallet-runc update parses its sizes here: the module must stay free of
    re, json, enum and the rest its start-up avoids."""
    code = ("import sys\n"
            "for m in ('re', 'json', 'enum', 'typing', 'logging'): sys.modules[m] = None\n"
            "import pallet.units.size, pallet.units.duration\n"
            "print(pallet.units.size.ram_in_bytes('1k'))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout == "1024\n"
