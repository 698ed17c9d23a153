"""The exported ONNX computes what the PyTorch CNN computes, and a file that does not is refused.

Serving scores with ONNX Runtime while evaluation used PyTorch, so a silent drift between the two
would ship a model nobody measured. These tests run both engines themselves on windows the
exporter never saw, then tamper with exported files to show that :func:`verify_onnx` refuses
them with :class:`DataQualityError` instead of registering them or leaking an onnxruntime error.
No Ray: a tiny randomly initialised model is enough and runs in a second or two.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper
from torch import nn

from tradeloop.errors import DataQualityError
from tradeloop.features import spec
from training.cnn import ONNX_TOLERANCE, WindowCNN, export_onnx, verify_onnx

C = len(spec.CHANNELS)
WIDTH = 8
MEAN = np.linspace(-0.5, 0.7, C).astype(np.float32)
STD = np.linspace(0.5, 2.0, C).astype(np.float32)


def _windows(seed: int, n: int) -> np.ndarray:
    """(n, W, C) float32 windows around the model's channel mean/std, so the normaliser matters."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, spec.WINDOW, C))
    return (MEAN + STD * z).astype(np.float32)


@pytest.fixture
def model() -> WindowCNN:
    """A small CNN with fixed random weights and non-trivial normaliser buffers (mean ≠ 0, std ≠ 1)."""
    torch.manual_seed(1234)
    net = WindowCNN(C, WIDTH)
    net.mean.copy_(torch.from_numpy(MEAN))
    net.std.copy_(torch.from_numpy(STD))
    return net.eval()


@pytest.fixture
def exported(model: WindowCNN, tmp_path: Path) -> Path:
    path = tmp_path / "bundle" / "cnn.onnx"
    export_onnx(model, path, _windows(seed=1, n=16))
    return path


def _onnx_run(path: Path, windows: np.ndarray) -> np.ndarray:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, {"window": windows})[0]


def test_onnx_runtime_matches_pytorch_on_fresh_windows_of_another_batch_size(
    model: WindowCNN, exported: Path
) -> None:
    """Held-out agreement must generalise: other windows, and a batch size not used at export."""
    fresh = _windows(seed=99, n=37)
    with torch.no_grad():
        expected = model(torch.from_numpy(fresh)).numpy()
    got = _onnx_run(exported, fresh)
    assert got.shape == (37,)
    assert np.std(expected) > 1e-3, "scores nearly constant: the comparison would prove little"
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


def test_verify_onnx_refuses_an_export_whose_conv_weights_were_altered(
    model: WindowCNN, exported: Path
) -> None:
    """A file that no longer computes the trained model (here one Conv kernel perturbed) is refused."""
    windows = _windows(seed=2, n=32)
    verify_onnx(model, exported, windows)  # the untouched file passes: the refusal below is the noise

    graph = onnx.load(str(exported))
    conv_weights = {node.input[1] for node in graph.graph.node if node.op_type == "Conv"}
    init = next(t for t in graph.graph.initializer if t.name in conv_weights)
    weight = numpy_helper.to_array(init)
    rng = np.random.default_rng(3)
    noisy = weight + 0.05 * rng.standard_normal(weight.shape).astype(weight.dtype)
    init.CopyFrom(numpy_helper.from_array(noisy, init.name))
    onnx.save(graph, str(exported))

    with torch.no_grad():
        expected = model(torch.from_numpy(windows)).numpy()
    assert np.max(np.abs(_onnx_run(exported, windows) - expected)) > ONNX_TOLERANCE  # the tamper took
    with pytest.raises(DataQualityError, match=r"cnn\.onnx differs from PyTorch by"):
        verify_onnx(model, exported, windows)


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda data: data[: len(data) // 2], id="truncated"),
        pytest.param(lambda data: b"\x08\x07garbage, not a protobuf model" * 10, id="garbage"),
        pytest.param(lambda data: b"", id="empty"),
    ],
)
def test_verify_onnx_refuses_an_unloadable_file_with_data_quality_error(
    model: WindowCNN, exported: Path, damage
) -> None:
    """A damaged file surfaces as the project's DataQualityError, not an onnxruntime exception."""
    exported.write_bytes(damage(exported.read_bytes()))
    with pytest.raises(DataQualityError, match=r"cnn\.onnx cannot be loaded"):
        verify_onnx(model, exported, _windows(seed=4, n=8))


def test_verify_onnx_refuses_a_model_whose_output_is_not_one_score_per_window(
    model: WindowCNN, tmp_path: Path
) -> None:
    """Serving reads a (batch,) score vector; a (batch, 1) output must not pass by broadcasting."""

    class Column(nn.Module):
        def __init__(self, inner: WindowCNN) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, window: torch.Tensor) -> torch.Tensor:
            return self.inner(window).unsqueeze(1)

    path = tmp_path / "column.onnx"
    torch.onnx.export(
        Column(model),
        (torch.from_numpy(_windows(seed=5, n=2)),),
        str(path),
        input_names=["window"],
        output_names=["cnn_score"],
        dynamic_axes={"window": {0: "batch"}, "cnn_score": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    with pytest.raises(DataQualityError, match=r"column\.onnx outputs shape \(8, 1\)"):
        verify_onnx(model, path, _windows(seed=6, n=8))
