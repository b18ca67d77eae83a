"""install_node.sh with the registryAuth secret (issue 24 item 6): the whole registries.yaml,
credentials included, arrives on stdin (REGISTRIES_WITH_AUTH) and lands in the 0600
/etc/rancher/k3s/registries.yaml; the command text holds k3s.registries without them; a
change of the credentials restarts K3s, removing them goes back to the plain file."""

from __future__ import annotations

import json
from typing import Any

import yaml

from components import registry_auth, scripts
from tests.scripts.awkward import TOKEN, awkward_config, settings_for
from tests.scripts.sandbox import Sandbox, mode, needs_sandbox

REGISTRIES = f"{scripts.CONF_DIR}/registries.yaml"
PASSWORD = "reg-pa\\ss  w$r'd\"x#1"  # a backslash, two spaces, $, ', " and #: JSON carries them as they are
AUTH = {"mirror.example.com:5000": {"password": PASSWORD}, "ghcr.io": {"username": "bot", "identity_token": "tok-9f"}}


def install(box: Sandbox, auth: dict[str, Any] | None, node: str = "cp1") -> tuple[str, str]:
    s = settings_for(awkward_config(), {"registryAuth"} if auth else set())
    target = next(n for n in s.nodes if n.name == node)
    script = scripts.install_script(target, s.k3s, first_server=target == s.nodes[0])
    line = registry_auth.registries_file(s.k3s.registries, json.dumps(auth)) if auth else None
    result = box.run(script, scripts.install_stdin(TOKEN, None, registries=line))
    assert result.returncode == 0, result.stderr
    return script.command, result.stdout + result.stderr


@needs_sandbox
def test_registry_credentials_land_in_the_0600_registries_file_from_stdin(box: Sandbox) -> None:
    command, output = install(box, AUTH)
    path = box.path(REGISTRIES)
    assert mode(path) == 0o600
    written = yaml.safe_load(path.read_text())  # JSON, which YAML (K3s's yaml.v2) reads as it is
    configs = written["configs"]
    # k3s.registries' own settings, with the credentials added; the username of config kept.
    assert configs["mirror.example.com:5000"]["auth"]["password"] == PASSWORD
    assert (
        configs["mirror.example.com:5000"]["auth"]["username"]
        == awkward_config()["k3s"]["registries"]["configs"]["mirror.example.com:5000"]["auth"]["username"]
    )
    assert configs["mirror.example.com:5000"]["tls"] == {"ca_file": "/etc/ssl/my ca's.pem"}
    assert configs["ghcr.io"] == {"auth": {"username": "bot", "identity_token": "tok-9f"}}
    assert written["mirrors"] == awkward_config()["k3s"]["registries"]["mirrors"]
    assert path.read_text().startswith(scripts.MANAGED_MARKER)
    for secret in (PASSWORD, "tok-9f"):
        assert secret not in command and secret not in output
        assert json.dumps(secret) not in command


@needs_sandbox
def test_changing_or_removing_registry_credentials_restarts_k3s(box: Sandbox) -> None:
    def restarts(auth: dict[str, Any] | None) -> int:
        before = len(box.systemctl("restart"))
        install(box, auth)
        return len(box.systemctl("restart")) - before

    assert restarts(AUTH) == 1
    assert restarts(AUTH) == 0
    assert restarts({**AUTH, "ghcr.io": {"username": "bot", "identity_token": "tok-rotated"}}) == 1
    assert restarts(None) == 1  # back to k3s.registries alone
    written = yaml.safe_load(box.path(REGISTRIES).read_text())
    assert "password" not in json.dumps(written) and "ghcr.io" not in written["configs"]
    assert mode(box.path(REGISTRIES)) == 0o600


@needs_sandbox
def test_agents_get_the_credentials_too(box: Sandbox) -> None:
    install(box, AUTH, node="w1")
    written = yaml.safe_load(box.path(REGISTRIES).read_text())
    assert written["configs"]["mirror.example.com:5000"]["auth"]["password"] == PASSWORD
