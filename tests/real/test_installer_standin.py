"""The STAND-IN K3s installer (tests/real/standin/install.sh) keeps the real one's contract,
shown on systemd test hosts with a tiny fake k3s written here (not the k3s stand-in).

The fake k3s is a python program run by the unit: it records its arguments and environment,
then sends READY=1 to $NOTIFY_SOCKET after K3S_FAKE_DELAY seconds (an environment variable
the installer copies into the unit's env file like any K3S_* variable), or never when the
delay is "never". Each behaviour here is the real install.sh's (tests/real/README.md,
"Installer stand-in", names the function it imitates).
"""

from __future__ import annotations

import json
import shlex
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.real.hosts import TestHost, test_hosts
from tests.real.standin_k3s import STANDIN

pytestmark = pytest.mark.real

INSTALLER = (STANDIN / "install.sh").read_text()
UNIT = "/etc/systemd/system/k3s.service"
ENV = "/etc/systemd/system/k3s.service.env"
AGENT_UNIT = "/etc/systemd/system/k3s-agent.service"

# A fake k3s, enough for a Type=notify unit: records argv/env, then READY=1 after a delay.
FAKE_K3S = """#!/usr/bin/python3
import json, os, socket, sys, time
if sys.argv[1:] == ["--version"]:
    print("k3s version v0.0.0+fake")
    sys.exit(0)
with open("/run/k3s-fake-%d.json" % os.getpid(), "w") as f:
    json.dump({"argv": sys.argv[1:], "env": dict(os.environ)}, f)
delay = os.environ.get("K3S_FAKE_DELAY", "0")
if delay != "never":
    time.sleep(float(delay))
    addr = os.environ["NOTIFY_SOCKET"]
    addr = "\\0" + addr[1:] if addr.startswith("@") else addr
    socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b"READY=1", addr)
while True:
    time.sleep(3600)
"""


@pytest.fixture(scope="module")
def hosts(testhost_image: str) -> Iterator[list[TestHost]]:
    with test_hosts(2, image=testhost_image, secure_path=[1]) as group:
        for host in group:
            host.exec("cat > /root/install.sh", stdin=INSTALLER)
        yield group


@pytest.fixture
def host(hosts: list[TestHost]) -> Iterator[TestHost]:
    """A Debian host with no K3s, and a fake k3s in /usr/local/bin; cleaned up afterwards."""
    host = hosts[0]
    clean(host)
    put_fake(host, "/usr/local/bin")
    yield host
    clean(host)


def clean(host: TestHost) -> None:
    host.exec(
        'for u in /usr/local/bin/k3s*-uninstall.sh /opt/bin/k3s*-uninstall.sh; do [ -x "$u" ] && "$u"; done;'
        " systemctl stop k3s k3s-agent 2>/dev/null; umount /usr/local/bin 2>/dev/null;"
        " rm -rf /opt/bin /usr/local/bin/* /etc/systemd/system/k3s* /run/k3s-fake-* /etc/rancher /var/lib/rancher;"
        " systemctl daemon-reload; systemctl reset-failed; true",
        timeout=60,
    )


def put_fake(host: TestHost, directory: str) -> None:
    host.exec(f"mkdir -p {directory} && cat > {directory}/k3s && chmod 0755 {directory}/k3s", stdin=FAKE_K3S)


def install(
    host: TestHost, env: dict[str, str], *args: str, timeout: float = 60, ssh_timeout: float = 90
) -> tuple[int, str, str, float]:
    """Run the installer as our scripts do: over SSH as ubuntu, with sudo, the variables in
    sudo's environment. ``timeout`` bounds it on the host (coreutils timeout: rc 124)."""
    assignments = " ".join(shlex.quote(f"{k}={v}") for k, v in {"INSTALL_K3S_SKIP_DOWNLOAD": "true", **env}.items())
    words = " ".join(shlex.quote(a) for a in args)
    cmd = f"sudo -n timeout {timeout:g} env {assignments} sh /root/install.sh {words}"
    # /root is not readable by ubuntu, but sudo's sh reads it as root.
    started = time.monotonic()
    rc, out, err = host.run(cmd, timeout=ssh_timeout)
    return rc, out, err, time.monotonic() - started


def show(host: TestHost, prop: str, unit: str = "k3s") -> str:
    return host.exec(f"systemctl show -p {prop} --value {unit}").strip()


def fake_runs(host: TestHost) -> list[dict[str, object]]:
    out = host.exec("for f in $(ls -tr /run/k3s-fake-*.json 2>/dev/null); do cat $f; echo; done")
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_install_writes_unit_env_and_links_and_restart_waits_for_ready(host: TestHost) -> None:
    env = {"K3S_TOKEN": "s3cret 'quoted'", "K3S_FAKE_DELAY": "3", "HTTPS_PROXY": "http://proxy:3128", "OTHER": "x"}
    rc, out, err, seconds = install(host, env, "server", "--node-label", "a=b c", "--tls-san=$(id)")
    assert rc == 0, out + err
    # `systemctl restart` of a Type=notify unit returned only after READY=1 (3 s in).
    assert seconds >= 3
    assert show(host, "ActiveState") == "active"
    assert host.exec("systemctl is-enabled k3s").strip() == "enabled"
    unit = host.exec(f"cat {UNIT}")
    for line in ("Type=notify", "TimeoutStartSec=0", "Restart=always", "KillMode=process", "Delegate=yes"):
        assert line in unit.splitlines(), line
    assert "ExecStart=/usr/local/bin/k3s \\" in unit
    # The service got the arguments as words, and the env file's variables.
    (run,) = fake_runs(host)
    assert run["argv"] == ["server", "--node-label", "a=b c", "--tls-san=$(id)"]
    got = run["env"]
    assert isinstance(got, dict)
    assert (got["K3S_TOKEN"], got["HTTPS_PROXY"]) == ("s3cret 'quoted'", "http://proxy:3128")
    assert "OTHER" not in got and "INSTALL_K3S_SKIP_DOWNLOAD" not in got
    assert host.exec(f"stat -c '%a %U' {ENV}").strip() == "600 root"
    env_file = host.exec(f"cat {ENV}")
    assert "K3S_TOKEN=" in env_file and "INSTALL_K3S" not in env_file and "OTHER" not in env_file
    # The secret is in the file, never in what the installer printed.
    assert "s3cret" not in out + err
    links = host.exec("for t in kubectl crictl ctr; do readlink /usr/local/bin/$t; done").split()
    assert links == ["k3s", "k3s", "k3s"]
    assert host.exec("ls /usr/local/bin").split() == sorted(
        ["crictl", "ctr", "k3s", "k3s-killall.sh", "k3s-uninstall.sh", "kubectl"]
    )


def test_a_second_identical_run_restarts_nothing_and_force_restart_does(host: TestHost) -> None:
    env = {"K3S_TOKEN": "t", "K3S_FAKE_DELAY": "1"}
    assert install(host, env)[0] == 0
    pid, since = show(host, "MainPID"), show(host, "ActiveEnterTimestampMonotonic")
    rc, out, _, _ = install(host, env)
    assert rc == 0
    assert "No change detected so skipping service start" in out
    assert (show(host, "MainPID"), show(host, "ActiveEnterTimestampMonotonic")) == (pid, since)
    rc, _, _, seconds = install(host, {**env, "INSTALL_K3S_FORCE_RESTART": "true"})
    assert rc == 0 and seconds >= 1
    assert show(host, "MainPID") != pid
    # A changed env file (or unit) restarts without being forced.
    pid = show(host, "MainPID")
    assert install(host, {**env, "K3S_NODE_NAME": "other"})[0] == 0
    assert show(host, "MainPID") != pid
    # Airgap: a binary replaced BEFORE the installer runs is already in its "before" hash
    # (taken in setup_env), so it alone restarts nothing: callers must force the restart.
    pid = show(host, "MainPID")
    host.exec("echo '# another build' >> /usr/local/bin/k3s")
    rc, out, _, _ = install(host, {**env, "K3S_NODE_NAME": "other"})
    assert rc == 0 and "No change detected so skipping service start" in out
    assert show(host, "MainPID") == pid


def test_skip_start_enables_but_leaves_it_stopped_and_skip_enable_does_neither(host: TestHost) -> None:
    rc, out, _, seconds = install(host, {"K3S_TOKEN": "t", "K3S_FAKE_DELAY": "5", "INSTALL_K3S_SKIP_START": "true"})
    assert rc == 0, out
    assert seconds < 5  # did not wait for READY
    assert (show(host, "ActiveState"), show(host, "UnitFileState")) == ("inactive", "enabled")
    assert fake_runs(host) == []
    clean(host)
    put_fake(host, "/usr/local/bin")
    assert install(host, {"K3S_TOKEN": "t", "INSTALL_K3S_SKIP_ENABLE": "true"})[0] == 0
    assert (show(host, "ActiveState"), show(host, "UnitFileState")) == ("inactive", "disabled")
    assert host.exec(f"test -f {UNIT} && echo yes").strip() == "yes"


def test_a_service_that_never_sends_ready_blocks_the_installer(host: TestHost) -> None:
    """TimeoutStartSec=0: `systemctl restart` waits for READY for ever; only an outside
    bound (here coreutils timeout) ends the install, and the unit is still activating."""
    rc, _, _, seconds = install(host, {"K3S_TOKEN": "t", "K3S_FAKE_DELAY": "never"}, timeout=8)
    assert rc == 124
    assert seconds >= 8
    assert (show(host, "ActiveState"), show(host, "SubState")) == ("activating", "start")
    assert len(fake_runs(host)) == 1  # it runs; it just never said READY


def test_agent_from_k3s_url_needs_a_token_and_https(host: TestHost) -> None:
    rc, _, err, _ = install(host, {"K3S_URL": "https://10.0.0.1:6443"})
    assert rc == 1
    assert (
        "[ERROR]  Defaulted k3s exec command to 'agent' because K3S_URL is defined, "
        "but K3S_TOKEN or K3S_TOKEN_FILE is not defined." in err
    )
    rc, _, err, _ = install(host, {"K3S_URL": "http://10.0.0.1:6443", "K3S_TOKEN": "t"})
    assert rc == 1
    assert "Only https:// URLs are supported for K3S_URL (have http://10.0.0.1:6443)" in err
    host.exec("mkdir -p /etc/rancher/k3s && echo t > /etc/rancher/k3s/token")
    env = {"K3S_URL": "https://10.0.0.1:6443", "K3S_TOKEN_FILE": "/etc/rancher/k3s/token"}
    assert install(host, env, "--node-name", "a1")[0] == 0
    assert show(host, "ActiveState", "k3s-agent") == "active"
    assert fake_runs(host)[0]["argv"] == ["agent", "--node-name", "a1"]
    assert "K3S_URL='https://10.0.0.1:6443'" in host.exec(f"cat {AGENT_UNIT}.env")
    assert host.exec("test -x /usr/local/bin/k3s-agent-uninstall.sh && echo yes").strip() == "yes"


def test_install_k3s_exec_is_split_into_words_before_the_arguments(host: TestHost) -> None:
    # Quotes group words; punctuation is escaped first, so inside quotes it keeps a
    # backslash ('a=b c' arrives as a\=b c) -- the real script's escape-then-eval does that.
    env = {"K3S_TOKEN": "t", "INSTALL_K3S_EXEC": "server --disable=traefik --kubelet-arg 'v 2' --node-label 'a=b c'"}
    assert install(host, env, "--node-label=x=y z")[0] == 0
    assert fake_runs(host)[0]["argv"] == [
        "server",
        "--disable=traefik",
        "--kubelet-arg",
        "v 2",
        "--node-label",
        "a\\=b c",
        "--node-label=x=y z",
    ]


def test_the_arguments_are_split_again_so_runs_of_blanks_become_one_space(host: TestHost) -> None:
    """install.sh's `eval set -- $(escape "${INSTALL_K3S_EXEC}") $(quote "$@")`: both
    expansions unquoted, so each single-quoted argument is split at blanks and eval joins the
    pieces with one space (issue 24 item 2: `cpu=100m,  memory=100Mi` arrived changed)."""
    env = {"K3S_TOKEN": "t", "INSTALL_K3S_EXEC": "server"}
    args = ("--kubelet-arg=kube-reserved=cpu=100m,  memory=100Mi", "--node-label=a=b\tc", "--etcd-arg= x ")
    assert install(host, env, *args)[0] == 0
    assert fake_runs(host)[0]["argv"] == [
        "server",
        "--kubelet-arg=kube-reserved=cpu=100m, memory=100Mi",
        "--node-label=a=b c",
        "--etcd-arg= x ",
    ]


def test_the_env_file_drops_backslashes_and_squeezes_spaces_as_install_sh_does(host: TestHost) -> None:
    """install.sh create_env_file: `sh -c export | while read x v; do echo $v; done`."""
    env = {"K3S_TOKEN": "pa\\ss  w0rd", "K3S_FAKE_DELAY": "0", "HTTPS_PROXY": "http://u:p\\q@proxy:3128"}
    assert install(host, env)[0] == 0
    (run,) = fake_runs(host)
    got = run["env"]
    assert isinstance(got, dict)
    assert (got["K3S_TOKEN"], got["HTTPS_PROXY"]) == ("pass w0rd", "http://u:pq@proxy:3128")


def test_killall_exits_127_where_iptables_is_missing_and_the_uninstall_goes_on(host: TestHost) -> None:
    """k3s-killall.sh has no `set -e` and ends with the ip6tables save-filter-restore pipeline:
    on a host without iptables its status is that line's 127, after it stopped everything. The
    uninstall script ignores it (it runs the killall as a plain command and goes on)."""
    assert host.exec("command -v iptables-restore ip6tables-restore || true").strip() == ""
    assert install(host, {"K3S_TOKEN": "t", "K3S_FAKE_DELAY": "0"})[0] == 0
    rc, out, err = host.run("sudo -n /usr/local/bin/k3s-killall.sh")
    assert rc == 127, out + err
    assert "not found" in err
    assert show(host, "ActiveState") == "inactive"
    rc, out, err = host.run("sudo -n /usr/local/bin/k3s-uninstall.sh")
    assert rc == 0, out + err
    assert show(host, "LoadState") == "not-found"


def test_read_only_usr_local_bin_falls_back_to_opt_bin(host: TestHost) -> None:
    host.exec("rm -f /usr/local/bin/k3s")
    host.read_only("/usr/local/bin")
    # Without /opt/bin there is no fallback: the binary is looked for in /usr/local/bin.
    rc, _, err, _ = install(host, {"K3S_TOKEN": "t"})
    assert rc == 1
    assert "Executable k3s binary not found at /usr/local/bin/k3s" in err
    put_fake(host, "/opt/bin")
    rc, out, err, _ = install(host, {"K3S_TOKEN": "t"})
    assert rc == 0, out + err
    assert "ExecStart=/opt/bin/k3s \\" in host.exec(f"cat {UNIT}")
    assert show(host, "ActiveState") == "active"
    assert host.exec("ls /opt/bin").split() == sorted(
        ["crictl", "ctr", "k3s", "k3s-killall.sh", "k3s-uninstall.sh", "kubectl"]
    )
    assert host.exec("ls /usr/local/bin").split() == []
    host.exec("/opt/bin/k3s-uninstall.sh")
    assert host.exec("ls /opt/bin").split() == []


def test_without_systemd_the_installer_fails(hosts: list[TestHost], testhost_image: str) -> None:
    host = hosts[0]
    clean(host)
    put_fake(host, "/usr/local/bin")
    # No systemctl at all: the real message, nothing installed.
    host.exec("mount --bind /dev/null /usr/bin/systemctl")
    try:
        rc, _, err, _ = install(host, {"K3S_TOKEN": "t"})
    finally:
        host.exec("umount /usr/bin/systemctl")
    assert rc == 1
    assert "[ERROR]  Can not find systemd or openrc to use as a process supervisor for k3s" in err
    assert host.exec(f"ls {UNIT} 2>/dev/null || true").strip() == ""
    # systemctl installed but systemd not running (a plain container): fails, not silently.
    name = f"k3sr-nosystemd-{int(time.time() * 1000)}"
    subprocess.run(["docker", "run", "-d", "--name", name, testhost_image, "sleep", "600"], check=True, timeout=60)
    try:

        def on_plain(cmd: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
            args = ["docker", "exec", *(["-i"] if stdin else []), name, "sh", "-c", cmd]
            return subprocess.run(args, input=stdin, capture_output=True, text=True, timeout=60, check=False)

        on_plain("cat > /usr/local/bin/k3s && chmod 0755 /usr/local/bin/k3s", FAKE_K3S)
        on_plain("cat > /root/install.sh", INSTALLER)
        proc = on_plain("INSTALL_K3S_SKIP_DOWNLOAD=true K3S_TOKEN=t sh /root/install.sh")
        assert proc.returncode != 0
        assert "System has not been booted with systemd" in proc.stderr
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=60, check=False)


def test_without_skip_download_the_stand_in_says_it_cannot_download(host: TestHost) -> None:
    rc, _, err, _ = install(host, {"K3S_TOKEN": "t", "INSTALL_K3S_SKIP_DOWNLOAD": "false"})
    assert rc == 1
    assert "STAND-IN installer cannot download k3s" in err


def test_uninstall_removes_what_it_installed_and_a_second_round_works(host: TestHost) -> None:
    host.exec("mkdir -p /etc/rancher/node && echo pw > /etc/rancher/node/password")
    for _ in range(2):
        put_fake(host, "/usr/local/bin")
        assert install(host, {"K3S_TOKEN": "t", "K3S_FAKE_DELAY": "0"})[0] == 0
        host.exec("mkdir -p /etc/rancher/k3s /var/lib/rancher/k3s/server && touch /etc/rancher/k3s/config.yaml")
        pid = show(host, "MainPID")
        rc, out, err = host.run("sudo -n /usr/local/bin/k3s-uninstall.sh")
        assert rc == 0, out + err
        assert show(host, "LoadState") == "not-found"
        assert host.exec(f"kill -0 {pid} 2>/dev/null && echo alive || echo gone").strip() == "gone"
        assert host.exec("ls /usr/local/bin").split() == []
        left = host.exec("ls -d /etc/rancher/* /var/lib/rancher/* /etc/systemd/system/k3s* 2>/dev/null || true")
        # The real uninstall keeps /etc/rancher/node (the node password) too.
        assert left.split() == ["/etc/rancher/node"]


def test_uninstalling_one_of_two_k3s_services_keeps_the_binary(host: TestHost) -> None:
    assert install(host, {"K3S_TOKEN": "t"})[0] == 0
    assert install(host, {"K3S_TOKEN": "t"}, "agent", "--server", "https://127.0.0.1:6443")[0] == 0
    assert show(host, "ActiveState", "k3s-agent") == "active"
    rc, out, err = host.run("sudo -n /usr/local/bin/k3s-agent-uninstall.sh")
    assert rc == 0
    assert "Additional k3s services installed, skipping uninstall of k3s" in out + err
    # The killall in it stopped both units; the agent's unit is gone, the server's stays.
    assert show(host, "LoadState", "k3s-agent") == "not-found"
    assert show(host, "ActiveState") == "inactive"
    assert host.exec("ls /usr/local/bin").split() == sorted(
        ["crictl", "ctr", "k3s", "k3s-killall.sh", "k3s-uninstall.sh", "kubectl"]
    )
    assert host.run("sudo -n /usr/local/bin/k3s-uninstall.sh")[0] == 0
    assert host.exec("ls /usr/local/bin").split() == []


def test_existing_commands_are_not_replaced_by_symlinks(host: TestHost) -> None:
    host.exec("printf '#!/bin/sh\\necho real kubectl\\n' > /usr/local/bin/kubectl && chmod 0755 /usr/local/bin/kubectl")
    rc, out, _, _ = install(host, {"K3S_TOKEN": "t"})
    assert rc == 0
    assert "Skipping /usr/local/bin/kubectl symlink to k3s, already exists" in out
    assert host.exec("/usr/local/bin/kubectl").strip() == "real kubectl"
    assert host.exec("readlink /usr/local/bin/crictl").strip() == "k3s"


def test_generated_scripts_pass_shellcheck(host: TestHost, tmp_path: object) -> None:
    assert install(host, {"K3S_TOKEN": "t"})[0] == 0
    from pathlib import Path

    directory = Path(str(tmp_path))
    shellcheck = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "shellcheck"
    for name in ("k3s-killall.sh", "k3s-uninstall.sh"):
        (directory / name).write_text(host.exec(f"cat /usr/local/bin/{name}"))
    proc = subprocess.run(
        [str(shellcheck), "-s", "sh", *(str(directory / n) for n in ("k3s-killall.sh", "k3s-uninstall.sh"))],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout


def test_rhel_like_sudo_does_not_find_k3s_in_usr_local_bin(hosts: list[TestHost]) -> None:
    rhel = hosts[1]
    assert rhel.secure_path
    clean(rhel)
    put_fake(rhel, "/usr/local/bin")
    try:
        assert install(rhel, {"K3S_TOKEN": "t"})[0] == 0  # the installer itself uses full paths
        assert rhel.run("command -v k3s")[1].strip() == "/usr/local/bin/k3s"  # the login PATH has it
        rc, out, _ = rhel.run("sudo -n sh -c 'command -v k3s'")
        assert (rc, out) == (127, "")
        rc, _, err = rhel.run("sudo -n k3s --version")
        assert rc != 0 and "command not found" in err
        assert rhel.run("sudo -n /usr/local/bin/k3s --version")[:2] == (0, "k3s version v0.0.0+fake\n")
    finally:
        clean(rhel)
