"""The host side of the token rotation (issue 14 item 4), run in the sandbox: install_node.sh
takes a new token on a node with data only when stdin's ROTATED_FROM names the token its file holds,
and restarts K3s once for it; token_rotation.sh's cases (no K3s yet, already rotated, from
the old token, neither) with the tokens never in argv (but --new-token, K3s's only source)
or in any output."""

from __future__ import annotations

import subprocess
from typing import Any

from components import scripts
from tests.scripts.awkward import TOKEN, awkward_config, settings_for
from tests.scripts.sandbox import Sandbox, install, needs_sandbox, stdin

NEW = "tok-new-5e2d9b07c1a4"
SERVER_TOKEN = "/var/lib/rancher/k3s/server/token"
JOINED_CERT = "/var/lib/rancher/k3s/agent/client-kubelet.crt"


def install_script(node: str) -> scripts.Script:
    s = settings_for(awkward_config())
    target = next(n for n in s.nodes if n.name == node)
    return scripts.install_script(target, s.k3s, first_server=target == s.nodes[0])


def rotating(rotated_from: str = TOKEN) -> str:
    return scripts.install_stdin(NEW, None, rotated_from=rotated_from)


def rotation(box: Sandbox, old: str = TOKEN, new: str = NEW) -> subprocess.CompletedProcess[str]:
    return box.run(scripts.token_rotation_script("cp1", "ubuntu"), scripts.token_rotation_stdin(old, new))


def rotate_calls(box: Sandbox) -> list[dict[str, Any]]:
    return [r for r in box.records("k3s") if r["argv"][:2] == ["token", "rotate"]]


def joined(box: Sandbox, node: str) -> None:
    """`node` installed with TOKEN and joined (what K3s leaves: a server's data, an agent's cert)."""
    assert install(box, awkward_config(), node=node).returncode == 0
    if node == "w1":
        box.put(JOINED_CERT, "joined", 0o600)
    else:
        box.put(SERVER_TOKEN, f"K10{'a' * 64}::server:{TOKEN}\n", 0o600)


@needs_sandbox
def test_a_server_with_data_takes_the_new_token_with_rotated_from_and_restarts_once(box: Sandbox) -> None:
    joined(box, "cp1")
    restarts = len(box.systemctl("restart"))
    result = box.run(install_script("cp1"), rotating())
    assert result.returncode == 0, result.stderr
    assert box.path(scripts.TOKEN_FILE).read_text() == NEW + "\n"
    assert len(box.systemctl("restart")) == restarts + 1
    assert NEW not in result.stdout + result.stderr and TOKEN not in result.stdout + result.stderr
    # Again (a re-run of the up), then the tidy-up (no ROTATED_FROM): nothing restarts.
    assert box.run(install_script("cp1"), rotating()).returncode == 0
    assert box.run(install_script("cp1"), stdin(token=NEW)).returncode == 0
    assert len(box.systemctl("restart")) == restarts + 1


@needs_sandbox
def test_a_joined_agent_takes_the_new_token_with_rotated_from(box: Sandbox) -> None:
    joined(box, "w1")
    restarts = len(box.systemctl("restart"))
    result = box.run(install_script("w1"), rotating())
    assert result.returncode == 0, result.stderr
    assert box.path(scripts.TOKEN_FILE).read_text() == NEW + "\n"
    assert len(box.systemctl("restart")) == restarts + 1


@needs_sandbox
def test_without_rotated_from_or_with_another_old_token_the_change_is_still_refused(box: Sandbox) -> None:
    joined(box, "w1")
    for given in (stdin(token=NEW), rotating(rotated_from="tok-not-the-one-it-holds")):
        result = box.run(install_script("w1"), given)
        assert result.returncode != 0
        assert "different token" in result.stderr and "newToken" in result.stderr
        assert box.path(scripts.TOKEN_FILE).read_text() == TOKEN + "\n"


@needs_sandbox
def test_a_server_whose_token_file_is_gone_is_recognised_by_its_data_at_the_old_token(box: Sandbox) -> None:
    box.put(SERVER_TOKEN, f"K10{'a' * 64}::server:{TOKEN}\n", 0o600)
    refused = box.run(install_script("cp1"), stdin(token=NEW))
    assert refused.returncode != 0 and "K3s data of another cluster" in refused.stderr
    result = box.run(install_script("cp1"), rotating())
    assert result.returncode == 0, result.stderr


@needs_sandbox
def test_the_rotation_finds_nothing_to_rotate_before_k3s_exists(box: Sandbox) -> None:
    result = rotation(box)
    assert result.returncode == 0, result.stderr
    assert "nothing to rotate" in result.stderr
    assert not rotate_calls(box)


@needs_sandbox
def test_the_rotation_rotates_from_the_old_token_once(box: Sandbox) -> None:
    box.put_k3s()
    box.put(SERVER_TOKEN, f"K10{'a' * 64}::server:{TOKEN}\n", 0o600)
    result = rotation(box)
    assert result.returncode == 0, result.stderr
    calls = rotate_calls(box)
    assert [c["argv"] for c in calls] == [["token", "rotate", "--new-token", NEW]]
    assert calls[0]["env"]["K3S_TOKEN"] == TOKEN
    assert "K3S_URL" not in calls[0]["env"]
    assert NEW not in result.stdout + result.stderr and TOKEN not in result.stdout + result.stderr
    assert box.path(SERVER_TOKEN).read_text().endswith(f"::server:{NEW}\n")
    # A re-run (an interrupted up, a changed connection) finds the new token: no second rotation.
    again = rotation(box)
    assert again.returncode == 0, again.stderr
    assert "already has the new token" in again.stderr
    assert len(rotate_calls(box)) == 1


@needs_sandbox
def test_the_rotation_refuses_a_server_at_neither_token(box: Sandbox) -> None:
    box.put_k3s()
    box.put(SERVER_TOKEN, f"K10{'a' * 64}::server:tok-rotated-by-hand\n", 0o600)
    result = rotation(box)
    assert result.returncode != 0
    assert "neither the current token nor newToken" in result.stderr and "Set 'token'" in result.stderr
    assert "tok-rotated-by-hand" not in result.stderr
    assert not rotate_calls(box)


@needs_sandbox
def test_a_failed_rotate_stops_the_up_and_says_nothing_changed(box: Sandbox) -> None:
    box.put_k3s()
    box.put(SERVER_TOKEN, f"K10{'a' * 64}::server:{TOKEN}\n", 0o600)
    box.set_state(api_down=True)
    result = rotation(box)
    assert result.returncode != 0
    assert "k3s token rotate failed on cp1" in result.stderr and "still uses the current token" in result.stderr


@needs_sandbox
def test_a_new_token_in_the_k10_form_is_refused(box: Sandbox) -> None:
    box.put_k3s()
    box.put(SERVER_TOKEN, f"K10{'a' * 64}::server:{TOKEN}\n", 0o600)
    result = rotation(box, new=f"K10{'b' * 64}::server:{NEW}")
    assert result.returncode != 0 and "plain token" in result.stderr
    assert not rotate_calls(box)
