"""Args as Pulumi Inputs (issue 27 item 2), under mocks: a program that makes its hosts
itself and installs K3s on them with their addresses as Outputs, and args built by hand that
get the same keyed checks as a stack config."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pulumi
import pytest

from components import ConfigError, K3sCluster, K3sClusterArgs, RancherDeployment, RancherDeploymentArgs
from components.backends.docker import DockerCluster, DockerClusterArgs
from components.settings import (
    NAMESPACE,
    AgentPoolArgs,
    DockerSettings,
    K3sSettings,
    Node,
    Proxy,
    RancherSettings,
    SshEndpoint,
    SshSettings,
)
from tests.harness import TEST_SSH_KEY, TEST_TOKEN, Run, registered_names, run_function

ROOT = Path(__file__).resolve().parent.parent
IPS = {"cp1": "10.9.0.11", "cp2": "10.9.0.12", "cp3": "10.9.0.13", "w1": "10.9.0.21", "g1": "10.9.0.31"}
SERVERS, AGENTS = ("cp1", "cp2", "cp3"), ("w1",)


class Vm(pulumi.CustomResource):
    """A cloud VM stand-in: the mock engine answers a resource's inputs as its outputs, so
    `ip` is an Output that resolves, once the VM exists, to the address it was made with."""

    ip: pulumi.Output[str]

    def __init__(self, name: str, ip: str) -> None:
        super().__init__("test:index:Vm", name, {"ip": ip})


def node(name: str, role: str, address: pulumi.Input[str]) -> Node:
    return Node(name=name, role=role, address=address, ssh=SshEndpoint(host=address, port=22, user="ubuntu"))


def cluster_program(address: Callable[[str], pulumi.Input[str]], k3s: K3sSettings | None = None) -> Callable[[], None]:
    """One cluster (3 etcd servers, an agent), the args built by hand; `address(name)` gives
    each node's address (a plain string, or a VM's Output)."""

    def program() -> None:
        cluster = K3sCluster(
            "edge",
            K3sClusterArgs(
                servers=[node(n, "server", address(n)) for n in SERVERS],
                agents=[node(n, "agent", address(n)) for n in AGENTS],
                # An agent pool's agent on a VM too, with the pool's label.
                pools=[AgentPoolArgs(name="gpu", nodes=[node("g1", "agent", address("g1"))], labels={"pool": "gpu"})],
                # Only what has no default: the init server; the API address defaults to its.
                k3s=k3s or K3sSettings(init_server="cp1"),
                ssh=SshSettings(),
                token=TEST_TOKEN,
                private_key=TEST_SSH_KEY,
            ),
        )
        pulumi.export("apiServer", cluster.api_server)

    return program


def on_vms(k3s: K3sSettings | None = None) -> Run:
    def program() -> None:
        vms = {name: Vm(f"vm-{name}", ip) for name, ip in IPS.items()}
        cluster_program(lambda name: vms[name].ip, k3s)()

    return run_function(program, project="inputs")


@pytest.fixture(scope="module")
def vms() -> Run:
    return on_vms()


@pytest.fixture(scope="module")
def plain() -> Run:
    return run_function(cluster_program(lambda name: IPS[name]), project="inputs")


def test_each_node_is_reached_at_its_vms_address_once_the_vm_exists(vms: Run) -> None:
    for name in (*SERVERS, *AGENTS, "g1"):
        for step in ("install", "ready"):
            if step == "ready" and name not in SERVERS:
                continue  # agents are checked by the cluster-ready check on the init server
            command = vms.by_name(f"edge-{name}-{step}")
            assert command.plain()["connection"]["host"] == IPS[name]
            # The connection comes from the VM: the engine creates the VM first.
            assert vms.property_depends_on(f"edge-{name}-{step}", "connection", f"vm-{name}")
            assert vms.reaches(f"edge-{name}-{step}", f"vm-{name}")
    ready = vms.by_name("edge-cluster-ready")
    assert ready.plain()["connection"]["host"] == IPS["cp1"]


def test_commands_are_the_texts_plain_addresses_give(vms: Run, plain: Run) -> None:
    # node-ip, tls-san, the joins' server URL (the init server's address by default), the
    # airgap-free install, its uninstall and the cleanup: byte for byte once the IPs are known.
    names = sorted(r.name for r in plain.of_type("command:remote:Command"))
    assert names == sorted(r.name for r in vms.of_type("command:remote:Command"))
    for name in names:
        for prop in ("create", "update", "delete", "triggers"):
            assert vms.by_name(name).plain().get(prop) == plain.by_name(name).plain().get(prop), (name, prop)
    install = vms.by_name("edge-cp2-install").plain()["create"]
    assert f"https://{IPS['cp1']}:6443" in install and f"node-ip: {IPS['cp2']}" in install
    assert vms.outputs["apiServer"] == f"https://{IPS['cp1']}:6443"
    # The cluster's record (its next run's role-change guard) keeps the addresses once known.
    assert vms.outputs["k3s-rancher:edge"]["nodes"] == plain.outputs["k3s-rancher:edge"]["nodes"]
    assert {n["name"]: n["address"] for n in vms.outputs["k3s-rancher:edge"]["nodes"]} == IPS


def test_a_role_change_of_a_node_on_a_vm_is_refused_by_its_name() -> None:
    """Its address is not known before the cluster registers: the guard matches it by name."""
    was = [{"name": n, "role": "agent" if n in SERVERS else "server", "address": IPS[n]} for n in ("cp3", "w1")]
    with pytest.raises(ConfigError) as caught:
        run_function(
            lambda: cluster_program(lambda name: Vm(f"vm-{name}", IPS[name]).ip)(),
            project="inputs",
            previous_outputs={"k3s-rancher:edge": {"nodes": was}},
        )
    assert caught.value.keys == ["k3s-rancher:servers", "k3s-rancher:agents"]
    assert "cluster edge: cp3 is listed as a server, but 10.9.0.13 was an agent" in str(caught.value)


def test_no_proxy_lists_the_vms_addresses() -> None:
    proxied = K3sSettings(
        init_server="cp1", proxy=Proxy(http_proxy="http://proxy.internal:3128", https_proxy=None, no_proxy=())
    )
    run = on_vms(proxied)
    install = run.by_name("edge-w1-install").plain()["create"]
    assert all(ip in install for ip in IPS.values())
    # As with plain addresses (sorted, each once, as config lists them).
    plain = run_function(cluster_program(lambda name: IPS[name], proxied), project="inputs")
    assert install == plain.by_name("edge-w1-install").plain()["create"]


def bad_vm_program() -> None:
    """cp2's VM answers an address that is none: known only once the VM exists."""
    vms = {name: Vm(f"vm-{name}", "10.9.0.300" if name == "cp2" else ip) for name, ip in IPS.items()}
    cluster_program(lambda name: vms[name].ip)()


def test_a_bad_address_known_only_later_gets_the_same_keyed_error() -> None:
    # In its own process: the failed applies of a run under mocks outlive it and would fail
    # the next test's run.
    done = subprocess.run(
        [sys.executable, "-m", "tests.test_inputs"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    # Raised inside the apply that resolves the addresses: the engine reports it through the
    # resources waiting on it, the ConfigError's text (key and message) kept whole.
    assert done.returncode == 3, done.stderr[-2000:]
    assert f"- {NAMESPACE}:servers[1].address: '10.9.0.300' is neither an IP address nor a host name" in done.stdout


def test_a_renamed_host_moved_to_the_other_list_is_refused_once_its_address_is_known() -> None:
    """cp3 is a server on the VM whose address was the agent old-w9's: the guard's check by
    name passes before the VM exists, its check by address fails once it does (in its own
    process, as above)."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.test_inputs", "moved-host"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 3, done.stderr[-2000:]
    assert f"cluster edge: cp3 is listed as a server, but old-w9 ({IPS['cp3']}) was an agent" in done.stdout
    assert run_function(vm_program, project="inputs").outputs  # without that record: no refusal


def test_hand_built_cluster_args_get_the_keyed_checks_before_anything_is_made() -> None:
    bad = {**IPS, "cp2": "10.9.0.300", "w1": "10.9.0.11"}
    names = registered_names(
        lambda: run_function(cluster_program(lambda name: bad[name]), project="inputs"), tolerated=ConfigError
    )
    assert names == []
    with pytest.raises(ConfigError) as caught:
        run_function(cluster_program(lambda name: bad[name]), project="inputs")
    # w1 has cp1's address, and so its SSH host too (as a stack config would be told).
    assert caught.value.keys == [
        f"{NAMESPACE}:servers[1].address",
        f"{NAMESPACE}:agents[0].address",
        f"{NAMESPACE}:agents[0].ssh",
    ]
    # A K3s setting too, by its config key.
    with pytest.raises(ConfigError) as caught:
        run_function(
            cluster_program(lambda name: IPS[name], K3sSettings(init_server="cp9", version="v1.33.5+k3s1")),
            project="inputs",
        )
    assert caught.value.keys == [f"{NAMESPACE}:k3s.initServer"]


def test_hand_built_rancher_and_docker_args_get_the_keyed_checks() -> None:
    def rancher() -> None:
        provider: Any = None
        RancherDeployment(
            "hub",
            RancherDeploymentArgs(settings=RancherSettings(hostname="not a name", replicas=1), provider=provider),
        )

    with pytest.raises(ConfigError) as caught:
        run_function(rancher, project="inputs")
    assert caught.value.keys == [f"{NAMESPACE}:rancher.hostname"]

    def docker() -> None:
        DockerCluster(
            "local",
            DockerClusterArgs(
                docker=DockerSettings(image="rancher/k3s:v1.33.5-k3s1", network="bad name"),
                k3s=K3sSettings(),
                token=TEST_TOKEN,
            ),
        )

    with pytest.raises(ConfigError) as caught:
        run_function(docker, project="inputs")
    assert caught.value.keys == [f"{NAMESPACE}:docker.network"]


# The previous run of `python -m tests.test_inputs moved-host`: cp3's VM address was an agent's.
MOVED_HOST = {"k3s-rancher:edge": {"nodes": [{"name": "old-w9", "role": "agent", "address": IPS["cp3"]}]}}


def vm_program() -> None:
    vms = {name: Vm(f"vm-{name}", ip) for name, ip in IPS.items()}
    cluster_program(lambda name: vms[name].ip)()


if __name__ == "__main__":
    try:
        if sys.argv[1:] == ["moved-host"]:
            run_function(vm_program, project="inputs", previous_outputs=MOVED_HOST)
        else:
            run_function(bad_vm_program, project="inputs")
    except Exception as error:  # the engine wraps it: print the chain's text
        print(error)
        sys.exit(3)
