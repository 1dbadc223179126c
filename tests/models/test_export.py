"""ONNX export that insightface loads, model packages, ONNX teachers, the resize stem and the CLI."""

from __future__ import annotations

import copy
import hashlib
import json

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper
from torch import nn

from insightface_lr import cli
from insightface_lr.data.degrade import resize
from insightface_lr.errors import ConfigError, ModelLoadError
from insightface_lr.models.export import (
    bake_facebn,
    export_model_package,
    export_onnx,
    resample_matrix,
    resize_stem,
    save_student,
)
from insightface_lr.models.facebn import FaceBN
from insightface_lr.models.onnx_teacher import OnnxTeacher, detect_input_normalisation
from insightface_lr.models.teacher import load_teacher
from insightface_lr.registry import BACKBONES

model_zoo = pytest.importorskip("insightface.model_zoo")


class TinyIResNet(nn.Module):
    """IResNet-shaped in miniature: conv-BN-PReLU, a pre-activation BN before a strided conv, a residual
    add, BN2d -> flatten -> dropout -> fc -> BN1d ``features``. Cheap at 112 px."""

    def __init__(self, input_size: int = 112, embedding_size: int = 24) -> None:
        super().__init__()
        self.input_size, self.embedding_size = input_size, embedding_size
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 4, 4, bias=False), nn.BatchNorm2d(8), nn.PReLU(8))
        self.pre_bn = nn.BatchNorm2d(8)
        self.conv = nn.Conv2d(8, 8, 3, 1, 1, bias=False)
        self.down = nn.Sequential(nn.Conv2d(8, 8, 4, 4, bias=False), nn.BatchNorm2d(8))
        self.dropout = nn.Dropout(0.4)
        side = input_size // 16
        self.fc = nn.Linear(8 * side * side, embedding_size)
        self.features = nn.BatchNorm1d(embedding_size)

    def forward(self, x):
        h = self.stem(x)
        h = self.down(h + self.conv(self.pre_bn(h)))
        return self.features(self.fc(self.dropout(torch.flatten(h, 1))))


def _randomise_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(m.num_features, generator=g) * 0.2)
    return model.eval()


def _faces_bgr(n: int = 3, size: int = 112, seed: int = 0) -> list[np.ndarray]:
    # smooth random images (low-pass noise), closer to faces than white noise for a down-sampling stem
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (n, 14, 14, 3)).astype(np.float32)
    big = F.interpolate(torch.from_numpy(small).permute(0, 3, 1, 2), size=size, mode="bicubic")
    big = big.clamp(0, 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return [np.ascontiguousarray(img) for img in big]


def _our_tensor(bgr_images: list[np.ndarray]) -> torch.Tensor:
    """Independent restatement of our convention: RGB, (x/255 - 0.5)/0.5, [B,3,H,W]."""
    rgb = np.stack([img[:, :, ::-1] for img in bgr_images]).astype(np.float32)
    return (torch.from_numpy(rgb).permute(0, 3, 1, 2) / 255.0 - 0.5) / 0.5


def _cosine_distance(a, b) -> float:
    a, b = torch.as_tensor(np.asarray(a)), torch.as_tensor(np.asarray(b))
    return float((1 - F.cosine_similarity(a.float(), b.float(), dim=1)).max())


@pytest.fixture(scope="module")
def student16() -> nn.Module:
    return _randomise_bn(BACKBONES.build("bridge_student", embedding_size=32, input_size=16))


@pytest.fixture(scope="module")
def student16_onnx(tmp_path_factory, student16):
    return export_onnx(student16, tmp_path_factory.mktemp("s16") / "student16.onnx")


@pytest.fixture(scope="module")
def tiny112() -> nn.Module:
    torch.manual_seed(0)
    return _randomise_bn(TinyIResNet())


@pytest.fixture(scope="module")
def tiny112_onnx(tmp_path_factory, tiny112):
    return export_onnx(tiny112, tmp_path_factory.mktemp("t112") / "tiny112.onnx")


# --- resize stem -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("kernel", ["bilinear", "bicubic"])
@pytest.mark.parametrize("size", [8, 16, 24, 32])
def test_stem_equals_torch_antialiased_interpolate(kernel, size) -> None:
    x = torch.rand(2, 3, 112, 112, generator=torch.Generator().manual_seed(size))
    reference = F.interpolate(x, size=(size, size), mode=kernel, align_corners=False, antialias=True)
    w = resample_matrix(112, size, kernel)
    assert torch.allclose(w @ x @ w.T, reference, atol=1e-5)


@pytest.mark.parametrize("size", [7, 16, 24, 32])
def test_area_and_nearest_equal_torch(size) -> None:
    x = torch.rand(1, 3, 112, 112, generator=torch.Generator().manual_seed(size))
    for kernel, mode in (("area", "area"), ("nearest", "nearest-exact")):
        w = resample_matrix(112, size, kernel)
        assert torch.allclose(w @ x @ w.T, F.interpolate(x, size=(size, size), mode=mode), atol=1e-5)


def test_area_matrix_by_hand() -> None:
    # 3 -> 2 with adaptive-pooling bins [0, 2) and [1, 3)
    expected = torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.5, 0.5]])
    assert torch.allclose(resample_matrix(3, 2, "area"), expected)
    # 4 -> 2 bilinear, triangle stretched x2: output 0 centred at 1.0 sees input centres 0.5, 1.5, 2.5, 3.5
    # at distances 0.25, 0.25, 0.75, 1.25 -> weights 0.75, 0.75, 0.25, 0 -> normalised by 1.75
    expected = torch.tensor([[3.0, 3.0, 1.0, 0.0], [0.0, 1.0, 3.0, 3.0]]) / 7
    assert torch.allclose(resample_matrix(4, 2, "bilinear"), expected)


@pytest.mark.parametrize("kernel", ["bicubic", "bilinear", "area", "nearest"])
def test_stem_matches_the_training_degradation(kernel) -> None:
    # the exported graph must see what training saw: data/degrade.resize in [0, 1], then normalised
    pixels = torch.rand(2, 3, 112, 112, generator=torch.Generator().manual_seed(3))
    expected = (resize(pixels, 16, kernel) - 0.5) / 0.5
    assert torch.allclose(resize_stem((pixels - 0.5) / 0.5, 16, kernel), expected, atol=1e-5)


def test_unknown_kernel() -> None:
    with pytest.raises(ConfigError, match="lanczos"):
        resample_matrix(112, 16, "lanczos")


# --- export_onnx -> insightface.model_zoo.get_model ------------------------------------------------------
def test_16px_student_loads_in_insightface_and_matches_pytorch(student16, student16_onnx) -> None:
    rec = model_zoo.get_model(str(student16_onnx))
    assert type(rec).__name__ == "ArcFaceONNX" and rec.taskname == "recognition"
    assert rec.input_size == (112, 112) and (rec.input_mean, rec.input_std) == (127.5, 127.5)
    faces = _faces_bgr(3)
    got = rec.get_feat(faces)  # BGR uint8 aligned crops, batched through the dynamic batch axis
    with torch.no_grad():
        want = student16(resize_stem(_our_tensor(faces), 16))
    assert got.shape == (3, 32)
    assert _cosine_distance(got, want) < 1e-4
    assert _cosine_distance(rec.get_feat(faces[0]), want[:1]) < 1e-4  # batch of one


def test_112px_model_loads_in_insightface_and_matches_pytorch(tiny112, tiny112_onnx) -> None:
    rec = model_zoo.get_model(str(tiny112_onnx))
    assert type(rec).__name__ == "ArcFaceONNX"
    faces = _faces_bgr(2, seed=5)
    with torch.no_grad():
        want = tiny112(_our_tensor(faces))
    assert _cosine_distance(rec.get_feat(faces), want) < 1e-4


def test_export_folds_batchnorm(student16_onnx, tiny112, tmp_path) -> None:
    ops = [n.op_type for n in onnx.load(str(student16_onnx)).graph.node]
    assert "BatchNormalization" not in ops and "MatMul" in ops  # all BN folded; the stem is a MatMul pair
    path = export_onnx(tiny112, tmp_path / "unfolded.onnx", fold_bn=False)
    n_bn = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in tiny112.modules())
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert ops.count("BatchNormalization") == n_bn == 4  # kept, and the graph still matches (check=True)
    graph_input = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
    assert graph_input[0].dim_param and [d.dim_value for d in graph_input[1:]] == [3, 112, 112]


def test_export_warns_on_input_size_insightface_will_not_route(tiny112, tmp_path) -> None:
    model = _randomise_bn(TinyIResNet(input_size=64))
    with pytest.warns(UserWarning, match="multiple of 16 >= 112"):
        export_onnx(model, tmp_path / "m64.onnx", input_size=64)
    assert model_zoo.get_model(str(tmp_path / "m64.onnx")) is None  # insightface's router refuses it


def test_facebn_statistics_are_baked_in(student16, tmp_path) -> None:
    faces = _faces_bgr(8, seed=11)
    native = resize_stem(_our_tensor(faces) * 0.5 + 0.2, 16)  # shifted domain: adapted stats differ
    facebn = FaceBN(student16, mode="calibrate").calibrate([native[:4], native[4:]])
    path = export_onnx(student16, tmp_path / "facebn.onnx", facebn=facebn)
    probe = _faces_bgr(2, seed=12)
    got = model_zoo.get_model(str(path)).get_feat(probe)
    with torch.no_grad():
        want = facebn(resize_stem(_our_tensor(probe), 16))
        plain = student16(resize_stem(_our_tensor(probe), 16))
    assert _cosine_distance(got, want) < 1e-4
    assert _cosine_distance(got, plain) > 1e-3  # the baked statistics really changed the model
    assert torch.equal(student16.stem[1].running_mean, facebn._source["stem.1"][0])  # input not modified
    per_size = FaceBN(student16, mode="calibrate", per_resolution=True).calibrate([native])
    baked = bake_facebn(copy.deepcopy(student16), per_size)  # the bank of the native size (16) is used
    assert torch.allclose(baked.stem[1].running_var, facebn.statistics()["stem.1"][1])


def test_facebn_without_fixed_statistics_cannot_be_baked(student16, tmp_path) -> None:
    with pytest.raises(ConfigError, match="mode='batch'"):
        export_onnx(student16, tmp_path / "x.onnx", facebn=FaceBN(student16, mode="batch"))
    for per_resolution in (False, True):
        uncalibrated = FaceBN(student16, mode="calibrate", per_resolution=per_resolution)
        with pytest.raises(ConfigError, match="no statistics for input size 16"):
            export_onnx(uncalibrated, tmp_path / "x.onnx")
    assert not list(tmp_path.iterdir())


# --- model package ---------------------------------------------------------------------------------------
def test_model_package_loads_with_model_task(student16, tmp_path) -> None:
    from insightface.model_zoo.model_license import inspect_model_package_license
    from insightface.model_zoo.package_manifest import load_model_package

    folder = export_model_package(student16, tmp_path / "pkg", "lr-student16", license="MIT", meta={"epoch": 3})
    manifest = json.loads((folder / "manifest.json").read_text())
    task = manifest["tasks"]["recognition"]
    assert manifest["manifest_version"] == 2 and manifest["model_id"] == "lr-student16"
    assert task["sha256"] == hashlib.sha256((folder / task["file"]).read_bytes()).hexdigest()
    assert task["input_size"] == [112, 112] and task["embedding_dimension"] == 32
    assert task["preprocessing"] == {"mean": 127.5, "std": 127.5}
    assert load_model_package(folder).task("recognition").metadata["embedding_dimension"] == 32
    # no signed MODEL.LICENSE is written, so insightface applies its default terms rather than "invalid"
    assert inspect_model_package_license(folder).status == "default_non_commercial"
    rec = model_zoo.get_model(str(folder), model_task="recognition")
    faces = _faces_bgr(2, seed=7)
    with torch.no_grad():
        want = student16(resize_stem(_our_tensor(faces), 16))
    assert _cosine_distance(rec.get_feat(faces), want) < 1e-4
    teacher = load_teacher(folder)  # a package folder also works as an ONNX teacher
    assert _cosine_distance(teacher(_our_tensor(faces)), want) < 1e-4


def test_model_package_rejects_bad_id(student16, tmp_path) -> None:
    with pytest.raises(ConfigError, match="model_id"):
        export_model_package(student16, tmp_path / "pkg", "../escape")


# --- ONNX teacher ----------------------------------------------------------------------------------------
def test_onnx_teacher_matches_pytorch(tiny112, tiny112_onnx) -> None:
    teacher = load_teacher(tiny112_onnx)
    assert isinstance(teacher, OnnxTeacher)
    assert (teacher.input_size, teacher.embedding_size) == (112, 24)
    assert teacher.checksum == hashlib.sha256(tiny112_onnx.read_bytes()).hexdigest()
    x = torch.rand(5, 3, 112, 112, generator=torch.Generator().manual_seed(2)) * 2 - 1
    with torch.no_grad():
        want = tiny112(x)
    got = teacher(x)
    assert got.dtype == torch.float32 and torch.allclose(got, want, atol=1e-4)
    teacher.train()
    assert not teacher.training


def _onnx_model(path, nodes, inputs, outputs, initializers=()) -> str:
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return str(path)


def _mxnet_style(path, batch) -> str:
    """Normalises inside (``Sub`` 127.5, ``Mul`` 1/128 as MXNet exports do), then flattens: raw pixels in."""
    size = 8
    return _onnx_model(
        path,
        [helper.make_node("Sub", ["data", "mean"], ["c"], name="_minus0"),
         helper.make_node("Mul", ["c", "scale"], ["n"], name="_mulscalar0"),
         helper.make_node("Flatten", ["n"], ["fc1"], name="flatten0")],
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, [batch, 3, size, size])],
        [helper.make_tensor_value_info("fc1", TensorProto.FLOAT, [batch, 3 * size * size])],
        [helper.make_tensor("mean", TensorProto.FLOAT, [], [127.5]),
         helper.make_tensor("scale", TensorProto.FLOAT, [], [0.0078125])],
    )


@pytest.mark.parametrize("batch", ["N", 1])
def test_onnx_teacher_honours_in_graph_normalisation_and_fixed_batch(tmp_path, batch) -> None:
    path = _mxnet_style(tmp_path / "mx.onnx", batch)
    assert detect_input_normalisation(path) == (0.0, 1.0)
    teacher = OnnxTeacher(path, device="cpu")
    x = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    pixels = x * 127.5 + 127.5  # what ArcFaceONNX would feed this model: raw RGB pixels
    expected = ((pixels - 127.5) * 0.0078125).flatten(1)
    assert torch.allclose(teacher(x), expected, atol=1e-5)


def test_exported_graph_is_not_mistaken_for_mxnet(tmp_path, tiny112_onnx) -> None:
    from insightface_lr.models.export import _rename_mxnet_like_nodes

    assert detect_input_normalisation(tiny112_onnx) == (127.5, 127.5)
    path = tmp_path / "named.onnx"
    _mxnet_style(path, "N")
    _rename_mxnet_like_nodes(path)
    assert detect_input_normalisation(path) == (127.5, 127.5)


def test_non_recognition_onnx_is_refused(tmp_path) -> None:
    conv = _onnx_model(
        tmp_path / "det.onnx",
        [helper.make_node("Conv", ["x", "w"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2, 14, 14])],
        [helper.make_tensor("w", TensorProto.FLOAT, [2, 3, 3, 3], [0.0] * 54)],
    )
    with pytest.raises(ModelLoadError, match=r"det.onnx: not a face recognition model: outputs"):
        load_teacher(conv)
    grey = _onnx_model(
        tmp_path / "grey.onnx",
        [helper.make_node("Flatten", ["x"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 256])],
    )
    with pytest.raises(ModelLoadError, match=r"grey.onnx: not a face recognition model: inputs"):
        OnnxTeacher(grey)
    (tmp_path / "junk.onnx").write_bytes(b"not onnx")
    with pytest.raises(ModelLoadError, match="junk.onnx"):
        OnnxTeacher(tmp_path / "junk.onnx")


# --- CLI -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("flags", "depth"), [((), 0.25), (("--facebn-mode", "calibrate"), 1.0)])
def test_cli_export_with_package_and_facebn_calibration(student16, tmp_path, capsys, flags, depth) -> None:
    """Default: the statistics of the first quarter of the BN layers (DEFAULT_FACEBN); or every layer."""
    from PIL import Image

    student_path = save_student(tmp_path / "student.pt", student16, {"epoch": 1}, network="bridge_student")
    calib = tmp_path / "calib"
    calib.mkdir()
    for i, img in enumerate(_faces_bgr(4, seed=20)):
        Image.fromarray(img[:, :, ::-1]).save(calib / f"{i}.png")
    rc = cli.main(["export", "--model", str(student_path), "--package", str(tmp_path / "pkg"),
                   "--facebn-calibrate", str(calib), *flags])
    assert rc == 0 and "wrote model package" in capsys.readouterr().out
    rec = model_zoo.get_model(str(tmp_path / "pkg"), model_task="recognition")
    faces = _faces_bgr(2, seed=21)
    # reference: the same calibration done by hand through the public FaceBN API
    calib_x = _our_tensor([np.asarray(Image.open(calib / f"{i}.png"))[:, :, ::-1] for i in range(4)])
    facebn = FaceBN(student16, mode="calibrate", depth=depth).calibrate([resize_stem(calib_x, 16)])
    with torch.no_grad():
        want = facebn(resize_stem(_our_tensor(faces), 16))
    assert _cosine_distance(rec.get_feat(faces), want) < 1e-4
    manifest = json.loads((tmp_path / "pkg" / "manifest.json").read_text())
    assert manifest["model_id"] == "student" and manifest["insightface_lr"]["epoch"] == 1


def test_cli_export_bad_model_file_is_a_one_line_error(tmp_path, capsys) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    assert cli.main(["export", "--model", str(bad), "--out", str(tmp_path / "x.onnx")]) == 2
    assert "bad.pt" in capsys.readouterr().err
    assert cli.main(["export", "--model", str(bad)]) == 2
    assert "--out" in capsys.readouterr().err


def test_calibration_faces_from_bin_and_folder(tmp_path) -> None:
    from insightface_lr.commands.export import read_faces
    from insightface_lr.data.image_codec import encode_png
    from insightface_lr.data.verification_bin import write_bin
    from insightface_lr.errors import DataFormatError

    rgb = [img[:, :, ::-1].copy() for img in _faces_bgr(4, size=16, seed=30)]
    write_bin(tmp_path / "calib.bin", [encode_png(img) for img in rgb], [True, False])
    assert np.array_equal(read_faces(tmp_path / "calib.bin", limit=2), np.stack(rgb[:2]))
    (tmp_path / "faces").mkdir()
    for i, img in enumerate(rgb):
        (tmp_path / "faces" / f"{i}.png").write_bytes(encode_png(img))
    assert np.array_equal(read_faces(tmp_path / "faces", limit=10), np.stack(rgb))
    with pytest.raises(DataFormatError, match="no face images"):
        read_faces(tmp_path / "calib.bin", limit=0)
    with pytest.raises(DataFormatError, match=r"\.bin file, a \.rec or a folder"):
        read_faces(tmp_path / "faces" / "0.png", limit=1)


def test_cli_export_facebn_mode_must_be_calibrated(student16, tmp_path, capsys) -> None:
    student_path = save_student(tmp_path / "student.pt", student16, network="bridge_student")
    rc = cli.main(["export", "--model", str(student_path), "--out", str(tmp_path / "s.onnx"), "--facebn-calibrate",
                   str(tmp_path), "--facebn-mode", "batch"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "--facebn-mode 'batch'" in err[0]
    assert not (tmp_path / "s.onnx").exists()
