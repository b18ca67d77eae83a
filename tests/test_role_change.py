"""A node that moves between `agents` and `servers` in one `pulumi up` is refused by key, in
preview too, before any resource is registered (issue 24 item 5): the install on the host
would refuse it anyway, but only halfway through an up that had already planned the old
node's removal."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from components.settings import ConfigError
from components.validation.roles import previous_nodes, role_change_errors
from tests.test_server_removal import nodes_output, prod_config, registered_names, run


def _moved_to_servers(config: dict[str, Any], *, rename: str | None = None) -> dict[str, Any]:
    after = copy.deepcopy(config)
    agent = after["agents"].pop(0)
    if rename:
        agent["name"] = rename
    after["servers"].append({k: v for k, v in agent.items() if k != "taints"})
    return after


def test_an_agent_moved_to_servers_is_refused_by_key_with_the_two_step_procedure() -> None:
    before = prod_config()
    after = _moved_to_servers(before)
    moved = before["agents"][0]["name"]
    with pytest.raises(ConfigError) as caught:
        run(after, {"nodes": nodes_output(before)})
    assert caught.value.keys == ["k3s-rancher:servers"]
    message = str(caught.value)
    assert f"{moved} is listed as a server" in message and "was an agent in the last update" in message
    assert "remove it from 'agents' and run pulumi up" in message and "add it to 'servers'" in message
    assert registered_names(after, {"nodes": nodes_output(before)}) == []


def test_a_renamed_host_moved_to_the_other_list_is_still_the_same_host() -> None:
    before = prod_config()
    after = _moved_to_servers(before, rename="prod-cp9")
    with pytest.raises(ConfigError) as caught:
        run(after, {"nodes": nodes_output(before)})
    assert f"({before['agents'][0]['address']}) was an agent" in str(caught.value)


def test_the_two_step_procedure_passes_and_a_first_run_knows_no_roles() -> None:
    before = prod_config()
    step1 = copy.deepcopy(before)
    removed = step1["agents"].pop(0)
    run(step1, {"nodes": nodes_output(before)})  # remove it first: fine
    step2 = copy.deepcopy(step1)
    step2["servers"].append({k: v for k, v in removed.items() if k != "taints"})
    run(step2, {"nodes": nodes_output(step1)})  # then add it as a server: fine
    run(_moved_to_servers(before))  # no previous outputs (a new stack): nothing to compare


def test_previous_nodes_read_the_nodes_output_only() -> None:
    assert previous_nodes({}) == []
    assert previous_nodes({"nodes": "x"}) == []
    nodes = [{"name": "a", "role": "agent", "address": "10.0.0.5"}, {"name": "b"}]
    assert previous_nodes({"nodes": nodes}) == [("a", "agent", "10.0.0.5")]
    assert role_change_errors([("a", "agent", "10.0.0.5")], []) == []
