"""Pure helpers for Helm charts: where a chart comes from, what a local chart archive says
about itself, and how Helm values are merged.

A chart source (rancher.chartRepo, rancher.certManager.chartRepo) is either a repository
(https://..., http://..., oci://...) or a local chart: a packaged archive (.tgz) or an
unpacked chart directory, as an airgapped install has them. Local charts are checked here,
before anything is registered, so a wrong file fails with the config key instead of
half-way through `pulumi up`.
"""

from __future__ import annotations

import copy
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REMOTE_PREFIXES = ("https://", "http://", "oci://")


@dataclass(frozen=True)
class ChartSource:
    """The inputs helm.v3.Release takes for one chart: `chart` is a name (with `repo`), an
    oci:// reference or a local path; `version` is always the exact version."""

    chart: str
    version: str
    repo: str | None


def is_remote(source: str) -> bool:
    return source.startswith(REMOTE_PREFIXES)


def chart_source(source: str, chart: str, version: str) -> ChartSource:
    """Where Helm finds `chart` at `version`: a chart repository URL, an OCI registry path
    (the chart name is appended) or a local chart archive/directory (used as it is)."""
    if source.startswith("oci://"):
        return ChartSource(chart=f"{source.rstrip('/')}/{chart}", version=version, repo=None)
    if is_remote(source):
        return ChartSource(chart=chart, version=version, repo=source)
    # A local chart: Helm ignores the version for a path, but keeping it in the inputs makes
    # a version bump (with a new archive) show up as an update of the release.
    return ChartSource(chart=source, version=version, repo=None)


def chart_metadata(path: str) -> Mapping[str, Any]:
    """Chart.yaml of a chart directory or of a packaged chart (<name>/Chart.yaml inside)."""
    p = Path(path)
    if p.is_dir():
        data = yaml.safe_load((p / "Chart.yaml").read_text())
    else:
        with tarfile.open(p, "r:*") as archive:
            members = [m for m in archive.getmembers() if m.isfile() and m.name.count("/") == 1]
            member = next((m for m in members if m.name.endswith("/Chart.yaml")), None)
            if member is None:
                raise ValueError("no <chart>/Chart.yaml inside")
            handle = archive.extractfile(member)
            assert handle is not None
            data = yaml.safe_load(handle.read())
    if not isinstance(data, dict):
        raise ValueError("Chart.yaml is not a mapping")
    return data


def local_chart_error(path: str, name: str, version: str) -> str | None:
    """None when `path` is a local chart `name` at exactly `version`, else what is wrong."""
    p = Path(path)
    if not p.exists():
        return (
            f"{path!r} is neither a chart repository (https://, oci://) nor an existing "
            f"local chart (a {name}-{version}.tgz archive or a chart directory)"
        )
    try:
        meta = chart_metadata(path)
    except (OSError, tarfile.TarError, yaml.YAMLError, ValueError) as error:
        return f"{path!r} is not a Helm chart archive or directory ({error})"
    found_name, found_version = str(meta.get("name", "")), str(meta.get("version", ""))
    if found_name != name:
        return f"{path!r} is the chart {found_name!r}, not {name!r}"
    if found_version != version:
        return f"{path!r} is {name} {found_version}, not the configured {version}: use the archive of {version}"
    return None


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """`over` merged into a copy of `base`: mappings merge key by key, anything else in
    `over` replaces what `base` has (as Helm merges values files). Leaves that are not plain
    data (pulumi Outputs) are kept as they are, not copied."""
    merged: dict[str, Any] = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value) if isinstance(value, dict | list) else value
    return merged
