"""Registry: register / build / names, duplicate and unknown-name errors, plugin import."""

from __future__ import annotations

import subprocess
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


def test_registry_imports_its_builtin_modules_on_first_miss(tmp_path) -> None:
    (tmp_path / "builtin_widgets_mod.py").write_text(
        "from insightface_lr.registry import REG_UNDER_TEST\nREG_UNDER_TEST.register('w')(lambda: 7)\n"
    )
    import insightface_lr.registry as registry

    registry.REG_UNDER_TEST = Registry("widget", ("builtin_widgets_mod",))
    sys.path.insert(0, str(tmp_path))
    try:
        assert "builtin_widgets_mod" not in sys.modules
        assert registry.REG_UNDER_TEST.build("w") == 7  # the miss imported the module
        with pytest.raises(RegistryError, match="Known widgets: w"):
            registry.REG_UNDER_TEST.get("nope")
    finally:
        sys.path.remove(str(tmp_path))
        del registry.REG_UNDER_TEST


FRESH_INTERPRETER = """
import sys
from insightface_lr.registry import BACKBONES, HEADS, LOSSES
assert "insightface_lr.models" not in sys.modules  # importing the registry loads nothing
net = BACKBONES.build("r50", embedding_size=8, input_size=16)
assert net.embedding_size == 8 and "aird" in LOSSES and HEADS.get("arcface")
import insightface_lr.models
assert insightface_lr.models.BACKBONES.build("mbf", input_size=16).input_size == 16
from insightface_lr.models import get_backbone
assert get_backbone("r18", input_size=16).input_size == 16
print("ok")
"""


@pytest.mark.parametrize("first", ["registry", "models", "get_backbone"])
def test_backbones_build_in_a_fresh_interpreter(first: str) -> None:
    source = {
        "registry": FRESH_INTERPRETER,
        "models": "import insightface_lr.models as m\nassert m.BACKBONES.build('r50', input_size=16)\nprint('ok')",
        "get_backbone": "from insightface_lr.models import get_backbone\n"
                        "assert get_backbone('r50', input_size=16)\nprint('ok')",
    }[first]
    result = subprocess.run([sys.executable, "-c", source], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_unknown_loss_message_spells_the_plural() -> None:
    from insightface_lr.errors import RegistryError
    from insightface_lr.registry import LOSSES

    with pytest.raises(RegistryError) as info:
        LOSSES.get("kdd")
    assert "Known " in str(info.value) and "losss" not in str(info.value)
