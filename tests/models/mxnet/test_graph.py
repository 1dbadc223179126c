"""MXNet checkpoints as torch modules: a ResNet-IR-SE-style model (one we do not have) against a hand-built
torch reference, the checkpoint forms, BatchNorm semantics, refusals, student files, FaceBN and export."""

from __future__ import annotations

import hashlib
import io
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mxnet_symbols import SymbolBuilder
from PIL import Image
from torch import nn

from insightface_lr import cli
from insightface_lr.data.verification_bin import write_bin
from insightface_lr.errors import ModelLoadError
from insightface_lr.models.facebn import FaceBN
from insightface_lr.models.inference import inference_net
from insightface_lr.models.mxnet.checkpoint import is_mxnet_checkpoint, load_mxnet_checkpoint
from insightface_lr.models.mxnet.graph import MxnetGraphNet
from insightface_lr.models.student_file import load_student, save_student
from insightface_lr.models.teacher import load_teacher

EPS = 2e-5  # InsightFace's BatchNorm eps


def irse_symbol(sb: SymbolBuilder, size: int, width: int = 8, emb: int = 16) -> int:
    """fresnet-style IR-SE: normalisation, conv/BN/PReLU stem, one strided IR unit with an SE block
    (global avg pool -> conv -> relu -> conv -> sigmoid -> broadcast_mul) and a conv/BN shortcut, elemwise_add,
    then BN -> Dropout -> FullyConnected -> ``fc1`` BatchNorm with fixed gamma."""
    x = sb.op("_mul_scalar", "_mulscalar0", [sb.op("_minus_scalar", "_minusscalar0", [0], scalar=127.5)],
              scalar=0.0078125)
    x = sb.prelu("relu0", sb.bn("bn0", sb.conv("conv0", x, 3, width, 3, pad=(1, 1)), width, fix_gamma=False,
                                eps=EPS, momentum=0.9), width)
    body = sb.bn("u_bn1", x, width, fix_gamma=False, eps=EPS)
    body = sb.prelu("u_relu1", sb.bn("u_bn2", sb.conv("u_conv1", body, width, width, 3, pad=(1, 1)), width,
                                     fix_gamma=False, eps=EPS), width)
    body = sb.bn("u_bn3", sb.conv("u_conv2", body, width, width, 3, stride=(2, 2), pad=(1, 1)), width,
                 fix_gamma=False, eps=EPS)
    se = sb.op("Pooling", "u_se_pool", [body], global_pool=True, kernel=(7, 7), pool_type="avg")
    se = sb.op("Activation", "u_se_relu", [sb.conv("u_se_conv1", se, width, 2, 1, bias=True)], act_type="relu")
    se = sb.op("Activation", "u_se_sigmoid", [sb.conv("u_se_conv2", se, 2, width, 1, bias=True)],
               act_type="sigmoid")
    body = sb.op("broadcast_mul", "u_se_mul", [body, se])
    short = sb.bn("u_sc_bn", sb.conv("u_sc_conv", x, width, width, 1, stride=(2, 2)), width, fix_gamma=False,
                  eps=EPS)
    x = sb.op("elemwise_add", "u_plus", [body, short])
    x = sb.op("Dropout", "dropout0", [sb.bn("bn1", x, width, fix_gamma=False, eps=EPS)], p=0.4)
    x = sb.fc("pre_fc1", x, width * (size // 2) ** 2, emb)
    return sb.bn("fc1", x, emb, fix_gamma=True, eps=EPS)


def hand_irse(sb: SymbolBuilder, x: torch.Tensor, batch_stats: bool = False) -> torch.Tensor:
    """The same network written directly with torch functionals on the builder's weights (gamma of ``fc1``
    fixed at 1); ``batch_stats``: every BatchNorm normalises with the batch's own statistics."""
    w = sb.weight

    def bn(name, h, gamma=True):
        weight = w(f"{name}_gamma") if gamma else torch.ones_like(w(f"{name}_beta"))
        return F.batch_norm(h, None if batch_stats else w(f"{name}_moving_mean"),
                            None if batch_stats else w(f"{name}_moving_var"), weight, w(f"{name}_beta"),
                            batch_stats, 0.0, EPS)

    h = ((x * 127.5 + 127.5) - 127.5) * 0.0078125
    h = F.prelu(bn("bn0", F.conv2d(h, w("conv0_weight"), padding=1)), w("relu0_gamma"))
    body = F.prelu(bn("u_bn2", F.conv2d(bn("u_bn1", h), w("u_conv1_weight"), padding=1)), w("u_relu1_gamma"))
    body = bn("u_bn3", F.conv2d(body, w("u_conv2_weight"), stride=2, padding=1))
    se = torch.relu(F.conv2d(body.mean((2, 3), keepdim=True), w("u_se_conv1_weight"), w("u_se_conv1_bias")))
    body = body * torch.sigmoid(F.conv2d(se, w("u_se_conv2_weight"), w("u_se_conv2_bias")))
    h = body + bn("u_sc_bn", F.conv2d(h, w("u_sc_conv_weight"), stride=2))
    h = F.linear(bn("bn1", h).flatten(1), w("pre_fc1_weight"), w("pre_fc1_bias"))
    return bn("fc1", h, gamma=False)


def _faces(n: int, size: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.fixture
def irse(tmp_path):
    sb = SymbolBuilder(seed=3)
    prefix = sb.save(tmp_path / "irse", irse_symbol(sb, 112))
    return sb, prefix


def test_irse_model_matches_hand_built_torch(irse) -> None:
    sb, prefix = irse
    net = load_mxnet_checkpoint(prefix)
    assert not net.training and net.embedding_size == 16 and net.input_size == 112
    x = _faces(3, 112)
    with torch.no_grad():
        torch.testing.assert_close(net(x), hand_irse(sb, x), rtol=1e-4, atol=1e-4)
        folded = inference_net(net)  # conv/linear + BN pairs in the chains fold
        torch.testing.assert_close(folded(x), net(x), rtol=1e-4, atol=1e-4)
    kinds = [type(m) for m in folded.modules()]
    # left: u_bn1 and bn1, which follow a value used twice / an add (no conv or linear right before them)
    assert kinds.count(nn.BatchNorm1d) == 0 and kinds.count(nn.BatchNorm2d) == 2


def test_batchnorm_layers_are_real_and_honour_the_symbol(irse) -> None:
    sb, prefix = irse
    net = load_mxnet_checkpoint(prefix)
    bns = {name.rsplit(".", 1)[-1]: m for name, m in net.named_modules()
           if isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d)}
    assert sorted(bns) == sorted(["bn0", "u_bn1", "u_bn2", "u_bn3", "u_sc_bn", "bn1", "fc1"])
    assert type(bns["fc1"]) is nn.BatchNorm1d and type(bns["bn0"]) is nn.BatchNorm2d
    assert all(m.eps == EPS and m.momentum == pytest.approx(0.1) for m in bns.values())
    assert torch.equal(bns["fc1"].weight, torch.ones(16)) and not bns["fc1"].weight.requires_grad
    assert torch.equal(bns["bn0"].weight, sb.weight("bn0_gamma")) and bns["bn0"].weight.requires_grad
    assert torch.equal(bns["u_bn2"].running_var, sb.weight("u_bn2_moving_var"))
    # mxnet defaults when the symbol says nothing: eps 1e-3, momentum 0.9 -> torch 0.1, gamma fixed
    plain = SymbolBuilder()
    bn = plain.bn("b", 0, 3, momentum=0.8)
    net = MxnetGraphNet(plain.text(plain.op("Flatten", "f", [bn])), input_size=4)
    layer = next(m for m in net.modules() if isinstance(m, nn.BatchNorm2d))
    assert layer.eps == 1e-3 and layer.momentum == pytest.approx(0.2) and not layer.weight.requires_grad


def test_fixed_gamma_stays_one_while_training(irse) -> None:
    _sb, prefix = irse
    net = load_mxnet_checkpoint(prefix).train()
    optimizer = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.1, weight_decay=0.1)
    net(_faces(4, 112)).square().sum().backward()
    optimizer.step()
    fc1 = [m for m in net.modules() if isinstance(m, nn.BatchNorm1d)][0]
    assert torch.equal(fc1.weight, torch.ones(16)) and fc1.weight.grad is None


def test_input_is_mapped_to_raw_pixel_values() -> None:
    sb = SymbolBuilder()
    net = MxnetGraphNet(sb.text(sb.op("Flatten", "f", [0])), input_size=4)
    x = torch.tensor([-1.0, 0.0, 1.0]).repeat(16).reshape(1, 3, 4, 4)
    assert torch.equal(net(x), (x * 127.5 + 127.5).flatten(1))


def test_every_checkpoint_form_loads_the_same_weights(irse, tmp_path) -> None:
    sb, prefix = irse
    later = SymbolBuilder(seed=9)
    irse_symbol(later, 112)
    later.save(prefix.parent, 0, epoch=12)  # a higher epoch beside it (the symbol file is rewritten, same graph)
    (prefix.parent / "model-symbol.json").write_text(sb.text(len(sb.nodes) - 1))
    x = _faces(2, 112)
    want_last, want_first = hand_irse(later, x), hand_irse(sb, x)
    folder = prefix.parent
    for form in (prefix, folder, folder / "model-symbol.json", folder / "model-0012.params"):
        assert is_mxnet_checkpoint(form)
        torch.testing.assert_close(load_mxnet_checkpoint(form)(x), want_last, rtol=1e-4, atol=1e-4)
    for form in (folder / "model-0000.params",):
        torch.testing.assert_close(load_mxnet_checkpoint(form)(x), want_first, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(load_mxnet_checkpoint(prefix, epoch=0)(x), want_first, rtol=1e-4, atol=1e-4)
    teacher = load_teacher(folder)
    assert teacher.checksum == hashlib.sha256((folder / "model-0012.params").read_bytes()).hexdigest()
    assert not is_mxnet_checkpoint(tmp_path) and not is_mxnet_checkpoint(tmp_path / "x.pt")


def _symbol_error(tmp_path, sb: SymbolBuilder, head: int, *needles: str) -> str:
    prefix = sb.save(tmp_path / "bad", head)
    with pytest.raises(ModelLoadError) as info:
        load_mxnet_checkpoint(prefix)
    message = str(info.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message
    return message


def test_unsupported_op_is_refused_naming_op_node_and_file(tmp_path, capsys) -> None:
    sb = SymbolBuilder()
    head = sb.op("Flatten", "f", [sb.op("Deconvolution", "up0", [0], kernel=(2, 2), num_filter=3)])
    _symbol_error(tmp_path, sb, head, "'Deconvolution'", "'up0'", "model-symbol.json")
    faces = []
    for value in (0, 255):
        buffer = io.BytesIO()
        Image.new("RGB", (112, 112), (value, 0, 0)).save(buffer, format="PNG")
        faces.append(buffer.getvalue())
    write_bin(tmp_path / "x.bin", faces * 2, [True, False])
    assert cli.main(["eval", "--model", str(tmp_path / "bad" / "model"), "--bins", str(tmp_path / "x.bin")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Deconvolution" in err[0] and "model-symbol.json" in err[0]


def test_missing_or_misshaped_parameter_is_refused(tmp_path) -> None:
    sb = SymbolBuilder()
    head = sb.op("Flatten", "f", [sb.conv("c", 0, 3, 4, 3)])
    del sb.params["arg:c_weight"]
    _symbol_error(tmp_path, sb, head, "arg:c_weight", "missing", "model-0000.params")
    sb.params["arg:c_weight"] = torch.zeros(4, 3, 5, 5)
    _symbol_error(tmp_path, sb, head, "arg:c_weight", "[4, 3, 5, 5]", "[4, 3, 3, 3]")


def test_bad_symbols_are_refused(tmp_path) -> None:
    sb = SymbolBuilder()
    _symbol_error(tmp_path, sb, sb.conv("c", 0, 3, 4, 3), "[N, D]")  # a feature map, not embeddings
    (tmp_path / "bad" / "model-symbol.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="not an MXNet symbol JSON"):
        load_mxnet_checkpoint(tmp_path / "bad" / "model")
    two = SymbolBuilder()
    two.nodes.append({"op": "null", "name": "data2", "inputs": []})
    _symbol_error(tmp_path, two, two.op("Flatten", "f", [two.op("elemwise_add", "a", [0, 1])]), "one image input")


def test_training_symbol_uses_fc1(tmp_path) -> None:
    sb = SymbolBuilder()
    fc1 = sb.fc("fc1", 0, 3 * 4 * 4, 5)
    label = sb.var("softmax_label", torch.zeros(1))
    fc7 = sb.fc("fc7", fc1, 5, 7, bias=False)
    head = sb.op("SoftmaxOutput", "softmax", [fc7, label])
    net = MxnetGraphNet(sb.text(head), input_size=4)
    net.load_mxnet_weights(sb.params_by_kind(), "t.params")
    assert net.output_name == "fc1" and "classifier" in net.output_note and net.embedding_size == 5
    x = _faces(2, 4)
    torch.testing.assert_close(net(x), F.linear((x * 127.5 + 127.5).flatten(1), sb.weight("fc1_weight"),
                                                sb.weight("fc1_bias")))


def test_student_file_round_trip(irse, tmp_path) -> None:
    _sb, prefix = irse
    net = load_mxnet_checkpoint(prefix)
    options = net.build_options()
    assert set(options) == {"symbol", "embedding_size", "input_size"} and json.loads(options["symbol"])
    save_student(tmp_path / "s.pt", net, network="mxnet_graph", kwargs=options)
    again, _meta = load_student(tmp_path / "s.pt")
    x = _faces(2, 112)
    assert type(again) is MxnetGraphNet and torch.equal(again(x), net(x))
    assert not [m for m in again.modules() if isinstance(m, nn.BatchNorm1d)][0].weight.requires_grad


def test_facebn_adapts_every_batchnorm(irse) -> None:
    sb, prefix = irse
    net = load_mxnet_checkpoint(prefix)
    adapted = FaceBN(net, mode="batch", include_bn1d=True)
    assert len(adapted._layers) == 7
    x = _faces(4, 112, seed=2)
    with torch.no_grad():
        torch.testing.assert_close(adapted(x), hand_irse(sb, x, batch_stats=True), rtol=1e-3, atol=1e-3)


def test_export_loads_in_insightface_with_the_same_embeddings(irse, tmp_path) -> None:
    model_zoo = pytest.importorskip("insightface.model_zoo")
    _sb, prefix = irse
    assert cli.main(["export", "--model", str(prefix), "--out", str(tmp_path / "m.onnx")]) == 0
    rec = model_zoo.get_model(str(tmp_path / "m.onnx"))
    assert type(rec).__name__ == "ArcFaceONNX"
    rgb = np.random.default_rng(0).integers(0, 256, (3, 112, 112, 3), dtype=np.uint8)
    got = rec.get_feat([face[..., ::-1].copy() for face in rgb])  # insightface takes BGR
    with torch.no_grad():
        want = load_mxnet_checkpoint(prefix)(torch.from_numpy(rgb).permute(0, 3, 1, 2).float() / 127.5 - 1).numpy()
    cosine = (got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
    assert cosine.min() >= 0.9999
