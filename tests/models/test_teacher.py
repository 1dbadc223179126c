"""load_teacher / Teacher / save_student: arcface_torch files, DDP checkpoints, depth inference, bad files."""

from __future__ import annotations

import hashlib

import pytest
import torch
from torch import nn

from insightface_lr.atomic import atomic_path
from insightface_lr.errors import ConfigError, ModelLoadError
from insightface_lr.models.teacher import (
    Teacher,
    infer_embedding_size,
    infer_input_size,
    infer_network,
    load_student,
    load_teacher,
    save_student,
    state_dict_sha256,
)
from insightface_lr.models.weights import backbone_state_dict, load_weights_file
from insightface_lr.registry import BACKBONES


class TinyNet(nn.Module):
    """conv -> BN -> PReLU -> flatten -> linear -> BN1d, with the backbone attributes."""

    def __init__(self, input_size: int = 8, embedding_size: int = 6) -> None:
        super().__init__()
        self.input_size, self.embedding_size = input_size, embedding_size
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3, 2, 1), nn.BatchNorm2d(4), nn.PReLU(4), nn.Dropout(0.5))
        self.fc = nn.Linear(4 * (input_size // 2) ** 2, embedding_size)
        self.features = nn.BatchNorm1d(embedding_size)

    def forward(self, x):
        return self.features(self.fc(torch.flatten(self.body(x), 1)))


def _randomise_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    # non-trivial running statistics so that eval vs train mode and stat handling are visible
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(m.num_features, generator=g) * 0.2)
    return model


def _backbone(name: str, input_size: int = 16, embedding_size: int = 32) -> nn.Module:
    model = BACKBONES.build(name, embedding_size=embedding_size, input_size=input_size, dropout=0.0, fp16=False)
    return _randomise_bn(model).eval()


def _x(n: int = 3, size: int = 16, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


# --- Teacher wrapper -------------------------------------------------------------------------------------
def test_teacher_is_frozen_and_stays_in_eval_mode() -> None:
    net = _randomise_bn(TinyNet())
    teacher = Teacher(net)
    teacher.train()
    teacher.requires_grad_(True)
    assert not teacher.training and not net.training and not net.body[1].training
    assert all(not p.requires_grad for p in teacher.parameters())
    x = _x(4, 8)
    out = teacher(x)
    assert not out.requires_grad and out.shape == (4, 6)
    # reference: the same network in eval mode (running stats, no dropout), computed directly
    with torch.no_grad():
        assert torch.equal(out, net.eval()(x))
    assert teacher.embedding_size == 6 and teacher.input_size == 8


def test_teacher_rejects_wrong_input_shape() -> None:
    with pytest.raises(ValueError, match=r"\[B,3,8,8\]"):
        Teacher(TinyNet())(torch.zeros(2, 3, 16, 16))


def test_embedding_size_probed_when_module_has_no_attribute() -> None:
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 112 * 112, 5))
    assert Teacher(net).embedding_size == 5


def test_checksum_is_stable_and_tracks_the_weights() -> None:
    a, b = TinyNet(), TinyNet()
    b.load_state_dict(a.state_dict())
    assert Teacher(a).checksum == Teacher(b).checksum
    reordered = dict(reversed(list(a.state_dict().items())))
    assert state_dict_sha256(reordered) == state_dict_sha256(a.state_dict())
    with torch.no_grad():
        b.fc.weight[0, 0] += 1e-3
    assert Teacher(b).checksum != Teacher(a).checksum


# --- files: plain state dict, DDP checkpoint, depth inference --------------------------------------------
@pytest.fixture(scope="module")
def r18() -> nn.Module:
    return _backbone("r18")


def test_load_plain_state_dict_infers_depth_and_sizes(tmp_path, r18) -> None:
    path = tmp_path / "backbone.pth"
    torch.save(r18.state_dict(), path)
    teacher = load_teacher(path)
    assert type(teacher.model) is type(r18)
    assert (teacher.embedding_size, teacher.input_size) == (32, 16)
    x = _x()
    with torch.no_grad():
        assert torch.allclose(teacher(x), r18(x), atol=1e-6)
    assert teacher.checksum == hashlib.sha256(path.read_bytes()).hexdigest()


def test_load_ddp_checkpoint_with_module_prefix(tmp_path, r18) -> None:
    path = tmp_path / "checkpoint_gpu_0.pt"
    checkpoint = {
        "epoch": 3,
        "global_step": 1000,
        "state_dict_backbone": {f"module.{k}": v for k, v in r18.state_dict().items()},
        "state_dict_softmax_fc": {"weight": torch.zeros(10, 32)},
    }
    torch.save(checkpoint, path)
    teacher = load_teacher(path, network="r18")
    x = _x()
    with torch.no_grad():
        assert torch.allclose(teacher(x), r18(x), atol=1e-6)


def test_backbone_state_dict_finds_nested_model_key_and_strips_compile_prefix(tmp_path) -> None:
    path = tmp_path / "ckpt.pt"
    torch.save({"model": {"module._orig_mod.fc.weight": torch.ones(2, 2)}, "lr": 0.1}, path)
    assert list(backbone_state_dict(load_weights_file(path), path)) == ["fc.weight"]


@pytest.mark.parametrize(
    ("name", "blocks"),
    [("r18", (2, 2, 2, 2)), ("r34", (3, 4, 6, 3)), ("r50", (3, 4, 14, 3)), ("r100", (3, 13, 30, 3)),
     ("r200", (6, 26, 60, 6))],
)
def test_infer_network_counts_blocks_per_stage(name, blocks) -> None:
    # key-only dicts (the real r200 is 250 MB): the count, not the tensors, decides the depth
    keys = {f"layer{s + 1}.{b}.bn1.weight": torch.zeros(1) for s, n in enumerate(blocks) for b in range(n)}
    keys["conv1.weight"] = torch.zeros(1)
    assert infer_network(keys) == name


def test_infer_network_on_real_backbones() -> None:
    assert infer_network(_backbone("r18").state_dict()) == "r18"
    mbf = _backbone("mbf")
    assert infer_network(mbf.state_dict()) == "mbf"
    assert infer_embedding_size(mbf.state_dict()) == 32 and infer_input_size(mbf.state_dict()) == 16
    assert infer_input_size(_backbone("r18", input_size=112, embedding_size=8).state_dict()) == 112


def test_infer_network_unknown_layout_names_the_file() -> None:
    keys = {"layer1.0.bn1.weight": torch.zeros(1), "layer2.4.bn1.weight": torch.zeros(1)}
    with pytest.raises(ModelLoadError, match=r"my\.pth.*\[1, 5, 0, 0\].*network="):
        infer_network(keys, source="my.pth")


def test_load_mbf_from_state_dict(tmp_path) -> None:
    mbf = _backbone("mbf")
    path = tmp_path / "mbf.pth"
    torch.save(mbf.state_dict(), path)
    teacher = load_teacher(path)
    x = _x()
    with torch.no_grad():
        assert torch.allclose(teacher(x), mbf(x), atol=1e-5)


# --- bad files ---------------------------------------------------------------------------------------------
def test_garbage_file_raises_model_load_error_naming_it(tmp_path) -> None:
    path = tmp_path / "broken.pth"
    path.write_bytes(b"this is not a torch file")
    with pytest.raises(ModelLoadError, match="broken.pth"):
        load_teacher(path)


def test_missing_file(tmp_path) -> None:
    with pytest.raises(ModelLoadError, match="no such weights file"):
        load_teacher(tmp_path / "nope.pth")


class _Evil:
    def __reduce__(self):
        return (print, ("pickle code ran",))


def test_arbitrary_pickle_is_refused(tmp_path, capsys) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": _Evil()}, path)
    with pytest.raises(ModelLoadError, match="evil.pth.*weights_only"):
        load_teacher(path)
    assert "pickle code ran" not in capsys.readouterr().out


def test_dict_without_state_dict(tmp_path) -> None:
    path = tmp_path / "meta.pt"
    torch.save({"epoch": 1, "optimizer": {"lr": 0.1}}, path)
    with pytest.raises(ModelLoadError, match=r"meta.pt: no backbone state dict.*\['epoch', 'optimizer'\]"):
        load_teacher(path)


def test_mismatched_keys_name_file_and_keys(tmp_path, r18) -> None:
    state = dict(r18.state_dict())
    del state["layer1.0.bn1.running_mean"]
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "partial.pth"
    torch.save(state, path)
    with pytest.raises(ModelLoadError, match=r"partial.pth.*layer1\.0\.bn1\.running_mean.*extra\.weight"):
        load_teacher(path, network="r18")


def test_shape_mismatch_names_file(tmp_path, r18) -> None:
    path = tmp_path / "r18.pth"
    torch.save(r18.state_dict(), path)
    with pytest.raises(ModelLoadError, match=r"r18.pth \(r18\).*size mismatch"):
        load_teacher(path, embedding_size=64)


# --- student files ---------------------------------------------------------------------------------------
def test_save_and_load_student_round_trip(tmp_path) -> None:
    student = _randomise_bn(BACKBONES.build("bridge_student", embedding_size=16, input_size=16)).eval()
    path = save_student(tmp_path / "student.pt", student, {"epoch": 2, "sizes": [16, 24]}, network="bridge_student")
    raw = torch.load(path, weights_only=True)
    assert raw["network"] == "bridge_student" and raw["kwargs"]["embedding_size"] == raw["kwargs"]["input_size"] == 16
    model, meta = load_student(path)
    assert meta == {"epoch": 2, "sizes": [16, 24]} and not model.training
    x = _x()
    with torch.no_grad():
        assert torch.equal(model(x), student(x))
    assert torch.equal(load_teacher(path)(x), model(x))  # a student file can teach too
    assert not list(tmp_path.glob(".*.tmp"))


def test_save_student_needs_network_and_plain_meta(tmp_path) -> None:
    with pytest.raises(ConfigError, match="network="):
        save_student(tmp_path / "a.pt", TinyNet())
    with pytest.raises(ConfigError, match=r"meta\.when is a object"):
        save_student(tmp_path / "a.pt", TinyNet(), {"when": object()}, network="x")
    assert not (tmp_path / "a.pt").exists()


def test_load_student_refuses_a_backbone_file(tmp_path, r18) -> None:
    path = tmp_path / "backbone.pth"
    torch.save({"fc.weight": torch.zeros(1)}, path)
    with pytest.raises(ModelLoadError, match="backbone.pth: not an insightface-lr student"):
        load_student(path)


def test_atomic_path_leaves_nothing_on_failure(tmp_path) -> None:
    target = tmp_path / "out.bin"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "old" and list(tmp_path.iterdir()) == [target]
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new" and list(tmp_path.iterdir()) == [target]
