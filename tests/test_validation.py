"""The config split by concern (issue 13): each section's validator is a pure function over
typed Settings (plus Facts) that returns problems by key; each topology (components/topologies)
runs the sections it takes;
file reads happen only in components/local_files.py; key names and given keys come from
components/schema.py."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path
from typing import Any

import pytest

from components import local_files, schema, topologies
from components.config import build, parse_settings
from components.settings import NAMESPACE, ConfigError, Node, Settings, SshEndpoint
from components.validation import Facts, docker, k3s, kubeconfig, nodes, rancher, ssh
from tests.harness import minimal_ssh_config

NS = f"{NAMESPACE}:"


def with_site(settings: Settings, **changes: Any) -> Settings:
    """`settings` with its topology's section changed (Settings.site, one variant per topology)."""
    return dataclasses.replace(settings, site=dataclasses.replace(settings.site, **changes))


def valid(config: dict[str, Any] | None = None, secrets: frozenset[str] = frozenset({"sshPrivateKey"})) -> Settings:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return parse_settings(config or minimal_ssh_config(), secrets, "test")


def docker_settings() -> Settings:
    return valid({"topology": "docker"}, frozenset())


def every_problem(settings: Settings, facts: Facts) -> list[tuple[str, str]]:
    """What the settings' topology finds, as parse_settings runs it."""
    return [p for validator in topologies.of(settings).validators() for p in validator(settings, facts)]


def keys(problems: list[tuple[str, str]]) -> list[str]:
    return [key.removeprefix(NS) for key, _ in problems]


def node(name: str, address: str, role: str = "agent", **extra: Any) -> Node:
    return Node(name=name, role=role, address=address, ssh=SshEndpoint(host=address, port=22, user="ubuntu"), **extra)


def test_every_section_of_the_schema_has_a_validator_and_each_runs_once() -> None:
    sections = {
        "servers": nodes,
        "agents": nodes,
        "agentPools": nodes,
        "k3s": k3s,
        "ssh": ssh,
        "docker": docker,
        "rancher": rancher,
    }
    assert set(schema.load_schema()["properties"]) - {"topology"} == set(sections)
    # The topology of an existing cluster has no section of its own: its rules are a module.
    modules = {m.__name__ for m in sections.values()} | {kubeconfig.__name__}
    shared = {nodes.__name__, k3s.__name__, rancher.__name__}
    every: set[str] = set()
    for topology in topologies.TOPOLOGIES.values():
        validators = topology.validators()
        used = {getattr(v, "func", v).__module__ for v in validators}
        assert shared <= used <= modules, topology.name
        assert len(used) == len(validators), topology.name  # each module's rules once
        every |= used
    assert every == modules


def test_valid_settings_have_no_problem_in_any_section() -> None:
    for settings in (valid(), docker_settings()):
        for validator in topologies.of(settings).validators():
            assert validator(settings, Facts()) == [], getattr(validator, "func", validator).__module__


def test_nodes_checks_each_node_once_and_uniqueness_across_roles() -> None:
    settings = with_site(
        valid(), agents=(node("cp1", "10.0.0.11", taints=("gpu=a:NoSchedule", "gpu=b:NoSchedule", "bad taint")),)
    )
    found = keys(nodes.problems(settings, Facts()))
    # name and address are also the server's; the SSH endpoint too (it defaults to the address)
    assert sorted(found) == sorted(
        ["agents[0].name", "agents[0].address", "agents[0].ssh", "agents[0].taints[1]", "agents[0].taints[2]"]
    )


def test_k3s_needs_a_named_init_server_with_several_servers_unless_given() -> None:
    two = (node("cp1", "10.0.0.11", "server"), node("cp2", "10.0.0.12", "server"))
    settings = with_site(valid(), servers=two)
    assert keys(k3s.problems(settings, Facts())) == ["k3s.initServer"]
    named = dataclasses.replace(settings, k3s=dataclasses.replace(settings.k3s, init_server="cp2"))
    assert k3s.problems(named, Facts(given=frozenset({"k3s.initServer"}))) == []
    wrong = dataclasses.replace(settings, k3s=dataclasses.replace(settings.k3s, init_server="cp9"))
    (problem,) = k3s.problems(wrong, Facts(given=frozenset({"k3s.initServer"})))
    assert problem[0] == NS + "k3s.initServer" and "'cp9' is not one of the servers (cp1, cp2)" in problem[1]


def test_k3s_reports_an_external_datastore_without_its_secret_and_unreadable_airgap_files() -> None:
    settings = valid()
    external = dataclasses.replace(settings, k3s=dataclasses.replace(settings.k3s, datastore="external"))
    facts = Facts(file_errors={"k3s.airgap.binary": "'/x' is not a readable file"})
    assert keys(k3s.problems(external, facts)) == ["datastoreEndpoint", "k3s.airgap.binary"]
    with_secret = dataclasses.replace(external, secrets_set=frozenset({"sshPrivateKey", "datastoreEndpoint"}))
    assert keys(k3s.problems(with_secret, Facts())) == []


def test_ssh_topology_rules_apply_to_ssh_stacks_only() -> None:
    settings = dataclasses.replace(valid(), secrets_set=frozenset())
    assert keys(ssh.problems(settings, Facts(given=frozenset({"docker"})))) == ["sshPrivateKey", "docker"]
    # The docker topology has no servers listed and no key: not the ssh topology's business.
    assert ssh.problems not in topologies.named("docker").validators()
    assert keys(every_problem(docker_settings(), Facts())) == []


def test_ssh_checks_a_node_login_only_where_it_is_given() -> None:
    settings = valid()
    agent = dataclasses.replace(settings.agents[0], ssh=dataclasses.replace(settings.agents[0].ssh, user="a b"))
    settings = with_site(settings, agents=(agent,))
    assert ssh.problems(settings, Facts()) == []  # not given: it would be ssh.user, checked there
    assert keys(ssh.problems(settings, Facts(given=frozenset({"agents[0].ssh.user"})))) == ["agents[0].ssh.user"]


def test_docker_refuses_what_it_cannot_do_and_only_on_docker_stacks() -> None:
    settings = docker_settings()
    facts = Facts(given=frozenset({"ssh", "k3s.apiAddress"}))
    assert keys(docker.problems(settings, facts)) == ["ssh", "k3s.apiAddress"]
    clash = with_site(settings, docker=dataclasses.replace(settings.docker, api_port=8443))
    assert keys(docker.problems(clash, Facts())) == ["docker.httpPorts[1]"]
    # A docker Settings holds no listed nodes (Settings.site is the docker variant): nodes the
    # config lists are refused by their key.
    assert settings.servers == settings.agents == settings.agent_pools == ()
    listed = frozenset({"servers", "servers[0]", "agentPools", "agentPools[0]"})
    assert keys(docker.problems(settings, Facts(given=listed))) == ["servers", "agentPools"]
    assert docker.problems not in topologies.named("ssh").validators()


def test_rancher_is_checked_only_when_enabled_and_reports_its_unreadable_files_by_key() -> None:
    settings = valid()
    secret_tls = dataclasses.replace(settings.rancher, tls="secret")
    facts = Facts(file_errors={"rancher.tlsCert": "'/no' is neither PEM text nor a readable file"})
    found = rancher.problems(dataclasses.replace(settings, rancher=secret_tls), facts)
    # an unreadable certificate is one problem, not also "required"
    assert sorted(found) == [
        (NS + "rancher.tlsCert", "'/no' is neither PEM text nor a readable file"),
        (NS + "rancherTlsKey", "required with tls secret: pulumi config set --secret rancherTlsKey < key.pem"),
    ]
    disabled = dataclasses.replace(secret_tls, enabled=False)
    assert rancher.problems(dataclasses.replace(settings, rancher=disabled), facts) == []


def test_rancher_needs_a_hostname_for_a_dns_api_address_and_checks_a_given_one() -> None:
    settings = valid()
    dns_api = dataclasses.replace(settings.k3s, api_address="k3s.example.com")
    no_name = dataclasses.replace(settings, k3s=dns_api, rancher=dataclasses.replace(settings.rancher, hostname=""))
    assert keys(rancher.problems(no_name, Facts())) == ["rancher.hostname"]
    bad = dataclasses.replace(no_name, rancher=dataclasses.replace(settings.rancher, hostname="bad_name"))
    assert keys(rancher.problems(bad, Facts(given=frozenset({"rancher.hostname"})))) == ["rancher.hostname"]


def test_validators_read_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Local files reach the validators only as Facts: with every read refused, they still run."""
    config = minimal_ssh_config()
    config["rancher"] = {"chartRepo": str(tmp_path / "rancher.tgz"), "tlsCert": str(tmp_path / "tls.crt")}
    config["k3s"]["airgap"] = {"installScript": str(tmp_path / "install.sh"), "binary": str(tmp_path / "k3s")}
    raw = schema.apply_defaults(schema.load_schema(), config)
    settings = build(raw, schema.given_keys(config), frozenset({"sshPrivateKey"}), "test")
    files = local_files.read(settings)
    assert set(files.errors) == {
        "rancher.chartRepo",
        "rancher.tlsCert",
        "k3s.airgap.installScript",
        "k3s.airgap.binary",
    }

    def refuse(*_: Any, **__: Any) -> Any:
        raise AssertionError("a validator touched the disk")

    for name in ("read_text", "read_bytes", "is_file", "exists", "is_dir", "open", "stat"):
        monkeypatch.setattr(Path, name, refuse)
    facts = Facts(given=schema.given_keys(config), file_errors=files.errors)
    found = keys(every_problem(settings, facts))
    assert set(files.errors) <= set(found)


def test_local_files_reads_nothing_of_a_disabled_rancher() -> None:
    settings = valid()
    unused = dataclasses.replace(settings.rancher, enabled=False, tls_cert="/nonexistent", chart_repo="/nonexistent")
    files = local_files.read(dataclasses.replace(settings, rancher=unused))
    assert (dict(files.errors), dict(files.texts)) == ({}, {})


def test_keys_are_named_as_pulumi_config_shows_them_and_given_keys_list_what_the_stack_set() -> None:
    assert schema.key(["servers", 1, "name"]) == "k3s-rancher:servers[1].name"
    assert schema.key(["k3s", "registries", "mirrors", "docker.io"]) == "k3s-rancher:k3s.registries.mirrors.docker.io"
    assert schema.key([]) == "k3s-rancher"
    given = schema.given_keys({"k3s": {"initServer": "cp1"}, "servers": [{"name": "cp1", "ssh": {"user": "u"}}]})
    assert {"k3s", "k3s.initServer", "servers", "servers[0]", "servers[0].name", "servers[0].ssh.user"} <= given
    assert "k3s.apiAddress" not in given and "rancher" not in given


def test_a_pem_path_that_cannot_be_a_path_is_a_config_problem_not_a_traceback() -> None:
    config = minimal_ssh_config()
    config["rancher"] = {"tls": "secret", "tlsCert": "/etc/tls\x00.crt"}
    with pytest.raises(ConfigError) as caught:
        valid(config, frozenset({"sshPrivateKey", "rancherTlsKey"}))
    assert caught.value.keys == [NS + "rancher.tlsCert"]
    assert "neither PEM text nor a readable file" in caught.value.problems[0][1]
