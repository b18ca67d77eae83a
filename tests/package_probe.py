"""A program of a user's own, outside this repository: tests/test_package.py copies this file
and examples/library/__main__.py into a temporary directory and runs this one with the
Python of a fresh virtualenv that has only the k3s-rancher wheel installed (its dependencies
come from the suite's virtualenv). Standalone on purpose: it imports nothing of this
repository, only `k3s_rancher` as installed, and Pulumi's mocks.

    python -I package_probe.py EXAMPLE_PY > report.json

The report (JSON on stdout): where k3s_rancher was imported from, its version and the
distribution's, the declared dependencies and the version of every distribution it sees,
whether a `components` package is importable, the scripts bundle's digest (it decides
whether nodes re-run), the resources the example registers under mocks (type, name,
parent) and its outputs, and the keys of the ConfigError a bad config gets.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import runpy
import sys
from typing import Any

import k3s_rancher
import pulumi
from k3s_rancher import (
    AgentPool,
    AgentPoolArgs,
    ConfigError,
    K3sCluster,
    K3sClusterArgs,
    K3sSettings,
    Node,
    RancherDeployment,
    RancherDeploymentArgs,
    SshEndpoint,
    SshSettings,
    parse_settings,
)
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

# What a K3s server's read of its admin kubeconfig prints (the mocks' stdout for it).
KUBECONFIG = """apiVersion: v1
clusters:
- cluster: {certificate-authority-data: Q0E=, server: 'https://127.0.0.1:6443'}
  name: default
contexts:
- context: {cluster: default, user: default}
  name: default
current-context: default
kind: Config
users:
- name: default
  user: {client-certificate-data: Q0VSVA==, client-key-data: S0VZ}
"""
SSH_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nnot-a-real-key\n-----END OPENSSH PRIVATE KEY-----"


class Mocks(pulumi.runtime.Mocks):
    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        outputs = dict(args.inputs)
        if args.typ.startswith("command:"):
            outputs["stdout"] = KUBECONFIG if args.name.endswith("-kubeconfig") else ""
            outputs["stderr"] = ""
        if args.typ == "random:index/randomPassword:RandomPassword":
            outputs["result"] = "generated-password"
        return f"{args.name}-id", outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> Any:
        if args.token == "pulumi:pulumi:readStackOutputs":  # the engine's builtin: no previous run
            return {"name": args.args.get("name"), "outputs": {}, "secretOutputNames": []}
        return {}


def connection_host(inputs: Any) -> str:
    """A remote command's connection host from its serialized inputs (the connection is
    secret, as it holds the key: a value wrapped with Pulumi's secret signature)."""
    if "connection" not in inputs.fields:
        return ""
    connection = inputs.fields["connection"].struct_value.fields
    if "value" in connection:  # {"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270", "value": ...}
        connection = connection["value"].struct_value.fields
    return str(connection["host"].string_value) if "host" in connection else ""


class Monitor(pulumi_mocks.MockMonitor):
    def __init__(self, mocks: pulumi.runtime.Mocks) -> None:
        super().__init__(mocks)
        self.registered: list[dict[str, Any]] = []  # (MockMonitor has its own `resources`)
        self.exports: list[str] = []

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            self.registered.append(
                {
                    "type": request.type,
                    "name": request.name,
                    "parent": request.parent,
                    "urn": response.urn,
                    "dependencies": list(request.dependencies),
                    # Where a remote command connects: a VM's address once the VM exists.
                    "host": connection_host(request.object),
                }
            )
        return response

    def RegisterResourceOutputs(self, request: Any) -> Any:
        if request.urn.split("::")[2] == "pulumi:pulumi:Stack":
            self.exports = sorted(request.outputs.fields.keys())
        return super().RegisterResourceOutputs(request)


class Vm(pulumi.CustomResource):
    """A machine this program makes (a cloud VM, say): its address is an Output until it
    exists. Under the mocks the engine answers a resource's inputs as its outputs."""

    ip: pulumi.Output[str]

    def __init__(self, name: str, ip: str) -> None:
        super().__init__("probe:index:Vm", name, {"ip": ip})


def clusters_on_vms() -> None:
    """Two clusters, each on three VMs made here (a server, an agent, a pool's agent), with
    alike node names: the args built by hand, the addresses Outputs."""
    for cluster, subnet in (("east", 1), ("west", 2)):

        def node(name: str, role: str, last: int, subnet: int = subnet, cluster: str = cluster) -> Node:
            ip = Vm(f"{cluster}-vm-{name}", f"10.{subnet}.0.{last}").ip
            return Node(name=name, role=role, address=ip, ssh=SshEndpoint(host=ip, port=22, user="ubuntu"))

        K3sCluster(
            cluster,
            K3sClusterArgs(
                servers=[node("cp1", "server", 11)],
                agents=[node("w1", "agent", 21)],
                pools=[AgentPoolArgs(name="gpu", nodes=[node("g1", "agent", 31)], labels={"pool": "gpu"})],
                k3s=K3sSettings(init_server="cp1"),
                ssh=SshSettings(),
                token="probe-token",
                private_key=SSH_KEY,
            ),
        )


def run_example(path: str | None) -> Monitor:
    """The example at `path` (None: clusters_on_vms) under the mocks."""
    mocks = Mocks()
    monitor = Monitor(mocks)
    pulumi.runtime.set_mocks(mocks, project="edge-clusters", stack="dev", preview=False, monitor=monitor)
    pulumi.runtime.set_all_config({"edge-clusters:sshPrivateKey": SSH_KEY}, ["edge-clusters:sshPrivateKey"])

    def body() -> None:
        if path is None:
            clusters_on_vms()
        else:
            runpy.run_path(path, run_name="__main__")
        root = pulumi.runtime.get_root_resource()
        if root is not None:  # register the exports, as `pulumi up` does once the program has run
            root._outputs_registered = False  # type: ignore[attr-defined]
            root._finish()  # type: ignore[attr-defined]

    _sync_await(run_pulumi_func(body))
    return monitor


def bad_config_keys() -> list[str]:
    """Validation through the installed package: the schema (package data) finds the
    misspelt key, the validators the bad name and the out-of-range count."""
    raw = {
        "topology": "ssh",
        "k3s": {"verison": "v1.33.5+k3s1"},
        "servers": [{"name": "Bad_Name", "address": "10.0.0.1"}],
        "rancher": {"replicas": 0},
    }
    try:
        parse_settings(raw, secrets_set={"sshPrivateKey"}, stack="probe")
    except ConfigError as error:
        return error.keys
    return []


def main(example: str) -> None:
    from k3s_rancher import bundle

    assert K3sCluster and K3sClusterArgs and AgentPool and RancherDeployment and RancherDeploymentArgs
    distribution = "k3s-rancher"
    # Every distribution this interpreter sees, by normalised name: what the requirements meet.
    installed = {d.metadata["Name"].lower().replace("_", "-"): d.version for d in importlib.metadata.distributions()}
    bad_keys = bad_config_keys()
    monitor = run_example(example)
    on_vms = run_example(None)
    report = {
        "file": k3s_rancher.__file__,
        "version": k3s_rancher.__version__,
        "distribution_version": importlib.metadata.version(distribution),
        "requires": importlib.metadata.requires(distribution) or [],
        "installed": installed,
        "all": sorted(k3s_rancher.__all__),
        "components_importable": importlib.util.find_spec("components") is not None,
        "bundle_sha256": bundle.current_bundle().sha256,
        "bad_config_keys": bad_keys,
        "resources": monitor.registered,
        "outputs": monitor.exports,
        "on_vms": on_vms.registered,
    }
    json.dump(report, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1])
