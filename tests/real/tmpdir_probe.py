"""A probe that test_engine_private_tmpdir.py runs as a pytest run of its own (its name does
not match test_*.py, so no suite run collects it): one `pulumi up` of a program whose
kubernetes provider is given a kubeconfig, then a report of what this run's TMPDIR held.

The provider writes a copy of that kubeconfig to $TMPDIR/kubeconfigNNNN at every configure
and never removes it (pulumi-kubernetes provider/pkg/provider/provider.go Configure ->
writeKubeconfigToFile in provider/pkg/provider/util.go)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.real.engine_project import engine_bin, make_project

REPORT = "K3SR_TMPDIR_PROBE_REPORT"
# An unreachable cluster: the provider still writes its copy (before it talks to the cluster).
PROGRAM = '''
import pulumi_kubernetes as k8s

KUBECONFIG = """apiVersion: v1
kind: Config
clusters:
- name: probe
  cluster: {server: "https://127.0.0.1:1"}
users:
- name: probe
  user: {token: probe-admin-token}
contexts:
- name: probe
  context: {cluster: probe, user: probe}
current-context: probe
"""
k8s.Provider("k8s", kubeconfig=KUBECONFIG, cluster_identifier="probe")
'''


def test_probe(tmp_path: Path) -> None:
    if not os.environ.get(REPORT):
        pytest.skip(f"run by test_engine_private_tmpdir.py only ({REPORT} names its report)")
    project = make_project(tmp_path, engine_bin(), program=PROGRAM)
    project.pulumi("up", "--yes", "--skip-preview")
    tmpdir = Path(os.environ["TMPDIR"])
    report = {
        "tmpdir": str(tmpdir),
        "engine_tmpdir": project.env.get("TMPDIR"),
        "kubeconfigs": sorted(p.name for p in tmpdir.glob("kubeconfig*")),
    }
    Path(os.environ[REPORT]).write_text(json.dumps(report))
