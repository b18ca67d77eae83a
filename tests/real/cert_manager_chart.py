"""The REAL cert-manager Helm chart for test tier 3, assembled from its Go module.

The Go module proxy serves github.com/cert-manager/cert-manager at the version the program pins
(rancher.certManager.version); its source holds the chart (deploy/charts/cert-manager) and the
CRDs (deploy/crds). tests/real/controlplane/cert-manager-chart.sh packages them as upstream's
`make helm-chart` does and caches the archive beside the control-plane binaries (key: version,
the script, the packaging helm). Seconds cold; nothing when cached.

    archive = build_cert_manager_chart(bin_dir / "helm")   # .../cert-manager-v1.18.2.tgz
"""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
from pathlib import Path
from typing import Any, TextIO

import yaml

from tests.real.build_runner import run_build

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "controlplane" / "cert-manager-chart.sh"
SCHEMA = HERE.parents[1] / "components" / "data" / "config.schema.json"
BUILD_TIMEOUT = 900  # seconds; a cold assembly takes seconds (a 3.3 MB module download)


class ChartBuildError(RuntimeError):
    pass


def pinned_version() -> str:
    """The cert-manager chart version the program pins (rancher.certManager.version's default)."""
    props = json.loads(SCHEMA.read_text())["properties"]["rancher"]["properties"]
    version = props["certManager"]["properties"]["version"]["default"]
    assert isinstance(version, str)
    return version


def _env(helm: Path) -> dict[str, str]:
    return {**os.environ, "HELM": str(helm), "K3SR_CERT_MANAGER_VERSION": pinned_version()}


def build_cert_manager_chart(helm: Path, progress: TextIO | None = None) -> Path:
    """Assemble (or take from the cache) the real chart; returns the archive. With `progress`
    the script's lines go there as they come, and a heartbeat while it prints none."""
    return run_build(
        SCRIPT,
        "cert-manager-chart",
        timeout=BUILD_TIMEOUT,
        progress=progress,
        env=_env(helm),
        error=ChartBuildError,
        what="the cert-manager chart",
    )


def cached_cert_manager_chart(helm: Path) -> Path | None:
    """The archive when the cache has it (nothing is assembled), else None."""
    done = subprocess.run(["bash", str(SCRIPT), "--cached"], capture_output=True, text=True, timeout=60, env=_env(helm))
    return Path(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else None


def chart_file(archive: Path, name: str) -> str:
    """The text of `name` (e.g. "values.schema.json", "templates/crds.yaml") in the archive."""
    with tarfile.open(archive, "r:gz") as tar:
        handle = tar.extractfile(f"cert-manager/{name}")
        if handle is None:
            raise KeyError(name)
        return handle.read().decode()


def values_schema(archive: Path) -> dict[str, Any]:
    schema = json.loads(chart_file(archive, "values.schema.json"))
    assert isinstance(schema, dict)
    return schema


def chart_yaml(archive: Path) -> dict[str, Any]:
    meta = yaml.safe_load(chart_file(archive, "Chart.yaml"))
    assert isinstance(meta, dict)
    return meta
