"""The docker topology's graph under mocks: nodes as components, the order of servers, agents,
cluster-ready, kubeconfig and provider, removal and token changes, the critical path."""

from __future__ import annotations

import itertools

import yaml

from components import bundle
from policy.shell_inputs import command_inputs
from tests.docker_topology.local import LOCAL_COMMAND, STACK, local_run, names
from tests.harness import TEST_TOKEN, Run, node_script


def test_every_node_is_a_component_with_its_container_and_volumes(local: Run) -> None:
    cluster = local.by_name(STACK)
    assert cluster.type == "k3s-rancher:index:DockerCluster"
    for node in names("server", 1) + names("agent", 2):
        component = local.by_name(node)
        assert component.parent == cluster.urn
        assert component.type == (
            "k3s-rancher:index:DockerServer" if "server" in node else "k3s-rancher:index:DockerAgent"
        )
        for child in ("container", "data", "identity", "membership"):
            assert local.by_name(f"{node}-{child}").parent == component.urn
    assert local.by_name(f"{STACK}-server-0-ready").parent == local.urn(f"{STACK}-server-0")
    assert not any(r.name.startswith(f"{STACK}-agent") and r.name.endswith("-ready") for r in local.registrations)


def test_each_container_gets_the_scripts_bundle_before_any_command_runs_in_it(ha: Run) -> None:
    """The node commands' texts are entry points into the scripts bundle: each container gets
    it from its `<node>-scripts` step (`docker exec -i`, the bundle on stdin), right after the
    container and again for a new one (its id is the trigger); every other command run in
    that container waits for it. It has no delete: the container's removal takes it."""
    scripts_bundle = bundle.current_bundle()
    nodes = names("server", 3) + names("agent", 3)
    for node in nodes:
        step = ha.by_name(f"{node}-scripts")
        assert step.type == LOCAL_COMMAND and step.parent == ha.urn(node)
        assert step.dependencies == [ha.urn(f"{node}-container")], node  # first after its container
        plain = step.plain()
        assert plain["create"].startswith(f"docker exec -i {node} sh -c ")
        delivery = command_inputs(plain["create"])
        assert delivery is not None and delivery.name == "deliver_scripts"
        assert delivery.variables["BUNDLE_SHA256"] == scripts_bundle.sha256
        assert plain["stdin"] == scripts_bundle.text and "stdin" not in step.secret_paths()  # public code
        assert ha.property_depends_on(f"{node}-scripts", "triggers", f"{node}-container")
        assert not plain.get("delete") and step.options["deleteBeforeReplace"] is True
    in_containers = 0
    for command in ha.of_type(LOCAL_COMMAND):
        if command.name.endswith("-scripts"):
            continue
        for text in (command.plain()[f] for f in ("create", "update", "delete") if command.plain().get(f)):
            target = text.split()[2]  # docker exec <container> sh -c ...
            assert target in nodes, command.name
            assert ha.depends_on(command.name, f"{target}-scripts"), command.name
            assert node_script(text).effective, command.name  # an entry point, not the code
            in_containers += 1
    assert in_containers > 2 * len(nodes)


def test_servers_are_replaced_one_after_another_each_after_the_previous_is_ready(ha: Run) -> None:
    servers = names("server", 3)
    for server in servers:
        assert ha.depends_on(f"{server}-ready", f"{server}-container")
    for previous, current in itertools.pairwise(servers):
        assert ha.depends_on(f"{current}-container", f"{previous}-ready")
    for server in servers[1:]:
        assert not ha.reaches(f"{servers[0]}-container", f"{server}-container")


def test_agents_wait_for_the_last_server_and_never_for_each_other(ha: Run) -> None:
    agents = names("agent", 3)
    for agent in agents:
        assert ha.depends_on(f"{agent}-container", f"{STACK}-server-2-ready")
        for other in agents:
            if other != agent:
                assert not ha.reaches(f"{agent}-container", f"{other}-container")


def test_cluster_ready_gates_the_kubeconfig_and_the_provider(ha: Run) -> None:
    ready = f"{STACK}-cluster-ready"
    for node in names("server", 3) + names("agent", 3):
        assert ha.depends_on(ready, f"{node}-container")
        assert ha.depends_on(f"{node}-membership", ready)
        assert ha.depends_on(f"{STACK}-k8s", f"{node}-membership")
    assert ha.depends_on(ready, f"{STACK}-server-2-ready")
    assert ha.depends_on(f"{STACK}-kubeconfig", ready)
    provider = ha.by_name(f"{STACK}-k8s")
    assert provider.type == "pulumi:providers:kubernetes"
    assert ha.depends_on(f"{STACK}-k8s", ready)
    assert provider.plain()["clusterIdentifier"] == f"k3s-rancher-{STACK}"
    # One command, on the first server, waits for every node.
    command = ha.by_name(ready).plain()["create"]
    assert command.startswith(f"docker exec {STACK}-server-0 sh -c ")
    assert "set -- " + " ".join(names("server", 3) + names("agent", 3)) in command


def test_helm_releases_wait_for_the_ready_cluster(local: Run) -> None:
    release = local.by_name("rancher-release")
    assert release.options["provider"].startswith(local.urn(f"{STACK}-k8s"))


def test_every_docker_resource_uses_the_stacks_docker_provider(local: Run) -> None:
    provider = local.by_name(f"{STACK}-docker")
    assert provider.plain()["host"] == "unix:///var/run/docker.sock"
    docker_resources = [r for r in local.registrations if r.type.startswith("docker:")]
    assert docker_resources
    for resource in docker_resources:
        assert resource.options["provider"].startswith(provider.urn), resource.name


def test_local_commands_reach_the_configured_engine_and_run_as_root_without_sudo() -> None:
    run = local_run(docker={"host": "tcp://127.0.0.1:2375"}, rancher={"enabled": False})
    commands = run.of_type(LOCAL_COMMAND)
    # scripts steps, server ready, cluster ready, memberships, forgets (not the first
    # server's), kubeconfig
    assert len(commands) == 3 + 1 + 1 + 3 + 2 + 1
    nodes = names("server", 1) + names("agent", 2)
    assert {c.name for c in commands if c.name.endswith("-scripts")} == {f"{n}-scripts" for n in nodes}
    for command in commands:
        plain = command.plain()
        assert plain["environment"] == {"DOCKER_HOST": "tcp://127.0.0.1:2375"}, command.name
        assert plain["addPreviousOutputInEnv"] is False
        text = plain.get("create") or plain["delete"]
        assert text.startswith("docker exec ")
        assert "sudo" not in text.split("sh -c")[0]


def test_the_kubeconfig_is_read_secretly_and_points_at_the_published_port(local: Run) -> None:
    read = local.by_name(f"{STACK}-kubeconfig")
    assert read.plain()["logging"] == "none"
    assert set(read.options["additionalSecretOutputs"]) == {"stdout", "stderr"}
    assert local.outputs["apiServer"] == "https://127.0.0.1:6443"
    exported = local.outputs["kubeconfig"]
    assert isinstance(exported, dict) and "value" in exported  # a secret output
    kubeconfig = yaml.safe_load(exported["value"])
    assert kubeconfig["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:6443"
    assert kubeconfig["current-context"] == f"k3s-rancher-{STACK}"


def test_exports_name_the_docker_nodes(local: Run) -> None:
    nodes = local.outputs["nodes"]
    assert [n["name"] for n in nodes] == names("server", 1) + names("agent", 2)
    assert [n["address"] for n in nodes] == ["172.30.0.10", "172.30.0.20", "172.30.0.21"]
    assert local.outputs["k3sVersion"] == "v1.33.5+k3s1"
    assert local.outputs["rancherUrl"] == "https://127.0.0.1.sslip.io:8443"


def test_the_critical_path_grows_with_servers_not_agents() -> None:
    from benchmarks.graph_scale import longest_chain

    def chain(servers: int, agents: int) -> int:
        run = local_run(
            {"token": TEST_TOKEN}, docker={"servers": servers, "agents": agents}, rancher={"enabled": False}
        )
        return longest_chain(run.registrations)

    assert chain(1, 1) == chain(1, 20)
    # each server adds its container, its scripts step (the bundle, before its wait) and its wait
    assert chain(3, 2) == chain(3, 20) == chain(1, 2) + 6


def test_a_removed_node_is_forgotten_after_its_container_is_gone(ha: Run) -> None:
    """As on SSH hosts: drain (membership delete) -> remove the container -> delete the Node
    object (forget), so that the still-running node cannot register it again after the drain."""
    first = f"{STACK}-server-0"
    assert f"{first}-forget" not in ha.names()  # the first server goes last, with the cluster
    for node in names("server", 3)[1:] + names("agent", 3):
        forget = ha.by_name(f"{node}-forget").plain()
        assert forget["delete"].startswith(f"docker exec {first} ")
        assert "kc delete node" in node_script(forget["delete"]).effective
        assert command_inputs(forget["delete"]).variables == {"NODE_NAME": node, "DRAIN_TIMEOUT": "0"}  # type: ignore[union-attr]
        assert not forget.get("create")
        assert ha.depends_on(f"{node}-container", f"{node}-forget")  # deleted after the container
        assert ha.depends_on(f"{node}-membership", f"{node}-container")  # drained before it
        assert ha.depends_on(f"{node}-forget", f"{first}-container")  # and before the first server
        assert ha.by_name(f"{node}-forget").options["deleteBeforeReplace"] is True


def test_a_token_change_replaces_the_containers_and_reruns_every_wait() -> None:
    before = local_run({"token": TEST_TOKEN}, docker={"servers": 3}, rancher={"enabled": False})
    after = local_run({"token": TEST_TOKEN + "-rotated"}, docker={"servers": 3}, rancher={"enabled": False})
    nodes = names("server", 3) + names("agent", 2)
    for node in nodes:
        # The token file is an upload: a changed upload is a new container (the Docker provider
        # replaces a container on any input change), which gets a new id ...
        old, new = (run.by_name(f"{node}-container").plain()["uploads"] for run in (before, after))
        assert old != new, node
        # ... and every wait's command text is computed from the container ids, so it re-runs.
        assert after.property_depends_on(f"{STACK}-cluster-ready", "create", f"{node}-container")
    for server in names("server", 3):
        assert after.property_depends_on(f"{server}-ready", "create", f"{server}-container")


def test_the_kubernetes_provider_keeps_resources_of_an_unreachable_cluster(local: Run) -> None:
    assert "deleteUnreachable" not in local.by_name(f"{STACK}-k8s").plain()
