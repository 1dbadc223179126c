"""models/model_path.py: the one rule for "which model does this path name"."""

from __future__ import annotations

import pytest

from insightface_lr.errors import ConfigError
from insightface_lr.models.model_path import check_model_path, is_onnx_model, model_kind


def test_every_accepted_model_path_has_its_kind(tmp_path) -> None:
    (tmp_path / "backbone.pth").write_bytes(b"x")
    (tmp_path / "m.onnx").write_bytes(b"x")
    package = tmp_path / "package"
    package.mkdir()
    mx = tmp_path / "mx"
    mx.mkdir()
    (mx / "model-symbol.json").write_text("{}")
    (mx / "model-0000.params").write_bytes(b"x")
    kinds = {p: model_kind(tmp_path / p) for p in ("backbone.pth", "m.onnx", "package", "mx", "mx/model",
                                                   "mx/model-symbol.json", "mx/model-0000.params", "nope.pth")}
    assert kinds == {"backbone.pth": "torch", "m.onnx": "onnx", "package": "onnx_package", "mx": "mxnet",
                     "mx/model": "mxnet", "mx/model-symbol.json": "mxnet", "mx/model-0000.params": "mxnet",
                     "nope.pth": None}
    assert is_onnx_model(tmp_path / "m.onnx") and not is_onnx_model(mx / "model")


def test_a_missing_model_is_one_line_naming_the_field(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"^field `x`: .*nope does not exist \(expected 'teacher' or a backbone"):
        check_model_path(tmp_path / "nope", "field `x`", also="'teacher'")
