"""The fast preset end to end: bundle layout and checksums, ONNX parity, metrics and report."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest

from tradeloop.bundle import ALLOWED_SUFFIXES, sha256_file, verify_bundle
from tradeloop.errors import BundleIntegrityError
from tradeloop.features import spec
from training.cnn import ONNX_TOLERANCE
from training.evaluate import HEADLINE
from training.report import FEATURE_SERVICE, PLOTS

PREDICTORS = ("model", "cnn_only", "shuffled_control", "persistence", "always_long")


def test_every_bundle_file_is_present_and_matches_its_sha256(trained):
    manifest = verify_bundle(trained.bundle_dir)
    assert set(manifest["files"]) == {"cnn/crypto.onnx", "xgb/hour.ubj"}
    for rel, digest in manifest["files"].items():
        path = trained.bundle_dir / rel
        assert path.suffix in ALLOWED_SUFFIXES
        assert sha256_file(path) == digest
    assert manifest["feature_service"] == FEATURE_SERVICE
    assert manifest["feature_names"] == list(spec.FEATURE_NAMES)
    assert manifest["window"] == 32
    assert manifest["horizon"] == 1
    assert manifest["cnn_groups"] == {"BTCUSDT": "crypto", "ETHUSDT": "crypto", "SOLUSDT": "crypto"}
    assert manifest["xgb_groups"] == {"1h": "hour"}
    assert len(manifest["data"]["hash"]) == 64
    assert manifest["code_version"]["tradeloop"]


def test_a_tampered_bundle_is_refused(trained, tmp_path):
    import shutil

    copy = tmp_path / "bundle"
    shutil.copytree(trained.bundle_dir, copy)
    with (copy / "xgb" / "hour.ubj").open("ab") as fh:
        fh.write(b"\0")
    with pytest.raises(BundleIntegrityError, match="sha256"):
        verify_bundle(copy)


def test_onnx_matches_pytorch_and_serves_any_batch(trained):
    manifest = verify_bundle(trained.bundle_dir)
    assert 0.0 <= manifest["onnx_max_abs_diff"]["crypto"] <= ONNX_TOLERANCE
    data, layout = trained.prepared.data, trained.prepared.plan
    rows = np.flatnonzero(layout.xgb)[:37]
    session = ort.InferenceSession(str(trained.bundle_dir / "cnn" / "crypto.onnx"))
    out = session.run(None, {"window": data.windows(rows)})[0]
    np.testing.assert_allclose(out, trained.cnn_scores[rows], atol=1e-6)


def test_metrics_cover_the_model_and_every_baseline(trained):
    models = trained.report["models"]
    assert set(PREDICTORS) <= set(models)
    for name in PREDICTORS:
        overall = models[name]["overall"]
        assert set(HEADLINE) <= set(overall), name
        assert overall["n"] == trained.report["rows"]
        assert len(models[name]["folds"]) == 3
        assert overall["per_timeframe"]["1h"]["periods_per_year"] == 365 * 24
    report = json.loads((trained.report_dir / "report.json").read_text())
    assert report["models"]["model"]["overall"]["directional_accuracy"] is not None
    for plot in PLOTS:
        assert (trained.report_dir / plot).stat().st_size > 1000


def test_shuffled_label_control_scores_at_chance(trained, shuffled):
    assert trained.report["control_at_chance"] is True
    chance = shuffled.report["chance"]
    model = shuffled.report["models"]["model"]["overall"]
    assert chance["accuracy_low"] <= model["directional_accuracy"] <= chance["accuracy_high"]
    assert abs(model["ic"]) <= chance["abs_ic_max"]
