"""Configuration parsing and role resolution (pure logic)."""
import pytest

from pallet.core import hookspecs
from pallet.core.config import Config
from pallet.core.errors import ConfigError
from pallet.commands.palletd import format_plugin_table
from pallet.core.kernel import PluginInfo, discover, resolve_roles


def _found(extra=()):
    found = {name: PluginInfo(name, role, "pallet", "0", None)
             for role, name in hookspecs.ROLES.items()}
    for p in extra:
        found[p.name] = p
    return found


def test_defaults_fill_every_role():
    assert resolve_roles(Config(), _found()) == hookspecs.ROLES


def test_alternative_plugin_is_chosen():
    alt = PluginInfo("runtime_alt", "runtime", "other", "1", None)
    cfg = Config.from_toml('[roles]\nruntime = "runtime_alt"\n')
    assert resolve_roles(cfg, _found([alt]))["runtime"] == "runtime_alt"


@pytest.mark.parametrize("toml, needle", [
    ('[roles]\nruntime = ""\n', "role runtime is left empty; installed candidates: [runtime_ns]"),
    ('[roles]\nruntime = []\n', "role runtime is left empty"),
    ('[roles]\nruntime = ["runtime_ns", "x"]\n', "role runtime is filled twice"),
    ('[roles]\nruntime = "crun"\n', "role runtime: configured crun, which is not installed; "
                                    "installed candidates: [runtime_ns]"),
    ('[roles]\nruntime = "store_overlay"\n', "fills role image_store"),
    ('[roles]\nwarp = "x"\n', "unknown role warp"),
])
def test_bad_roles_are_refused_with_one_line(toml, needle):
    with pytest.raises(ConfigError) as e:
        resolve_roles(Config.from_toml(toml), _found())
    assert needle in str(e.value)
    assert "\n" not in str(e.value)


def test_bad_toml_and_missing_explicit_file(tmp_path):
    with pytest.raises(ConfigError, match="parse configuration"):
        Config.from_toml("[roles\n")
    with pytest.raises(ConfigError, match="no such file"):
        Config.load(str(tmp_path / "absent.toml"))


def test_plugin_sections_and_disabled(tmp_path):
    p = tmp_path / "pallet.toml"
    p.write_text('[plugins]\ndisabled = ["hello"]\n[plugins.init_tini]\ninit_path = "/x"\n')
    cfg = Config.load(str(p))
    assert cfg.disabled == ("hello",)
    section = cfg.plugin_section("init_tini")
    section["init_path"] = "changed"  # a fresh copy: the config stays read-only
    assert cfg.plugin_section("init_tini") == {"init_path": "/x"}
    assert cfg.plugin_section("absent") == {}


def test_builtin_plugins_are_found_through_entry_points():
    found = discover()
    for role, name in hookspecs.ROLES.items():
        assert found[name].role == role
        assert found[name].distribution == "pallet"
    table = format_plugin_table(found)
    assert table.splitlines()[0].split() == ["NAME", "ROLE", "DISTRIBUTION", "VERSION"]
    assert "runtime_ns" in table


def test_kernel_loads_with_default_and_configured_roots(tmp_path):
    from pallet.core.kernel import Kernel

    kernel = Kernel.load(Config(), roles=("init",))
    assert (kernel.paths.data_root, kernel.paths.exec_root) == ("/var/lib/pallet", "/run/pallet")
    cfg = Config.from_toml(f'[daemon]\ndata-root = "{tmp_path}/d"\nexec-root = "{tmp_path}/r"\n')
    kernel = Kernel.load(cfg, roles=("init",))
    assert kernel.paths.containerd_socket == f"{tmp_path}/r/containerd/containerd.sock"
    assert kernel.has_role("init") and not kernel.has_role("runtime")
    assert hasattr(kernel.provide("init"), "run")
