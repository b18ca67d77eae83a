"""The registered graph of representative stacks, in a form that can be compared across
versions of this program: what an upgrade of k3s-rancher would change in a user's stack.

For each scenario (the three example stacks and variants that reach every optional part),
the program runs under mocks and each registration becomes one entry keyed by URN: type,
parent, custom, dependencies and property dependencies (as sets), options, and the inputs
(secret values marked as such). Long input values are kept as a sha256 digest, so a change
names the URN and the property without storing every script's text here.

`python -m tests.graph_snapshot` rewrites tests/graph_snapshots/*.json from the current
code; tests/test_graph_snapshot.py compares the current code with them. A difference means
that `pulumi up` after upgrading this program would update or replace something in existing
stacks: rewrite the snapshots only when that is intended, and say so in the commit.
"""

from __future__ import annotations

import copy
import hashlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.harness import (
    K3S_KUBECONFIG,
    ROOT,
    SECRET_SIG,
    TEST_SSH_KEY,
    TEST_TOKEN,
    Run,
    load_stack_config,
    run_program,
)

SNAPSHOT_DIR = Path(__file__).resolve().parent / "graph_snapshots"
AIRGAP_DIR = Path(__file__).resolve().parent / "data" / "airgap"
# Values up to this many characters of JSON are kept as they are; longer ones as a digest.
INLINE_LIMIT = 160
FAKE_PEM = "-----BEGIN CERTIFICATE-----\nZmFrZSBjZXJ0aWZpY2F0ZQ==\n-----END CERTIFICATE-----\n"

Scenario = Callable[[], tuple[dict[str, Any], dict[str, str], str]]


def _stack(name: str) -> Scenario:
    def scenario() -> tuple[dict[str, Any], dict[str, str], str]:
        config, secrets = load_stack_config(name)
        if config.get("topology") == "ssh":
            secrets.setdefault("sshPrivateKey", TEST_SSH_KEY)  # set by `pulumi config set --secret`
        return config, secrets, name

    return scenario


def _ssh_everything() -> tuple[dict[str, Any], dict[str, str], str]:
    """prod with every optional SSH part: airgap files, registries, a per-node SSH override
    with a host key, labels on a server, Rancher with its own certificate and bootstrap."""
    config, _ = load_stack_config("prod")
    config["k3s"]["airgap"] = {
        "installScript": str(AIRGAP_DIR / "install.sh"),
        "binary": str(AIRGAP_DIR / "k3s"),
        "images": str(AIRGAP_DIR / "images.tar.zst"),
    }
    config["k3s"]["registries"] = {"mirrors": {"docker.io": {"endpoint": ["https://mirror.example.com"]}}}
    config["k3s"]["installScriptSha256"] = "0" * 64
    config["servers"][1]["labels"] = {"zone": "b"}
    config["agents"][0]["ssh"] = {
        "host": "w1.mgmt.example.com",
        "port": 2222,
        "user": "ops",
        "hostKey": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f",
    }
    config["rancher"] = {
        "enabled": True,
        "hostname": "rancher.prod.example.com",
        "tls": "secret",
        "tlsCert": FAKE_PEM,
        "privateCa": FAKE_PEM,
        "bootstrap": True,
        "values": {"auditLog": {"level": 1}},
    }
    secrets = {
        "sshPrivateKey": TEST_SSH_KEY,
        "token": TEST_TOKEN,
        "rancherTlsKey": "-----BEGIN PRIVATE KEY-----\nZmFrZQ==\n-----END PRIVATE KEY-----\n",
        "rancherBootstrapPassword": "snapshot-bootstrap-password",
    }
    return config, secrets, "prod"


def _ssh_external() -> tuple[dict[str, Any], dict[str, str], str]:
    """Two servers on an external datastore, agent-socket auth, Rancher off."""
    config = {
        "topology": "ssh",
        "k3s": {"version": "v1.32.9+k3s1", "datastore": "external", "initServer": "db-cp1"},
        "ssh": {"user": "root", "useAgent": True},
        "servers": [{"name": "db-cp2", "address": "10.1.0.12"}, {"name": "db-cp1", "address": "10.1.0.11"}],
        "agents": [{"name": "db-w1", "address": "10.1.0.21", "taints": ["gpu=true:NoSchedule"]}],
        "rancher": {"enabled": False},
    }
    return config, {"datastoreEndpoint": "postgres://k3s:pw@db.example.com:5432/k3s"}, "ext"


def _ssh_sqlite() -> tuple[dict[str, Any], dict[str, str], str]:
    """One sqlite server, no agents, a given token, Rancher with its own self-signed CA."""
    config = {
        "topology": "ssh",
        "k3s": {"version": "v1.33.5+k3s1", "datastore": "sqlite"},
        "servers": [{"name": "solo", "address": "192.168.1.5"}],
    }
    return config, {"sshPrivateKey": TEST_SSH_KEY, "token": TEST_TOKEN}, "solo"


def _docker_container_rancher() -> tuple[dict[str, Any], dict[str, str], str]:
    """Three docker servers and two agents, Rancher as its single-node container."""
    config = {
        "topology": "docker",
        "k3s": {"version": "v1.33.5+k3s1", "datastore": "etcd", "tlsSans": ["k3s.local.example"]},
        "docker": {"servers": 3, "agents": 2, "apiPort": 16443, "network": "k3s-ha", "subnet": "172.31.0.0/24"},
        "rancher": {"enabled": True, "mode": "docker"},
    }
    return config, {}, "local-ha"


def _docker_sqlite() -> tuple[dict[str, Any], dict[str, str], str]:
    """One docker server on sqlite with a registry mirror, Rancher off."""
    config = {
        "topology": "docker",
        "k3s": {
            "version": "v1.33.5+k3s1",
            "datastore": "sqlite",
            "registries": {"mirrors": {"docker.io": {"endpoint": ["http://127.0.0.1:5000"]}}},
        },
        "docker": {"servers": 1, "agents": 0},
        "rancher": {"enabled": False},
    }
    return config, {}, "mini"


def _kubeconfig() -> tuple[dict[str, Any], dict[str, str], str]:
    """An existing cluster given by its kubeconfig: Rancher with Let's Encrypt staging."""
    config = {
        "topology": "kubeconfig",
        "rancher": {"hostname": "rancher.example.com", "tls": "letsEncrypt", "letsEncryptEmail": "ops@example.com"},
    }
    kubeconfig = K3S_KUBECONFIG.replace("https://127.0.0.1:6443", "https://k8s.example.com:6443")
    return config, {"kubeconfig": kubeconfig}, "shared"


SCENARIOS: dict[str, Scenario] = {
    "stack-dev": _stack("dev"),
    "stack-prod": _stack("prod"),
    "stack-local": _stack("local"),
    "ssh-everything": _ssh_everything,
    "ssh-external": _ssh_external,
    "ssh-sqlite": _ssh_sqlite,
    "docker-container-rancher": _docker_container_rancher,
    "docker-sqlite": _docker_sqlite,
    "kubeconfig": _kubeconfig,
}


def _compact(value: Any) -> Any:
    """A value as kept in a snapshot: repository paths made relative, long values digested."""
    text = json.dumps(value, sort_keys=True).replace(str(ROOT), "<repo>")
    if len(text) <= INLINE_LIMIT:
        return json.loads(text)
    secret = isinstance(value, dict) and SECRET_SIG in value
    return {"sha256": hashlib.sha256(text.encode()).hexdigest(), "chars": len(text), "secret": secret}


def _inputs(inputs: dict[str, Any]) -> dict[str, Any]:
    return {name: _compact(value) for name, value in sorted(inputs.items())}


def graph(run: Run) -> dict[str, Any]:
    """The comparable form of one run."""
    resources = {}
    for r in run.registrations:
        resources[r.urn] = {
            "type": r.type,
            # The mock root Stack outlives a run (its URN names the first run's stack): any
            # Stack parent is the stack's root.
            "parent": "<stack>" if "::pulumi:pulumi:Stack::" in r.parent else r.parent,
            "custom": r.custom,
            "dependencies": sorted(set(r.dependencies)),
            "propertyDependencies": {k: sorted(set(v)) for k, v in sorted(r.property_dependencies.items()) if v},
            "options": copy.deepcopy(r.options),
            "inputs": _inputs(r.inputs),
        }
    return {"resources": dict(sorted(resources.items())), "outputs": _inputs(run.outputs)}


def current(name: str) -> dict[str, Any]:
    config, secrets, stack = SCENARIOS[name]()
    return graph(run_program(config, secrets, stack=stack))


def path_of(name: str) -> Path:
    return SNAPSHOT_DIR / f"{name}.json"


def recorded(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path_of(name).read_text())
    return data


def differences(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """What changed, one line per URN and property: what `pulumi up` would act on."""
    lines: list[str] = []
    old, new = before["resources"], after["resources"]
    lines += [f"gone (would be deleted): {urn}" for urn in sorted(set(old) - set(new))]
    lines += [f"new (would be created): {urn}" for urn in sorted(set(new) - set(old))]
    for urn in sorted(set(old) & set(new)):
        for part in ("type", "parent", "custom", "dependencies", "propertyDependencies", "options"):
            if old[urn][part] != new[urn][part]:
                lines.append(f"{urn}: {part} {old[urn][part]!r} -> {new[urn][part]!r}")
        a, b = old[urn]["inputs"], new[urn]["inputs"]
        for prop in sorted(set(a) | set(b)):
            if a.get(prop) != b.get(prop):
                lines.append(f"{urn}: input {prop} {a.get(prop)!r} -> {b.get(prop)!r}")
    a, b = before["outputs"], after["outputs"]
    lines += [f"output {k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    return lines


def main(argv: list[str]) -> int:
    SNAPSHOT_DIR.mkdir(exist_ok=True)
    for name in argv or list(SCENARIOS):
        snapshot = current(name)
        path_of(name).write_text(json.dumps(snapshot, indent=1, sort_keys=True) + "\n")
        print(f"{path_of(name).relative_to(ROOT)}: {len(snapshot['resources'])} resources")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
