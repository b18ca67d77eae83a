"""K3s flag names: serverConfig/agentConfig keys and serverArgs/agentArgs flags are checked
against the flags of k3s.version's minor (components/data/k3s-flags.json)."""

from __future__ import annotations

from pathlib import Path

import pytest

from components import checks, compat, k3s_flags
from components.schema import load_schema
from components.settings import ConfigError
from tests.config_cases import (
    NS,
    base,
    messages,
    parse,
    problems_of,
)


def test_a_mistyped_k3s_flag_is_refused_with_the_flag_it_resembles() -> None:
    config = base()
    config["k3s"]["serverConfig"] = {"cluster-cidrs": "10.42.0.0/16", "kube-apiserver-arg+": ["a=b"]}
    config["k3s"]["agentArgs"] = ["--kubelet-arg=max-pods=150", "--node-labl", "a=b"]
    found = messages(config)
    assert set(found) == {NS + "k3s.serverConfig.cluster-cidrs", NS + "k3s.agentArgs[1]"}
    assert "did you mean 'cluster-cidr'" in found[NS + "k3s.serverConfig.cluster-cidrs"]
    assert "did you mean 'node-label'" in found[NS + "k3s.agentArgs[1]"]
    assert "K3s 1.33" in found[NS + "k3s.agentArgs[1]"]  # the minor of k3s.version


def test_a_server_only_flag_on_agents_is_refused_saying_where_it_belongs() -> None:
    config = base()
    config["k3s"]["agentConfig"] = {"disable": ["servicelb"]}
    message = messages(config)[NS + "k3s.agentConfig.disable"]
    assert "server flag" in message and "serverConfig" in message
    config["k3s"]["agentConfig"] = {}
    config["k3s"]["serverConfig"] = {"disable": ["servicelb"]}
    assert parse(config).k3s.server_config == {"disable": ["servicelb"]}


def test_real_flags_of_each_role_are_accepted_in_config_and_args() -> None:
    config = base()
    config["k3s"]["serverConfig"] = {
        "flannel-backend": "wireguard-native",
        "etcd-snapshot-schedule-cron": "0 */6 * * *",
        "etcd-s3": True,
        "secrets-encryption": True,
        "kubelet-arg+": ["max-pods=200"],  # an agent flag servers have too
        "disable": ["servicelb", "metrics-server"],
        "embedded-registry": True,
        "secrets-encryption-provider": "secretbox",  # a newer release's flag
    }
    config["k3s"]["agentConfig"] = {
        "protect-kernel-defaults": True,
        "node-external-ip": ["203.0.113.9"],
        "nonroot-devices": True,
    }
    config["k3s"]["serverArgs"] = ["--cluster-domain", "k8s.internal", "--debug", "-l", "/var/log/k3s.log"]
    config["k3s"]["agentArgs"] = ["--disable-apiserver-lb", "--kube-proxy-arg=metrics-bind-address=0.0.0.0"]
    settings = parse(config)
    assert settings.k3s.agent_args[0] == "--disable-apiserver-lb"


def test_flag_lists_cover_every_supported_minor_and_name_their_source() -> None:
    assert set(k3s_flags.known_minors()) == set(compat.K3S_MINORS)
    described = load_schema()["properties"]["k3s"]["properties"]["version"]["description"]
    assert f"1.{compat.K3S_MINORS[0]} to 1.{compat.K3S_MINORS[-1]}" in described  # the README says the same
    data = k3s_flags.load_data()
    assert set(data["minors"].values()) == set(data["sets"])  # no set without a minor
    for minor in compat.K3S_MINORS:
        flags = k3s_flags.flag_set(minor)
        assert flags is not None
        source = data["sets"][flags.name]["source"]
        assert source["repository"] == "k3s-io/k3s" and source["files"]
        # Every flag this program refuses or owns is a real K3s flag (else the refusal means nothing).
        refused = {*checks.SECRET_FLAGS, *checks.OWNED_FLAGS, *checks.DEFAULT_PATH_FLAGS}
        assert not {flags.long_name(n) for n in refused} - flags.server, minor
        assert {"cluster-init", "disable", "cluster-cidr", "tls-san"} <= flags.server - flags.agent
        assert {"node-ip", "kubelet-arg", "token-file", "server", "data-dir"} <= flags.agent & flags.server


def test_a_k3s_minor_outside_the_supported_ones_is_one_problem_with_or_without_rancher() -> None:
    config = base()
    config["k3s"]["version"] = "v1.36.0+k3s1"
    config["k3s"]["serverConfig"] = {"cluster-cidr": "10.42.0.0/16"}
    assert problems_of(config).keys == [NS + "k3s.version"]
    config["rancher"] = {"enabled": False}
    assert "1.27 to 1.35" in messages(config)[NS + "k3s.version"]


# Go source in both urfave/cli styles K3s has used (written for this test, not copied).
GO_SERVER = """package cmds
var (
	DataDirFlag = &cli.StringFlag{Name: "data-dir,d", Usage: "a {brace} in text"}
	Shared = &cli.StringFlag{
		Name:    "node-ip",
		Aliases: []string{"i"},
	}
)
// OldFlag = &cli.BoolFlag{Name: "commented-out"}
var ServerFlags = []cli.Flag{
	DataDirFlag,
	&cli.BoolFlag{Name: "cluster-init"},
	Shared,
	/* &cli.BoolFlag{Name: "also-commented"}, */
}
"""
GO_AGENT = """package cmds
func NewAgentCommand(action func(*cli.Context) error) *cli.Command {
	return &cli.Command{
		Name:  "agent",
		Flags: []cli.Flag{
			Shared,
			&cli.StringFlag{Name: "server", Aliases: []string{"s"}, EnvVars: []string{"K3S_URL"}},
		},
	}
}
"""


def test_the_refresh_parser_reads_k3s_flag_definitions_in_both_cli_styles(tmp_path: Path) -> None:
    server, agent, aliases = k3s_flags.parse_flags({"server.go": GO_SERVER, "agent.go": GO_AGENT})
    assert server == ["cluster-init", "data-dir", "node-ip"]
    assert agent == ["node-ip", "server"]
    assert aliases == {"d": "data-dir", "i": "node-ip", "s": "server"}
    with pytest.raises(ValueError, match="Unknown"):
        k3s_flags.parse_flags({"server.go": GO_SERVER.replace("Shared,\n\t/*", "Unknown,\n\t/*"), "agent.go": GO_AGENT})
    cmds = tmp_path / "pkg" / "cli" / "cmds"
    cmds.mkdir(parents=True)
    (cmds / "server.go").write_text(GO_SERVER)
    (cmds / "agent.go").write_text(GO_AGENT)
    data = {"sets": {"old": {}}, "minors": {"33": "old"}}
    updated = k3s_flags.refresh(tmp_path, "v1.33.9+k3s1", data)
    assert updated["minors"] == {"33": "v1.33.9+k3s1"} and list(updated["sets"]) == ["v1.33.9+k3s1"]
    assert updated["sets"]["v1.33.9+k3s1"]["source"]["tag"] == "v1.33.9+k3s1"
    assert data["minors"] == {"33": "old"}  # the input is not changed


def test_the_api_port_follows_https_listen_port_into_the_joins_and_the_host_scripts() -> None:
    """K3s serves the API (and /db/info, /ping) on https-listen-port: joining nodes, the install's
    port check and the server removal's member check use it; without it nothing changes."""
    from components import scripts
    from policy.shell_inputs import parse as parse_inputs

    default = parse(base())
    assert default.k3s.api_port == 6443 and default.k3s.server_url.endswith(":6443")
    install = parse_inputs(scripts.install_script(default.servers[0], default.k3s, first_server=True).body)
    assert install is not None and "API_PORT" not in install.variables
    for where in ("serverConfig", "serverArgs"):
        config = base()
        config["k3s"][where] = {"https-listen-port": 7443} if where == "serverConfig" else ["--https-listen-port=7443"]
        settings = parse(config)
        assert settings.k3s.api_port == 7443 and settings.k3s.server_url.endswith(":7443"), where
        install = parse_inputs(scripts.install_script(settings.servers[0], settings.k3s, first_server=True).body)
        assert install is not None and install.variables["API_PORT"] == "7443", where
        removal = parse_inputs(scripts.server_removal_script("cp2", 0, "root", api_port=settings.k3s.api_port).body)
        assert removal is not None and removal.variables["API_PORT"] == "7443"
        wait = parse_inputs(scripts.wait_script(["cp1"], settings.k3s, timeout=1, waits_for="x", user="root").body)
        assert wait is not None and "7443/tcp" in wait.variables["HINT"]


@pytest.mark.parametrize(
    ("where", "value", "key"),
    [
        ("serverConfig", "64k", "k3s-rancher:k3s.serverConfig.https-listen-port"),
        ("serverConfig", 70000, "k3s-rancher:k3s.serverConfig.https-listen-port"),
        ("serverArgs", "--https-listen-port=0", "k3s-rancher:k3s.serverArgs[0]"),
    ],
)
def test_an_https_listen_port_that_is_not_a_port_is_refused_by_key(where: str, value: object, key: str) -> None:
    config = base()
    config["k3s"][where] = {"https-listen-port": value} if where == "serverConfig" else [value]
    with pytest.raises(ConfigError) as caught:
        parse(config)
    assert caught.value.keys == [key]
    assert "is not a TCP port" in str(caught.value)
