"""The model bundle: everything one prediction needs, trained and versioned together.

Layout (DESIGN "Model bundle")::

    bundle.json         manifest: feature spec version and ordered names, W, h, group maps,
                        FeatureService name, training data range and hash, metrics, code version,
                        and the sha256 of every other file
    cnn/<group>.onnx    one CNN per market group (asset class)
    xgb/<group>.ubj     one XGBoost per timeframe group, in XGBoost's own binary format

Only ONNX and XGBoost UBJ/JSON files are allowed: nothing in a bundle is ever unpickled. A reader
calls :func:`verify_bundle` before using a bundle; any missing, extra or altered file raises
:class:`BundleIntegrityError`, so a half-copied or tampered bundle is refused, never half-loaded.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from tradeloop.errors import BundleIntegrityError

__all__ = [
    "ALLOWED_SUFFIXES",
    "BUNDLE_FILE",
    "FORMAT",
    "read_manifest",
    "sha256_file",
    "verify_bundle",
    "write_manifest",
]

BUNDLE_FILE = "bundle.json"
FORMAT = "tradeloop-bundle/1"
ALLOWED_SUFFIXES = (".onnx", ".ubj", ".json")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _payload(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name != BUNDLE_FILE)


def write_manifest(root: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """Hash every file under ``root`` and write ``bundle.json`` = ``meta`` + format + file hashes."""
    files: dict[str, str] = {}
    for path in _payload(root):
        if path.suffix not in ALLOWED_SUFFIXES:
            raise BundleIntegrityError(f"{path.name}: only ONNX and XGBoost UBJ/JSON files may be bundled")
        files[path.relative_to(root).as_posix()] = sha256_file(path)
    manifest = {"format": FORMAT, **meta, "files": files}
    (root / BUNDLE_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))
    return manifest


def read_manifest(root: Path) -> dict[str, Any]:
    """``bundle.json`` of ``root`` (unverified)."""
    path = Path(root) / BUNDLE_FILE
    if not path.is_file():
        raise BundleIntegrityError(f"{root}: no {BUNDLE_FILE}")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise BundleIntegrityError(f"{path}: not JSON ({exc})") from exc
    if manifest.get("format") != FORMAT:
        raise BundleIntegrityError(f"{path}: format {manifest.get('format')!r} is not {FORMAT}")
    return manifest


def verify_bundle(root: Path) -> dict[str, Any]:
    """The manifest, after checking that the files are exactly those listed, with their sha256."""
    root = Path(root)
    manifest = read_manifest(root)
    listed: dict[str, str] = manifest.get("files", {})
    present = {p.relative_to(root).as_posix() for p in _payload(root)}
    if missing := sorted(set(listed) - present):
        raise BundleIntegrityError(f"{root}: missing {', '.join(missing)}")
    if extra := sorted(present - set(listed)):
        raise BundleIntegrityError(f"{root}: files not in the manifest: {', '.join(extra)}")
    for rel, expected in listed.items():
        if sha256_file(root / rel) != expected:
            raise BundleIntegrityError(f"{root}: sha256 of {rel} does not match the manifest")
    return manifest
