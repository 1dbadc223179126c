"""Why a torch.load failed, in one line, never with torch's advice to retry with weights_only=False."""

from __future__ import annotations

import io
import pickle

import pytest
import torch

from insightface_lr.errors import ModelLoadError, torch_load_error_text


class _RunsCode:
    def __reduce__(self):
        return (print, ("this would run on load",))


def _files(tmp_path) -> dict[str, bytes]:
    good = io.BytesIO()
    torch.save({"w": torch.ones(3)}, good)
    unsafe = io.BytesIO()
    torch.save({"w": torch.ones(3), "x": _RunsCode()}, unsafe)
    data = good.getvalue()
    return {"random": bytes(range(256)) * 20, "text": b"this is not a zip file" * 20, "empty": b"",
            "truncated": data[: len(data) // 2], "pickle": pickle.dumps(_RunsCode()), "unsafe": unsafe.getvalue()}


@pytest.mark.parametrize("name", ["random", "text", "empty", "truncated", "pickle", "unsafe"])
def test_one_line_without_weights_only_false(tmp_path, name: str) -> None:
    from insightface_lr.models.teacher import load_weights_file

    path = tmp_path / f"{name}.pt"
    path.write_bytes(_files(tmp_path)[name])
    with pytest.raises(ModelLoadError) as info:
        load_weights_file(path)
    text = str(info.value)
    assert text.startswith(f"{path}: ") and "\n" not in text
    assert "weights_only=False" not in text and "weights_only` set to `False" not in text


def test_texts_by_kind() -> None:
    assert "empty or cut short" in torch_load_error_text(EOFError())
    assert "refused because unpickling them can run code" in torch_load_error_text(pickle.UnpicklingError("x"))
    zip_error = RuntimeError("PytorchStreamReader failed reading zip archive: failed finding central directory. "
                             "This is an internal miniz error.\nmore")
    assert torch_load_error_text(zip_error) == (
        "a damaged torch.save archive (truncated or corrupt: PytorchStreamReader failed reading zip archive: "
        "failed finding central directory)")
