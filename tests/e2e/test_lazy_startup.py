"""Command-line start-up stays lazy: the client and the runtime's CLI import
neither aiohttp nor grpc."""
import subprocess
import sys

import pytest

PROBE = """
import sys
sys.argv = {argv!r}
from {module} import main
try:
    main()
except SystemExit:
    pass
heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('aiohttp', 'grpc', 'google'))
print('HEAVY:' + ','.join(heavy))
"""


@pytest.mark.parametrize("module, argv", [
    ("pallet.client.docker", ["pallet", "--help"]),
    ("pallet.client.docker", ["pallet", "-H", "unix:///nonexistent/pallet.sock", "ps"]),
    ("pallet.commands.runc", ["pallet-runc", "--help"]),
])
def test_no_heavy_imports(module, argv):
    out = subprocess.run([sys.executable, "-c", PROBE.format(argv=argv, module=module)],
                         capture_output=True, text=True, timeout=60)
    line = [l for l in out.stdout.splitlines() if l.startswith("HEAVY:")]
    assert line, out.stdout + out.stderr
    assert line[0] == "HEAVY:", f"{argv} imported {line[0][6:]}"
