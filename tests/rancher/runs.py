"""Runs of the SSH example stacks and of a one-server config with Rancher settings, and
helpers to read what Rancher registered."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

from tests.harness import SECRET_SIG, TEST_SSH_KEY, Registration, Run, load_stack_config, run_program

SSH_STACKS = ["dev", "prod"]
RELEASE = "kubernetes:helm.sh/v3:Release"
RANCHER_TYPES = (
    RELEASE,
    "kubernetes:core/v1:Namespace",
    "kubernetes:core/v1:Secret",
    "k3s-rancher:index:RancherDeployment",
    "pulumi:providers:rancher2",
    "rancher2:index/bootstrap:Bootstrap",
)
GIVEN_PASSWORD = "given-bootstrap-password-0123"
CERT = "-----BEGIN CERTIFICATE-----\nTEST-CERT\n-----END CERTIFICATE-----\n"
CA = "-----BEGIN CERTIFICATE-----\nTEST-CA\n-----END CERTIFICATE-----\n"
TLS_KEY = "-----BEGIN PRIVATE KEY-----\nTEST-KEY-SECRET\n-----END PRIVATE KEY-----\n"


def stack_run(stack: str, rancher: dict[str, Any] | None = None, **secrets: str) -> Run:
    config, stack_secrets = load_stack_config(stack)
    if rancher is not None:
        config["rancher"] = {**config.get("rancher", {}), **rancher}
    stack_secrets.setdefault("sshPrivateKey", TEST_SSH_KEY)
    stack_secrets.update(secrets)
    return run_program(config, stack_secrets, stack=stack)


def one_server(rancher: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "topology": "ssh",
        "servers": [{"name": "cp1", "address": "10.0.0.11"}],
        "rancher": rancher or {},
    }
    config.update(extra)
    return config


def custom_run(rancher: dict[str, Any] | None = None, secrets: dict[str, str] | None = None, **extra: Any) -> Run:
    return run_program(one_server(rancher, **extra), {"sshPrivateKey": TEST_SSH_KEY, **(secrets or {})})


def values(run: Run) -> dict[str, Any]:
    return run.by_name("rancher-release").plain()["values"]


def provider_of(reg: Registration) -> str:
    """The provider reference is '<urn>::<id>'; return the URN."""
    return reg.options["provider"].rsplit("::", 1)[0]


def tiny_chart(tmp_path: Path, name: str, version: str, packed: bool = True) -> Path:
    """A minimal chart of our own (never a vendored third-party chart)."""
    chart_yaml = f"apiVersion: v2\nname: {name}\nversion: {version}\nappVersion: {version}\n"
    template = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-probe\n"
    if not packed:
        root = tmp_path / name
        (root / "templates").mkdir(parents=True)
        (root / "Chart.yaml").write_text(chart_yaml)
        (root / "templates" / "probe.yaml").write_text(template)
        return root
    path = tmp_path / f"{name}-{version}.tgz"
    with tarfile.open(path, "w:gz") as archive:
        for member, text in ((f"{name}/Chart.yaml", chart_yaml), (f"{name}/templates/probe.yaml", template)):
            data = text.encode()
            info = tarfile.TarInfo(member)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def plain_text_outside_secrets(value: Any) -> str:
    """Everything in a wire-form value that is not inside a secret wrapper, as text."""
    if isinstance(value, dict):
        if SECRET_SIG in value:
            return ""
        return " ".join(f"{k} {plain_text_outside_secrets(v)}" for k, v in value.items())
    if isinstance(value, list):
        return " ".join(plain_text_outside_secrets(v) for v in value)
    return json.dumps(value)
