"""The policy pack's pure rules (policy/rules.py) and shell_inputs (policy/shell_inputs.py), fed
crafted inputs. The pack over the example stacks and through pulumi-policy: test_policy_pack.py."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from components import scripts
from components.config import parse_settings
from policy import rules
from policy.shell_inputs import ScriptInputs, command_inputs, parse, unwrap

REMOTE, LOCAL = rules.REMOTE_COMMAND, rules.LOCAL_COMMAND
AWKWARD = "a b 'c' \"d\" $(id) `id` ;rm -rf /\nnext"


def settings() -> Any:
    return parse_settings(
        {"servers": [{"name": "cp1", "address": "10.0.0.11"}], "rancher": {"enabled": False}}, {"sshPrivateKey"}
    )


def install(**variables: str) -> str:
    s = settings()
    script = scripts.install_script(s.servers[0], s.k3s, first_server=True)
    if not variables:
        return script.command
    parsed = parse(script.body)
    assert parsed is not None
    return scripts.render("install_node", {**parsed.variables, **variables}, parsed.args, sudo=True).command


def command(create: str, **extra: Any) -> dict[str, Any]:
    return {"create": create, "update": create, "addPreviousOutputInEnv": False, **extra}


# --- shell_inputs ----------------------------------------------------------------------------


def test_inputs_are_read_back_exactly_from_any_rendered_command() -> None:
    variables = {"ONE": AWKWARD, "TWO": "", "THREE": "plain", "FOUR": "}\n{\nset -- x\n}"}
    args = [AWKWARD, "", "}", "--flag=value with spaces"]
    for sudo in (True, False):
        script = scripts.render("drain_delete", variables, args, sudo=sudo)
        assert command_inputs(script.command) == ScriptInputs("drain_delete", variables, tuple(args))
        assert unwrap(script.command) == script.body
    docker = f"docker exec 'k3s-server-0' {scripts.render('read_kubeconfig', {'WAIT_FOR': 'x'}, sudo=False).command}"
    assert command_inputs(docker) == ScriptInputs("read_kubeconfig", {"WAIT_FOR": "x"}, ())


def test_text_that_is_not_a_rendered_command_has_no_inputs() -> None:
    for text in ("echo hi", "sh -c 'echo hi'", "sh -c 'unterminated", "", "sudo sh -c 'a' extra"):
        assert command_inputs(text) is None
    assert command_inputs(None) is None and command_inputs(rules.UNKNOWN) is None
    # a preamble without the group (as rendered before it had one) still reads
    assert parse("# old: inputs\nA='x y'\nset -- 'z'\n\nbody") == ScriptInputs("old", {"A": "x y"}, ("z",))
    assert parse("# broken: inputs\n{\nA=$(id)x\nset --\n}") == ScriptInputs("broken", {"A": "$(id)x"}, ())
    assert parse("# bad: inputs\n{\necho hi\nset --\n}") is None


# --- the rules, with crafted inputs ----------------------------------------------------------


def test_k3s_version_pinned() -> None:
    check = rules.check_k3s_version_pinned
    assert check(REMOTE, command(install())) == []
    assert check(REMOTE, command(install(K3S_VERSION="stable")))
    assert check(REMOTE, command(install(K3S_VERSION="v1.33")))
    assert check(LOCAL, command("curl -sfL https://get.k3s.io | INSTALL_K3S_CHANNEL=latest sh -"))
    assert check(rules.REMOTE_IMAGE, {"name": "rancher/k3s:v1.33.5-k3s1"}) == []
    assert check(rules.REMOTE_IMAGE, {"name": "docker.io/rancher/k3s@sha256:" + "a" * 64}) == []
    for image in ("rancher/k3s:latest", "rancher/k3s", "mirror.example.com:5000/rancher/k3s:stable"):
        assert check(rules.REMOTE_IMAGE, {"name": image}), image
    assert check(rules.CONTAINER, {"image": "rancher/k3s:latest"})
    assert check(rules.CONTAINER, {"image": "sha256:" + "b" * 64}) == []  # an image id: see its RemoteImage
    assert check(rules.REMOTE_IMAGE, {"name": "rancher/rancher:latest"}) == []  # not K3s


def test_secrets_off_the_command_line() -> None:
    check = rules.check_secrets_off_the_command_line
    stdin = "tok-0123456789abcdef\n\n"
    assert check(REMOTE, command(install(), stdin=stdin)) == []
    assert check(REMOTE, command(install(), stdin=rules.UNKNOWN)) == []
    assert check(REMOTE, command(install()))  # the install reads the token on stdin
    leaked = command(install(NODE_NAME="tok-0123456789abcdef"), stdin=stdin)
    assert check(REMOTE, leaked)
    assert check(REMOTE, command("echo hi", stdin=stdin, triggers=["tok-0123456789abcdef"]))
    assert check(LOCAL, command("echo hi", stdin=stdin, environment={"X": "tok-0123456789abcdef"}))
    assert check(REMOTE, command("K3S_TOKEN=abc sh install.sh"))
    assert check(REMOTE, command("sh install.sh server --token abc"))
    assert check(REMOTE, command("sh install.sh --datastore-endpoint=mysql://u:p@db/k3s"))
    assert check(REMOTE, command('K3S_DATASTORE_ENDPOINT=$DATASTORE_ENDPOINT; K3S_TOKEN_FILE="$F"')) == []
    s = settings()
    with_args = scripts.render("install_node", {"CONFIG_YAML": "x"}, ["--token", "abc"], sudo=False).command
    assert check(REMOTE, command(with_args, stdin=stdin))
    config_with_token = scripts.managed_yaml(
        {**scripts.node_config(s.servers[0], s.k3s, first_server=True), "token": "x"}
    )
    assert check(REMOTE, command(install(CONFIG_YAML=config_with_token), stdin=stdin))
    assert check(rules.CONTAINER, {"envs": ["K3S_TOKEN_FILE=/etc/rancher/k3s/cluster-token"]}) == []
    assert check(rules.CONTAINER, {"envs": ["K3S_TOKEN=abc"]})
    assert check(rules.CONTAINER, {"envs": ["CATTLE_BOOTSTRAP_PASSWORD=abc"]})
    assert check(rules.CONTAINER, {"command": ["server", "--token=abc"]})
    assert check(rules.CONTAINER, {"uploads": [{"file": "/etc/rancher/k3s/config.yaml", "content": "token: abc\n"}]})


def test_rancher_serves_tls() -> None:
    check = rules.check_rancher_serves_tls
    release = {"name": "rancher", "chart": "rancher", "values": {"hostname": "r.example.com"}}
    assert check(rules.HELM_RELEASE, release) == []
    for values in (
        {"tls": "external"},
        {"ingress": {"enabled": False}},
        {"ingress": {"tls": {"source": "none"}}},
        {"ingress": {"tls": {"source": "letsEncrypt"}}},
    ):
        assert check(rules.HELM_RELEASE, {**release, "values": values}), values
    ok = {"ingress": {"tls": {"source": "letsEncrypt"}}, "letsEncrypt": {"email": "ops@example.com"}}
    assert check(rules.HELM_RELEASE, {**release, "values": ok}) == []
    local_chart = {"name": "x", "chart": "/charts/rancher-2.12.3.tgz", "values": {"tls": "external"}}
    assert check(rules.HELM_RELEASE, local_chart)
    cert_manager = {"name": "cert-manager", "chart": "cert-manager", "values": {"tls": "external"}}
    assert check(rules.HELM_RELEASE, cert_manager) == []
    assert check(rules.RANCHER2_PROVIDER, {"apiUrl": "https://rancher.example.com"}) == []
    assert check(rules.RANCHER2_PROVIDER, {"apiUrl": "http://rancher.example.com"})


@pytest.mark.parametrize(
    ("mode", "readable"),
    [
        *[("644", True), ("0644", True), ("0604", True), ("600", False), ("0600", False), ("0640", False)],
        *[("o+r", True), ("a+r", True), ("+r", True), ("u+r", False), ("go-rwx", False)],
    ],
)
def test_world_readable_modes(mode: str, readable: bool) -> None:
    assert rules.world_readable(mode) is readable


def test_kubeconfig_not_world_readable() -> None:
    check = rules.check_kubeconfig_not_world_readable
    s = settings()
    config = scripts.node_config(s.servers[0], s.k3s, first_server=True)
    assert check(REMOTE, command(install())) == []
    world = scripts.managed_yaml({**config, "write-kubeconfig-mode": "0644"})
    assert check(REMOTE, command(install(CONFIG_YAML=world)))
    group = scripts.managed_yaml({**config, "write-kubeconfig-mode": "0640"})
    assert check(REMOTE, command(install(CONFIG_YAML=group))) == []
    flag = scripts.render("install_node", {"CONFIG_YAML": "x"}, ["--write-kubeconfig-mode", "644"], sudo=False)
    assert check(REMOTE, command(flag.command))
    assert check(REMOTE, command("sudo -n chmod 644 /etc/rancher/k3s/k3s.yaml"))
    assert check(REMOTE, command("chmod 0600 /etc/rancher/k3s/k3s.yaml")) == []
    assert check(rules.CONTAINER, {"command": ["server", "--write-kubeconfig-mode=666"]})
    assert check(rules.CONTAINER, {"envs": ["K3S_KUBECONFIG_MODE=644"]})
    upload = {"file": "/etc/rancher/k3s/config.yaml", "content": "write-kubeconfig-mode: '0644'\n"}
    assert check(rules.CONTAINER, {"uploads": [upload]})


def test_no_previous_output_in_env() -> None:
    check = rules.check_no_previous_output_in_env
    assert check(REMOTE, {"create": "x", "addPreviousOutputInEnv": False}) == []
    (problem,) = check(REMOTE, {"create": "x"})  # the provider's default is true
    # The true reason: pulumi-command 1.x only warns on a refused setenv of the previous
    # output and runs the command; what the setting prevents is the output being shipped.
    assert "previous output" in problem and "warning" in problem and "fail" not in problem
    assert check(LOCAL, {"create": "x", "addPreviousOutputInEnv": True})
    assert check(rules.CONTAINER, {}) == []


def test_sudo_non_interactive() -> None:
    check = rules.check_sudo_non_interactive
    assert check(REMOTE, command(install())) == []
    assert check(REMOTE, command("sudo -E -n sh -c 'x'")) == []
    assert check(REMOTE, command("sudo sh -c 'x'"))
    assert check(REMOTE, command("true && sudo -E sh -c 'x'"))


def test_ssh_host_keys_checked() -> None:
    check = rules.check_ssh_host_keys
    key = "ssh-ed25519 " + base64.b64encode(b"\0\0\0\x0bssh-ed25519").decode()
    assert check(REMOTE, {"connection": {"host": "h", "hostKey": key}}) == []
    assert check(REMOTE, {"connection": {"host": "h"}})
    assert check(rules.COPY_TO_REMOTE, {"connection": {"host": "h"}})
    proxied = {"connection": {"host": "h", "hostKey": key, "proxy": {"host": "jump"}}}
    assert check(REMOTE, proxied) == ["the host key of the bastion jump is not checked: set ssh.bastion.hostKey"]
    assert check(LOCAL, {}) == []


def test_secret_output_hidden() -> None:
    check = rules.check_secret_output_hidden
    read = scripts.kubeconfig_script("ubuntu", "x").command
    assert check(REMOTE, command(read, logging="none"), ["stdout", "stderr"]) == []
    assert len(check(REMOTE, command(read), [])) == 2
    assert check(LOCAL, command("docker exec n k3s kubectl config view --raw", logging="none"), ["stdout"])
    assert check(REMOTE, command("echo hi"), []) == []


def test_one_k3s_version() -> None:
    one = [(REMOTE, "urn:a", command(install())), (rules.REMOTE_IMAGE, "urn:b", {"name": "rancher/k3s:v1.33.5-k3s1"})]
    assert rules.check_one_k3s_version(one) == []
    two = [*one, (REMOTE, "urn:c", command(install(K3S_VERSION="v1.32.9+k3s1")))]
    ((urn, message),) = rules.check_one_k3s_version(two)
    assert urn is None and "v1.32.9+k3s1" in message and "v1.33.5+k3s1" in message
