"""No secret in plain text: every example stack (and variants that use every secret) runs
under mocks with a distinctive value for each secret, and the test looks for those values
in everything the engine would receive and keep:

- every resource input, outside the fields sent as secrets;
- every stack output, outside secret outputs;
- every command's text (create/update/delete), which must not be secret at all (a readable
  `pulumi preview --diff` depends on it);
- Python warnings the program emits.

Plus: commands that print a secret (the admin kubeconfig) keep stdout/stderr secret
(additionalSecretOutputs) and log nothing; the kubeconfig and password outputs are secret;
stdin that carries secrets is secret.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from components import bundle
from components.settings import SECRET_KEYS, ConfigError
from policy import rules
from tests.harness import (
    GENERATED_PASSWORD,
    K3S_KUBECONFIG,
    SECRET_SIG,
    TEST_SSH_KEY,
    Run,
    leaves,
    load_stack_config,
    run_program,
    stdin_values,
)

ROOT = Path(__file__).resolve().parent.parent
STACKS = sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in (ROOT / "stacks").glob("Pulumi.*.yaml"))
PEM_CERT = "-----BEGIN CERTIFICATE-----\nMIIBcert\n-----END CERTIFICATE-----\n"

# One distinctive value per secret; for multi-line ones, the line to look for is distinctive.
SECRETS = {
    "token": "tok-SECRET-4b1d9a7e22c0",
    "newToken": "newtok-SECRET-c81f3a05",
    "sshPrivateKey": "-----BEGIN OPENSSH PRIVATE KEY-----\nsshkey-SECRET-b3e1f0aa\n-----END OPENSSH PRIVATE KEY-----\n",
    "sshPrivateKeyPassword": "keypass-SECRET-9c2d31",
    "datastoreEndpoint": "postgres://k3s:dbpass-SECRET-77aa@db.example.com:5432/k3s",
    "rancherBootstrapPassword": "bootstrap-SECRET-5e6f12",
    "rancherTlsKey": "-----BEGIN PRIVATE KEY-----\ntlskey-SECRET-0d0d4c\n-----END PRIVATE KEY-----\n",
    "kubeconfig": K3S_KUBECONFIG.replace("Q0xJRU5ULUtFWS1TRUNSRVQ=", "kubecfg-SECRET-41c9e0"),
    "etcdS3AccessKey": "s3access-SECRET-6a1f",
    "etcdS3SecretKey": "s3secret-SECRET-90be",
    "proxyCredentials": "proxy-user:proxypass-SECRET-6a3e",
    "registryAuth": '{"registry.example.com:5000": {"username": "ci-SECRET-user", "password": "regpass-SECRET-31d7"}}',
}
assert set(SECRETS) == set(SECRET_KEYS)
# What must never show: each secret's distinctive part, what the mocks generate (tokens,
# passwords) and the client key inside the mock kubeconfig.
NEEDLES = [
    "tok-SECRET-4b1d9a7e22c0",
    "newtok-SECRET-c81f3a05",
    "sshkey-SECRET-b3e1f0aa",
    "keypass-SECRET-9c2d31",
    "dbpass-SECRET-77aa",
    "bootstrap-SECRET-5e6f12",
    "tlskey-SECRET-0d0d4c",
    "kubecfg-SECRET-41c9e0",
    "s3access-SECRET-6a1f",
    "s3secret-SECRET-90be",
    "proxypass-SECRET-6a3e",
    "regpass-SECRET-31d7",
    "ci-SECRET-user",
    GENERATED_PASSWORD,
    "Q0xJRU5ULUtFWS1TRUNSRVQ=",
]
COMMANDS = ("command:remote:Command", "command:local:Command")


def plain_leaves(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """(path, text) of every string outside the secret wrappers of a wire-form value."""
    return ((p, v) for p, v, secret in leaves(value, path) if not secret and isinstance(v, str))


def run_with_secrets(config: dict[str, Any], stack: str, secrets: dict[str, str]) -> Run:
    """Run with as many of `secrets` as the topology accepts (docker refuses the SSH key)."""
    secrets = dict(secrets)
    for _ in SECRET_KEYS:
        try:
            return run_program(config, secrets, stack=stack)
        except ConfigError as error:
            refused = {key.split(":", 1)[1] for key in error.keys} & set(secrets)
            if not refused:
                raise
            for key in refused:
                del secrets[key]
    raise AssertionError("unreachable")


def dev_using_every_secret() -> dict[str, Any]:
    config, _ = load_stack_config("dev")
    config["k3s"]["datastore"] = "external"
    config["rancher"] = {"enabled": True, "tls": "secret", "tlsCert": PEM_CERT, "bootstrap": True}
    return config


def prod_etcd_s3() -> dict[str, Any]:
    config, _ = load_stack_config("prod")
    config["k3s"]["etcdSnapshots"] = {"retention": 10, "s3": {"endpoint": "s3.example.com", "bucket": "snaps"}}
    return config


def dev_with_proxy() -> dict[str, Any]:
    """k3s.proxy set: the proxyCredentials secret is accepted."""
    config, _ = load_stack_config("dev")
    config["k3s"]["proxy"] = {"httpsProxy": "http://proxy.example.com:3128"}
    return config


def local_external() -> dict[str, Any]:
    config, _ = load_stack_config("local")
    config["k3s"]["datastore"] = "external"
    return config


def stack_file(stack: str) -> Callable[[], dict[str, Any]]:
    return lambda: load_stack_config(stack)[0]


VARIANTS: dict[str, tuple[str, Callable[[], dict[str, Any]]]] = {stack: (stack, stack_file(stack)) for stack in STACKS}
VARIANTS["dev-every-secret"] = ("dev", dev_using_every_secret)
VARIANTS["prod-etcd-s3"] = ("prod", prod_etcd_s3)
VARIANTS["dev-proxy"] = ("dev", dev_with_proxy)
VARIANTS["existing-cluster"] = ("shared", lambda: {"topology": "kubeconfig", "rancher": {"hostname": "r.example.com"}})
if "local" in STACKS:
    VARIANTS["local-external-datastore"] = ("local", local_external)


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def stack_run(request: pytest.FixtureRequest) -> tuple[str, Run]:
    stack, make = VARIANTS[request.param]
    return request.param, run_with_secrets(make(), stack, SECRETS)


@pytest.fixture(scope="module", params=[s for s in STACKS if s != "local"])
def generated_run(request: pytest.FixtureRequest) -> Run:
    """The token and Rancher passwords generated (no secrets set but the SSH key)."""
    config, _ = load_stack_config(request.param)
    return run_program(config, {"sshPrivateKey": SECRETS["sshPrivateKey"]}, stack=request.param)


def test_every_stack_file_is_covered() -> None:
    assert {"dev", "prod"} <= set(STACKS)


def leaks(run: Run) -> list[str]:
    found = []
    for r in run.registrations:
        for path, text in plain_leaves(r.inputs):
            found += [f"{r.type} {r.name} input {path}: {n}" for n in NEEDLES if n in text]
    for path, text in plain_leaves(run.outputs):
        found += [f"stack output {path}: {n}" for n in NEEDLES if n in text]
    for warning in run.warnings:
        found += [f"warning: {n}" for n in NEEDLES if n in warning]
    return found


def test_the_search_sees_plain_text_and_skips_secrets() -> None:
    wire = {"a": "x", "b": {SECRET_SIG: "1b47061264138c4ac30d75fd1eb44270", "value": "hidden"}, "c": [{"d": "y"}]}
    assert list(plain_leaves(wire)) == [("a", "x"), ("c[0].d", "y")]
    doctored = Run(outputs={"apiServer": f"https://x/{NEEDLES[0]}"})
    assert leaks(doctored) == [f"stack output apiServer: {NEEDLES[0]}"]


def test_no_secret_in_plain_text_anywhere(stack_run: tuple[str, Run]) -> None:
    name, run = stack_run
    assert run.registrations, name
    assert leaks(run) == []


def test_generated_secrets_stay_secret_too(generated_run: Run) -> None:
    assert leaks(generated_run) == []


def test_the_secrets_were_really_used(stack_run: tuple[str, Run]) -> None:
    """Guards the test above: each secret the variant accepts does reach some secret input."""
    name, run = stack_run
    secret_text = " ".join(str(value) for r in run.registrations for value in _secret_values(r.inputs)) + " ".join(
        str(v) for v in _secret_values(run.outputs)
    )
    expected = ["tok-SECRET-4b1d9a7e22c0", "Q0xJRU5ULUtFWS1TRUNSRVQ="]
    if name == "existing-cluster":  # no token, no node: the kubeconfig given, and Rancher's
        expected = ["kubecfg-SECRET-41c9e0", "bootstrap-SECRET-5e6f12"]
    if name == "dev-every-secret":
        expected += ["sshkey-SECRET-b3e1f0aa", "dbpass-SECRET-77aa", "bootstrap-SECRET-5e6f12", "tlskey-SECRET-0d0d4c"]
        expected += ["regpass-SECRET-31d7"]  # in every install's stdin
    if name == "local-external-datastore":
        expected += ["dbpass-SECRET-77aa"]
    if name == "prod-etcd-s3":
        expected += ["s3access-SECRET-6a1f", "s3secret-SECRET-90be"]
    for needle in expected:
        assert needle in secret_text, f"{name}: {needle} reached no secret input"


def _secret_values(value: Any) -> Iterator[Any]:
    return (held for _, held, secret in leaves(value) if secret)


def test_command_text_is_never_secret_and_stdin_always_is(stack_run: tuple[str, Run]) -> None:
    _, run = stack_run
    for r in run.registrations:
        if r.type not in COMMANDS:
            continue
        paths = r.secret_paths()
        for field in ("create", "update", "delete"):
            assert field not in paths, f"{r.name}.{field} is secret: previews would show nothing"
            assert field not in r.inputs or isinstance(r.inputs[field], str), f"{r.name}.{field}"
        if r.name.endswith("-scripts"):
            # The scripts bundle: public code, shown as it is; no secret in it.
            assert r.inputs["stdin"] == bundle.current_bundle().text and "stdin" not in paths, r.name
            continue
        if "stdin" in r.inputs:
            assert "stdin" in paths, f"{r.name}: stdin carries the token but is not secret"


def test_commands_that_print_secrets_keep_their_output_secret_and_unlogged(stack_run: tuple[str, Run]) -> None:
    name, run = stack_run
    printing = [r for r in run.registrations if r.type in COMMANDS and rules.prints_secret(r.plain())]
    # The kubeconfig read, on the clusters this program builds; no command on an existing one.
    assert [r.name for r in printing] == ([] if name == "existing-cluster" else [f"{name.split('-')[0]}-kubeconfig"])
    for r in printing:
        assert {"stdout", "stderr"} <= set(r.options["additionalSecretOutputs"]), r.name
        assert r.plain().get("logging") == "none", r.name


def test_secret_outputs_are_secret(stack_run: tuple[str, Run]) -> None:
    _, run = stack_run
    for key in ("kubeconfig", "rancherBootstrapPassword", "rancherAdminPassword"):
        if key in run.outputs:
            assert SECRET_SIG in run.outputs[key], f"stack output {key} is not secret"
    assert "kubeconfig" in run.outputs
    for key in ("apiServer", "k3sVersion", "nodes"):
        if key in run.outputs or key != "k3sVersion":  # no K3s version on an existing cluster
            assert SECRET_SIG not in (run.outputs[key] if isinstance(run.outputs[key], dict) else {}), key


def test_the_kubernetes_provider_gets_the_kubeconfig_as_a_secret(stack_run: tuple[str, Run]) -> None:
    _, run = stack_run
    (provider,) = run.of_type("pulumi:providers:kubernetes")
    assert "kubeconfig" in provider.secret_paths()


def test_registry_credentials_reach_every_install_only_on_its_secret_stdin() -> None:
    """Issue 24 item 6: the registryAuth secret becomes the whole registries.yaml (with
    k3s.registries), on every node install's stdin (REGISTRIES_WITH_AUTH), and nowhere else."""
    config, _ = load_stack_config("dev")
    config["k3s"]["registries"] = {"mirrors": {"docker.io": {"endpoint": ["https://registry.example.com:5000"]}}}
    run = run_program(config, {"sshPrivateKey": TEST_SSH_KEY, "registryAuth": SECRETS["registryAuth"]}, stack="dev")
    installs = [r for r in run.registrations if r.type == COMMANDS[0] and r.name.endswith("-install")]
    assert installs
    for r in installs:
        assert "stdin" in r.secret_paths(), r.name
        entry = stdin_values(str(r.plain()["stdin"]))["REGISTRIES_WITH_AUTH"]
        assert yaml.safe_load(entry) == {
            "mirrors": {"docker.io": {"endpoint": ["https://registry.example.com:5000"]}},
            "configs": {
                "registry.example.com:5000": {"auth": {"username": "ci-SECRET-user", "password": "regpass-SECRET-31d7"}}
            },
        }, r.name
    assert leaks(run) == []


@pytest.mark.parametrize(
    ("value", "key", "words"),
    [
        ("not json", "k3s-rancher:registryAuth", "JSON object"),
        ('{"bad host!": {"username": "u", "password": "p-SECRET"}}', "k3s-rancher:registryAuth.bad host!", "host"),
        ('{"r.example.com": {"token": "t-SECRET"}}', "k3s-rancher:registryAuth.r.example.com.token", "identity_token"),
        ('{"r.example.com": {"password": "p-SECRET"}}', "k3s-rancher:registryAuth.r.example.com.password", "username"),
        (
            '{"r.example.com": {"username": "u", "password": "p\\nSECRET"}}',
            "k3s-rancher:registryAuth.r.example.com.password",
            "one",
        ),
    ],
)
def test_a_registry_auth_secret_of_the_wrong_shape_is_refused_by_key_without_its_value(
    value: str, key: str, words: str
) -> None:
    config, _ = load_stack_config("dev")
    with pytest.raises(ConfigError) as caught:
        run_program(config, {"sshPrivateKey": TEST_SSH_KEY, "registryAuth": value})
    assert caught.value.keys == [key]
    assert words in str(caught.value) and "SECRET" not in str(caught.value)


def test_registry_auth_and_a_plain_field_for_the_same_host_are_refused() -> None:
    config, _ = load_stack_config("dev")
    config["k3s"]["registries"] = {"configs": {"r.example.com": {"auth": {"username": "ci"}}}}
    secret = '{"r.example.com": {"username": "ci", "password": "p-SECRET"}}'
    with pytest.raises(ConfigError) as caught:
        run_program(config, {"sshPrivateKey": TEST_SSH_KEY, "registryAuth": secret})
    assert caught.value.keys == ["k3s-rancher:registryAuth.r.example.com.username"]
    # The username in config, the password in the secret: accepted.
    run_program(config, {"sshPrivateKey": TEST_SSH_KEY, "registryAuth": '{"r.example.com": {"password": "p"}}'})


def test_a_registry_password_in_plain_config_names_the_secret_to_use() -> None:
    config, _ = load_stack_config("dev")
    config["k3s"]["registries"] = {"configs": {"r.example.com": {"auth": {"username": "ci", "password": "plain-pw"}}}}
    with pytest.raises(ConfigError) as caught:
        run_program(config, {"sshPrivateKey": TEST_SSH_KEY})
    assert caught.value.keys == ["k3s-rancher:k3s.registries.configs.r.example.com.auth.password"]
    assert "pulumi config set --secret registryAuth" in str(caught.value)


def test_a_secret_stored_as_plain_text_is_refused_naming_its_key() -> None:
    config, _ = load_stack_config("dev")
    config["token"] = "plain-text-token-value"  # `pulumi config set token ...` without --secret
    with pytest.raises(ConfigError) as caught:
        run_program(config, {"sshPrivateKey": TEST_SSH_KEY})
    assert caught.value.keys == ["k3s-rancher:token"]
    assert "plain-text-token-value" not in str(caught.value)
    assert "pulumi config set --secret token" in str(caught.value)
