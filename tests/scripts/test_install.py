"""install_node.sh run in the sandbox: the token file, the args and environment the installer
gets, when K3s restarts, and how a failing install is reported."""

from __future__ import annotations

import hashlib
import json
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from components import scripts
from policy.shell_inputs import parse as parse_inputs
from tests.scripts.awkward import AWKWARD, ENDPOINT, TOKEN, awkward_config, settings_for
from tests.scripts.sandbox import Sandbox, install, k3s_command_line, mode, needs_sandbox, stdin, with_inputs
from tests.scripts.standins import INSTALLER


@needs_sandbox
def test_install_keeps_the_token_in_a_0600_file_and_passes_args_as_given(box: Sandbox, tmp_path: Path) -> None:
    s = settings_for(awkward_config())
    node = s.servers[0]
    assert node.ssh.user != "root"  # through the sudo stand-in, which insists on -n
    script = scripts.install_script(node, s.k3s, first_server=True)
    trace = tmp_path / "execve.trace" if shutil.which("strace") else None
    result = box.run(script, stdin(), trace=trace)
    assert result.returncode == 0, result.stderr

    token_file = box.path(scripts.TOKEN_FILE)
    assert token_file.read_text() == TOKEN + "\n"
    assert mode(token_file) == 0o600
    config = box.path(f"{scripts.CONF_DIR}/config.yaml")
    inputs = parse_inputs(script.body)
    assert inputs is not None
    assert config.read_text() == inputs.variables["CONFIG_YAML"] + "\n"
    assert mode(config) == 0o600
    assert "token-file: /etc/rancher/k3s/cluster-token" in config.read_text()
    assert mode(box.path(f"{scripts.CONF_DIR}/registries.yaml")) == 0o600

    (installed,) = box.records("installer")
    assert installed["argv"] == ["server"]  # the extra args are in config.yaml, not the installer's
    expected = {f"--kube-apiserver-arg={AWKWARD}", f"--kubelet-arg={AWKWARD}", "--node-external-ip=203.0.113.5"}
    assert expected <= set(k3s_command_line(box))  # every extra arg reaches K3s as written
    env = installed["env"]
    assert env["INSTALL_K3S_VERSION"] == "v1.33.5+k3s1" and env["INSTALL_K3S_EXEC"] == "server"
    assert env["INSTALL_K3S_SKIP_START"] == "true" and env["INSTALL_K3S_BIN_DIR"] == "/usr/local/bin"
    assert box.systemctl("restart") == [["restart", "--no-block", "k3s"]]  # we start it, without blocking
    assert not {"K3S_TOKEN", "K3S_URL", "K3S_DATASTORE_ENDPOINT"} & set(env)
    assert (box.log / "curl.log").read_text().splitlines() == [s.k3s.install_script_url]

    assert TOKEN not in result.stdout + result.stderr
    if trace is not None:
        execs = trace.read_text()
        assert "record.py" in execs  # the trace saw the installer run...
        assert TOKEN not in execs  # ...and the token in no process's argv or environment


@needs_sandbox
def test_an_agent_joins_with_the_token_file_and_the_server_url(box: Sandbox) -> None:
    s = settings_for(awkward_config())
    agent = s.agents[0]
    result = box.run(scripts.install_script(agent, s.k3s, first_server=False), stdin())
    assert result.returncode == 0, result.stderr
    (installed,) = box.records("installer")
    assert installed["argv"] == ["agent"]
    assert {f"--node-external-ip={AWKWARD}", "--lb-server-port=6445"} <= set(k3s_command_line(box, "k3s-agent"))
    env = installed["env"]
    assert env["INSTALL_K3S_EXEC"] == "agent"
    assert env["K3S_URL"] == "https://10.0.0.11:6443"
    assert env["K3S_TOKEN_FILE"] == scripts.TOKEN_FILE and "K3S_TOKEN" not in env
    assert box.path(scripts.TOKEN_FILE).read_text() == TOKEN + "\n"
    assert box.systemctl("restart") == [["restart", "--no-block", "k3s-agent"]]


@needs_sandbox
def test_extra_args_reach_k3s_byte_for_byte_and_after_the_config_values(box: Sandbox) -> None:
    """Issue 24 item 2: install.sh re-splits its arguments (its stand-in as the real one does),
    so a run of spaces inside a value arrived as one. serverArgs now reach K3s through
    config.yaml: every value as written, after serverConfig's, as on a command line (a
    single-valued flag's last value wins, a repeatable one keeps both)."""
    reserved = "kube-reserved=cpu=100m,  memory=100Mi"
    config = awkward_config(
        serverArgs=[
            f"--kubelet-arg={reserved}",
            "--kube-apiserver-arg",
            "audit-log-path=/var/log/a   b.log",
            "--etcd-snapshot-retention=7",
            "--disable-network-policy",
            "-l",
            "/var/log/k3s  x.log",
        ]
    )
    config["k3s"]["serverConfig"] |= {"kubelet-arg": ["max-pods=150"], "etcd-snapshot-retention": 3}
    del config["k3s"]["serverConfig"]["etcd-snapshot-schedule-cron"]
    result = install(box, config)
    assert result.returncode == 0, result.stderr
    (installed,) = box.records("installer")
    assert installed["argv"] == ["server"]
    line = k3s_command_line(box)
    assert f"--kubelet-arg={reserved}" in line
    assert "--kube-apiserver-arg=audit-log-path=/var/log/a   b.log" in line
    assert "--log=/var/log/k3s  x.log" in line  # a short name becomes its long one
    assert "--disable-network-policy=true" in line
    # After serverConfig's values: the arg's retention wins, both kubelet args count.
    assert line.index("--etcd-snapshot-retention=3") < line.index("--etcd-snapshot-retention=7")
    assert line.index("--kubelet-arg=max-pods=150") < line.index(f"--kubelet-arg={reserved}")


@needs_sandbox
def test_the_installer_stand_in_squeezes_blanks_in_its_arguments_as_install_sh_does(box: Sandbox) -> None:
    """Why the extra args no longer go to the installer, shown on its stand-in: install.sh
    re-splits its arguments (`eval set -- $(escape "${INSTALL_K3S_EXEC}") $(quote "$@")`,
    unquoted), so a run of blanks inside one arrives as one space; the install passes none."""
    s = settings_for(awkward_config())
    parsed = parse_inputs(scripts.install_script(s.servers[0], s.k3s, first_server=True).body)
    assert parsed is not None and parsed.args == ()
    args = ["--kubelet-arg=cpu=100m,  memory=100Mi", f"--kube-proxy-arg={AWKWARD}"]
    run = (
        "INSTALL_K3S_VERSION=v1.33.5+k3s1 INSTALL_K3S_EXEC='server --debug' sh \"$K3SR_TEST_STUBS/installer.sh\" "
        + shlex.join(args)
    )
    result = box.run(scripts.Script(name="installer", body=run, command="sh -c " + shlex.quote(run)))
    assert result.returncode == 0, result.stderr
    (installed,) = box.records("installer")
    assert installed["argv"] == ["server", "--debug", "--kubelet-arg=cpu=100m, memory=100Mi", args[1]]


@needs_sandbox
def test_the_external_datastore_endpoint_reaches_k3s_verbatim_in_a_0600_drop_in(box: Sandbox) -> None:
    """Issue 24 item 1: the installer copies K3S_* variables into the service's env file
    through `read` without -r and an unquoted `echo` (its stand-in runs that very pipeline),
    which drops backslashes and squeezes spaces. The endpoint goes into a 0600 config.yaml.d
    drop-in instead, which K3s reads verbatim, and never through the installer."""
    awkward = "postgres://k3s:pa\\ss  w0rd$x'q\"#@db.example.com:5432/k3s?sslmode=require"
    s = settings_for(awkward_config("external"), {"datastoreEndpoint"})
    result = box.run(scripts.install_script(s.servers[0], s.k3s, first_server=True), stdin(awkward))
    assert result.returncode == 0, result.stderr
    drop_in = box.path(f"{scripts.CONF_DIR}/config.yaml.d/60-k3s-rancher-datastore.yaml")
    assert mode(drop_in) == 0o600
    assert yaml.safe_load(drop_in.read_text()) == {"datastore-endpoint": awkward}
    (installed,) = box.records("installer")
    assert "K3S_DATASTORE_ENDPOINT" not in installed["env"]
    env_file = box.path("/etc/systemd/system/k3s.service.env").read_text()
    assert "DATASTORE" not in env_file and "w0rd" not in env_file
    assert awkward not in json.dumps(installed["argv"]) + result.stdout + result.stderr
    assert "w0rd" not in box.path(f"{scripts.CONF_DIR}/config.yaml").read_text()
    # Without the endpoint (another datastore), the drop-in of ours goes.
    sqlite = settings_for(awkward_config("sqlite"))
    again = box.run(scripts.install_script(sqlite.servers[0], sqlite.k3s, first_server=True), stdin())
    assert again.returncode == 0, again.stderr
    assert not drop_in.exists()


@needs_sandbox
def test_the_installer_stand_in_mangles_the_env_file_as_install_sh_does(box: Sandbox) -> None:
    """The reason for the drop-in, shown on the stand-in: a value the installer passes on
    (K3S_URL here) loses its backslash and its double space in the env file."""
    s = settings_for(awkward_config())
    agent = s.agents[0]
    script = with_inputs(scripts.install_script(agent, s.k3s, first_server=False), SERVER_URL="https://h:6443/a\\b  c")
    assert box.run(script, stdin()).returncode == 0
    env_file = box.path("/etc/systemd/system/k3s-agent.service.env").read_text()
    assert "K3S_URL='https://h:6443/ab c'" in env_file, env_file


@needs_sandbox
def test_install_restarts_k3s_only_when_something_changed_or_it_is_not_active(box: Sandbox) -> None:
    """Item 1: the install decides the restart itself: our files changed, the installer
    changed the binary, unit or env file (the installer's own rule), or the service is down."""

    def restarts(config: dict[str, Any]) -> int:
        before = len(box.systemctl("restart"))
        result = install(box, config)
        assert result.returncode == 0, result.stderr
        assert box.records("installer")[-1]["env"]["INSTALL_K3S_SKIP_START"] == "true"
        return len(box.systemctl("restart")) - before

    config = awkward_config()
    assert restarts(config) == 1  # first install
    assert restarts(config) == 0  # nothing changed: no restart
    config["k3s"]["serverConfig"]["etcd-snapshot-retention"] = 10
    assert restarts(config) == 1  # config.yaml changed
    assert restarts(config) == 0
    del config["k3s"]["registries"]
    assert restarts(config) == 1  # registries.yaml removed
    assert not box.path(f"{scripts.CONF_DIR}/registries.yaml").exists()
    assert restarts(config) == 0
    config["k3s"]["version"] = "v1.33.6+k3s1"  # the installer replaced the binary
    assert restarts(config) == 1
    assert "v1.33.6+k3s1" in box.path("/usr/local/bin/k3s").read_text()
    box.set_state(services={"k3s": {"state": "failed"}})  # crashed since: started again
    assert restarts(config) == 1
    assert restarts(config) == 0


@needs_sandbox
def test_install_never_blocks_when_k3s_never_becomes_ready(box: Sandbox) -> None:
    """Item 1: an agent that cannot join (Type=notify, no READY) fails within the timeout,
    naming the node, the service and its journal, with secret lines hidden."""
    box.set_state(services={"k3s-agent": {"state": "inactive", "after_restart": "activating"}})
    (box.log / "journal.txt").write_text(
        "\n".join(
            [*(f"old line {i}" for i in range(30)), f"level=debug msg=token {TOKEN}", 'msg="failed to get CA certs"']
        )
    )
    started = time.monotonic()
    result = install(box, awkward_config(), node="w1", timeout=60, TIMEOUT="3")
    assert time.monotonic() - started < 60
    assert result.returncode != 0
    assert "K3s (k3s-agent) on w1 did not become active within 3s (state: activating)" in result.stderr
    assert "journalctl -u k3s-agent" in result.stderr and "failed to get CA certs" in result.stderr
    assert "old line 29" in result.stderr and "old line 5" not in result.stderr  # the last lines only
    assert "[line hidden: it contained the cluster token]" in result.stderr
    assert TOKEN not in result.stdout + result.stderr
    assert box.systemctl("restart") == [["restart", "--no-block", "k3s-agent"]]
    assert "K3s v1.33.5+k3s1 installed" not in result.stderr


@needs_sandbox
def test_install_waits_for_the_restart_it_queued_before_reporting_success(box: Sandbox) -> None:
    """Item 1: right after `restart --no-block` the old process may still answer "active";
    success only once the service entered "active" again."""
    config = awkward_config()
    assert install(box, config).returncode == 0
    restarting = ["active", "activating", "activating", "active"]
    box.set_state(services={"k3s": {"state": "active", "entered": 1, "restart_states": restarting}})
    config["k3s"]["serverConfig"]["etcd-snapshot-retention"] = 10  # config.yaml changes: restart
    polls = len(box.systemctl("is-active"))
    again = install(box, config, TIMEOUT="30")
    assert again.returncode == 0, again.stderr
    assert len(box.systemctl("is-active")) - polls >= 1 + len(restarting)  # before, then until active again
    assert box.state()["services"]["k3s"]["entered"] == 2


@needs_sandbox
def test_a_registries_file_written_by_hand_is_left_alone(box: Sandbox) -> None:
    config = awkward_config()
    del config["k3s"]["registries"]
    box.put(f"{scripts.CONF_DIR}/registries.yaml", "mirrors: {}\n", 0o600)
    assert install(box, config).returncode == 0
    assert box.path(f"{scripts.CONF_DIR}/registries.yaml").read_text() == "mirrors: {}\n"


@needs_sandbox
def test_an_install_without_a_token_on_stdin_stops_before_doing_anything(box: Sandbox) -> None:
    s = settings_for(awkward_config())
    result = box.run(scripts.install_script(s.servers[0], s.k3s, first_server=True), "")
    assert result.returncode != 0
    assert "no cluster token arrived on stdin" in result.stderr
    assert not box.path(scripts.CONF_DIR).exists() and not box.records("installer")


@needs_sandbox
def test_a_failing_installer_is_reported_without_the_secrets(box: Sandbox) -> None:
    s = settings_for(awkward_config("external"), {"datastoreEndpoint"})
    (box.log / "installer-fails").write_text("")
    result = box.run(scripts.install_script(s.servers[0], s.k3s, first_server=True), stdin(ENDPOINT))
    assert result.returncode != 0
    assert "the K3s installer failed on cp1" in result.stderr and "stand-in installer failure" in result.stderr
    assert TOKEN not in result.stdout + result.stderr and ENDPOINT not in result.stdout + result.stderr


@needs_sandbox
def test_a_pinned_installer_with_another_sha256_is_not_run(box: Sandbox) -> None:
    """Item 8 (issue item 9): k3s.installScriptSha256 pins the downloaded installer."""
    config = awkward_config(installScriptSha256="0" * 64)
    result = install(box, config)
    assert result.returncode != 0
    assert "k3s.installScriptSha256" in result.stderr and "0" * 64 in result.stderr
    assert not box.records("installer")
    real = hashlib.sha256(INSTALLER.format(python=sys.executable).encode()).hexdigest()
    pinned = install(box, awkward_config(installScriptSha256=real))
    assert pinned.returncode == 0, pinned.stderr
    assert len(box.records("installer")) == 1


@needs_sandbox
def test_install_uses_opt_bin_when_usr_local_is_read_only(box: Sandbox) -> None:
    (box.root / "usr-local-read-only").write_text("")
    box.path("/opt/bin/x").parent.mkdir(parents=True)
    result = install(box, awkward_config())
    assert result.returncode == 0, result.stderr
    assert box.records("installer")[-1]["env"]["INSTALL_K3S_BIN_DIR"] == "/opt/bin"
    assert box.path("/opt/bin/k3s").exists()
