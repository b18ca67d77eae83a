"""topology kubeconfig: Rancher on an existing cluster, given by its kubeconfig (a secret).
Nothing is installed, no host is reached; the releases go through a Provider made from the
given kubeconfig, and a destroy uninstalls them (the cluster stays)."""

from __future__ import annotations

import pytest

from components.backends.kubeconfig import api_server_of
from components.kubeconfig import KubeconfigError
from components.settings import ConfigError
from tests.harness import K3S_KUBECONFIG, Run, run_program

KUBECONFIG = K3S_KUBECONFIG.replace("https://127.0.0.1:6443", "https://k8s.example.com:6443")
CONFIG = {"topology": "kubeconfig", "rancher": {"hostname": "rancher.example.com"}}


@pytest.fixture(scope="module")
def existing() -> Run:
    return run_program(CONFIG, {"kubeconfig": KUBECONFIG}, stack="shared")


def test_nothing_is_installed_and_rancher_uses_the_given_kubeconfig(existing: Run) -> None:
    types = {r.type for r in existing.registrations}
    assert not any(t.startswith(("command:", "docker:")) for t in types), types
    provider = existing.by_name("shared-k8s")
    assert provider.parent == existing.urn("shared")
    assert provider.plain()["kubeconfig"] == KUBECONFIG
    assert "kubeconfig" in provider.secret_paths()
    assert provider.plain()["clusterIdentifier"] == "k3s-rancher-shared"
    for release in ("cert-manager-release", "rancher-release"):
        registration = existing.by_name(release)
        assert registration.options["provider"].startswith(existing.urn("shared-k8s"))
        # Not deleted_with anything: a destroy uninstalls the releases from the cluster.
        assert registration.options["deletedWith"] == ""


def test_outputs_name_the_api_server_and_no_nodes(existing: Run) -> None:
    outputs = existing.outputs
    assert outputs["apiServer"] == "https://k8s.example.com:6443"
    assert outputs["nodes"] == []
    assert "k3sVersion" not in outputs
    assert outputs["rancherUrl"] == "https://rancher.example.com"


def test_the_api_server_comes_from_the_chosen_context_and_errors_never_echo_the_text() -> None:
    assert api_server_of(KUBECONFIG, None) == "https://k8s.example.com:6443"
    with pytest.raises(KubeconfigError) as error:
        api_server_of("users: [{name: x, user: {token: s3cr3t}}]", None)
    assert "s3cr3t" not in str(error.value)
    with pytest.raises(KubeconfigError):
        api_server_of(KUBECONFIG, "no-such-context")


@pytest.mark.parametrize(
    ("config", "secrets", "key"),
    [
        ({"topology": "kubeconfig", "rancher": {"hostname": "r.example.com"}}, {}, "k3s-rancher:kubeconfig"),
        ({"topology": "kubeconfig"}, {"kubeconfig": KUBECONFIG}, "k3s-rancher:rancher.hostname"),
        (
            {**CONFIG, "servers": [{"name": "cp1", "address": "10.0.0.1"}]},
            {"kubeconfig": KUBECONFIG},
            "k3s-rancher:servers",
        ),
        ({**CONFIG, "k3s": {"datastore": "sqlite"}}, {"kubeconfig": KUBECONFIG}, "k3s-rancher:k3s.datastore"),
        (CONFIG, {"kubeconfig": KUBECONFIG, "sshPrivateKey": "k"}, "k3s-rancher:sshPrivateKey"),
        (
            {"topology": "ssh", "servers": [{"name": "cp1", "address": "10.0.0.1"}]},
            {"kubeconfig": KUBECONFIG, "sshPrivateKey": "k"},
            "k3s-rancher:kubeconfig",
        ),
    ],
)
def test_bad_settings_are_refused_by_key_before_anything_is_created(
    config: dict[str, object], secrets: dict[str, str], key: str
) -> None:
    with pytest.raises(ConfigError) as error:
        run_program(config, secrets, stack="shared")
    assert key in error.value.keys
