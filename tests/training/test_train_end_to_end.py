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
        assert overall["per_market"]["1h/crypto"]["periods_per_year"] == 365 * 24
    report = json.loads((trained.report_dir / "report.json").read_text())
    assert report["models"]["model"]["overall"]["directional_accuracy"] is not None
    for plot in PLOTS:
        assert (trained.report_dir / plot).stat().st_size > 1000


def test_shuffled_label_control_scores_at_chance(trained, shuffled):
    # The real run's own control, and the whole shuffled-label model: their block-bootstrap
    # intervals (accuracy beyond a label-blind caller, rank IC) contain 0.
    assert trained.report["control_at_chance"] is True
    assert shuffled.report["control_at_chance"] is True
    shuffled_model = shuffled.report["criteria"]
    assert shuffled_model["rank_ic"]["low"] <= 0.0 <= shuffled_model["rank_ic"]["high"]


def test_the_bundle_carries_a_monotone_calibration_and_a_band_fitted_on_walk_forward_rows(trained):
    manifest = verify_bundle(trained.bundle_dir)
    cal, band = manifest["calibration"], manifest["band"]
    assert np.all(np.diff(cal["x"]) >= 0)
    assert np.all(np.diff(cal["y"]) >= 0)
    assert 0.0 < min(cal["y"]) <= max(cal["y"]) < 1.0
    test_rows = sum(f["test_rows"] for f in trained.report["folds"])
    assert band["fitted_on"]["rows"] == test_rows
    assert cal["fitted_on"]["rows"] <= test_rows  # rows whose return moved
    assert (
        cal["fitted_on"]["start"] == trained.report["folds"][0]["start"]
        or cal["fitted_on"]["start"] >= (trained.report["folds"][0]["start"])
    )
    assert band["threshold"] >= 0.0
    # On the rows it was fitted on, the calibrated probability orders outcomes: the top-score
    # decile goes up more often than the bottom one (checked from raw labels, not the map).
    data, idx = trained.prepared.data, np.flatnonzero(trained.prepared.plan.test)
    score = trained.preds["model"][idx] / data.scale[idx]
    order = np.argsort(score)
    tenth = len(order) // 10
    assert (data.y[idx][order[-tenth:]] > 0).mean() > (data.y[idx][order[:tenth]] > 0).mean()
    calibration = trained.report["calibration"]
    assert calibration["brier"] < calibration["brier_base_rate"]
    assert (trained.report_dir / "report.md").read_text().count("block bootstrap") >= 1
