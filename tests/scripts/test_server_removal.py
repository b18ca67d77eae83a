"""A removed etcd server's membership delete (scripts.server_removal_script): drain and delete
the Node, then confirm from K3s's /db/info that its etcd member is gone, bounded; /db/info
from 127.0.0.1 needs no credentials, so none are read or sent; curl missing is a clear
error."""

from __future__ import annotations

import json
import time

from components import scripts
from tests.scripts.sandbox import Sandbox, needs_sandbox, stdin

CA = "/var/lib/rancher/k3s/server/tls/server-ca.crt"


def members(*names: str) -> str:
    """/db/info as K3s encodes it (json.NewEncoder: compact, etcdserverpb.Member tags)."""
    listed = [
        {
            "ID": 1000 + i,
            "name": n,
            "peerURLs": [f"https://10.0.0.{i}:2380"],
            "clientURLs": [f"https://10.0.0.{i}:2379"],
        }
        for i, n in enumerate(names)
    ]
    return json.dumps({"members": listed}, separators=(",", ":")) + "\n"


def ready(box: Sandbox, *names: str) -> None:
    box.put_k3s()
    box.set_state(nodes={"cp1": "v1.33.5+k3s1 True", "cp2": "v1.33.5+k3s1 True"})
    box.put(CA, "CA\n", 0o644)
    (box.log / "db-info.json").write_text(members(*names))


@needs_sandbox
def test_member_gone_succeeds_after_the_node_is_deleted(box: Sandbox) -> None:
    ready(box, "cp1-0a1b2c3d", "cp2x-11112222", "cp2-notahex0")  # look-alikes are not cp2's
    result = box.run(scripts.server_removal_script("cp2", 30, "ubuntu"), stdin())
    assert result.returncode == 0, result.stderr
    verbs = [r["argv"][3] for r in box.records("k3s")]
    assert verbs == ["get", "cordon", "drain", "delete"]  # the drain ran first
    assert "no etcd member of cp2 is left" in result.stderr
    argv = (box.log / "curl-dbinfo.log").read_text()
    assert f"--cacert {CA}" in argv and "https://127.0.0.1:6443/db/info" in argv
    assert "-K" not in argv.split() and not (box.log / "curl-dbinfo-config").exists()  # no credentials


@needs_sandbox
def test_a_member_still_listed_fails_bounded_naming_it_and_how_to_remove_it(box: Sandbox) -> None:
    ready(box, "cp1-0a1b2c3d", "cp2-9f8e7d6c")
    start = time.monotonic()
    result = box.run(scripts.server_removal_script("cp2", 30, "ubuntu", member_timeout=3), stdin())
    assert result.returncode != 0
    assert time.monotonic() - start < 30
    assert "etcd member cp2-9f8e7d6c of removed server cp2 is still in the member list after 3s" in result.stderr
    assert "etcdctl" in result.stderr and "member remove" in result.stderr


@needs_sandbox
def test_no_token_is_needed_whatever_stdin_holds(box: Sandbox) -> None:
    """pkg/etcd/etcd.go handler: /db/info is behind auth.IsLocalOrHasRole, and this check asks
    from 127.0.0.1, so K3s answers it without credentials (and never with a 401): a token
    rotated in the same up, or none at all, changes nothing."""
    ready(box, "cp1-0a1b2c3d")
    for given in ("", stdin(token="rotated-away"), stdin()):
        result = box.run(scripts.server_removal_script("cp2", 0, "root"), given)
        assert result.returncode == 0, result.stderr
        assert "no etcd member of cp2 is left" in result.stderr
    assert "rotated-away" not in (box.log / "curl-dbinfo.log").read_text()


@needs_sandbox
def test_the_node_already_gone_still_checks_the_member(box: Sandbox) -> None:
    ready(box, "cp1-0a1b2c3d", "cp2-9f8e7d6c")
    box.set_state(nodes={"cp1": "v1.33.5+k3s1 True"})  # cp2's Node is NotFound
    result = box.run(scripts.server_removal_script("cp2", 30, "root", member_timeout=0), stdin())
    assert result.returncode != 0 and "cp2-9f8e7d6c" in result.stderr


@needs_sandbox
def test_curl_missing_is_a_clear_error(box: Sandbox) -> None:
    ready(box, "cp1-0a1b2c3d")
    (box.stubs / "curl").unlink()
    (box.root / "no-curl").write_text("")
    result = box.run(scripts.server_removal_script("cp2", 0, "root"), stdin())
    assert result.returncode != 0
    assert "curl is not installed on this server" in result.stderr
