"""Registry: register / build / names, duplicate and unknown-name errors, plugin import."""

from __future__ import annotations

import sys

import pytest

from insightface_lr.errors import ConfigError, RegistryError
from insightface_lr.registry import Registry, import_plugins


def test_register_build_names() -> None:
    reg = Registry("widget")

    @reg.register("double")
    def double(x: int) -> int:
        return 2 * x

    @reg.register()
    class Triple:
        def __init__(self, x: int) -> None:
            self.value = 3 * x

    assert reg.names() == ["Triple", "double"]
    assert reg.build("double", 4) == 8
    assert reg.build("Triple", x=2).value == 6
    assert "double" in reg and "nope" not in reg


def test_duplicate_name_names_both_modules() -> None:
    reg = Registry("widget")
    reg.register("a")(lambda: 1)
    with pytest.raises(RegistryError) as info:
        reg.register("a")(lambda: 2)
    message = str(info.value)
    assert "registered twice" in message and message.count("test_registry") == 2


def test_reregistering_same_object_is_allowed() -> None:
    # importlib.reload of a plugin module re-runs the decorator on the same object: not a conflict
    reg = Registry("widget")

    def f() -> int:
        return 1

    reg.register("f")(f)
    reg.register("f")(f)
    assert reg.names() == ["f"]


def test_unknown_name_lists_known_and_suggests_closest() -> None:
    reg = Registry("loss")
    for name in ("aird", "ccface", "kd"):
        reg.register(name)(lambda: None)
    with pytest.raises(RegistryError) as info:
        reg.get("aidr")
    message = str(info.value)
    assert "Did you mean 'aird'?" in message
    assert "aird, ccface, kd" in message
    assert "plugins" in message  # tells the user a never-imported module never registers


def test_import_plugins_registers_user_code(tmp_path, monkeypatch) -> None:
    (tmp_path / "my_plugin_mod.py").write_text(
        "from insightface_lr.registry import Registry\nREG = Registry('thing')\n"
        "@REG.register('mine')\ndef mine():\n    return 42\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import_plugins(["my_plugin_mod"])
    assert sys.modules["my_plugin_mod"].REG.build("mine") == 42
    with pytest.raises(ConfigError, match="plugins.*no_such_module_xyz"):
        import_plugins(["no_such_module_xyz"])


def test_unknown_loss_message_spells_the_plural() -> None:
    from insightface_lr.errors import RegistryError
    from insightface_lr.registry import LOSSES, load_builtins

    load_builtins()
    with pytest.raises(RegistryError) as info:
        LOSSES.get("kdd")
    assert "Known losses: " in str(info.value) and "losss" not in str(info.value)
