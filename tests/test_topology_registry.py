"""Topology as a plugin (issue 27 item 5): the registry in components/topologies owns every
per-topology decision, nothing else in components/ switches on the topology's name, and the
modules import one another without a cycle."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from itertools import permutations
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMPONENTS = ROOT / "components"


def _modules() -> dict[str, Path]:
    found = {}
    for path in COMPONENTS.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _import_graph() -> dict[str, set[str]]:
    """Each module's relative imports (module level and inside functions) of other modules."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    deps.add(sub if sub in modules else base)
        graph[name] = {d for d in deps if d in modules and d != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_module_of_components_imports_itself_through_others() -> None:
    graph = _import_graph()
    assert {"components.proxy", "components.scripts", "components.validation.k3s"} <= set(graph)
    assert _cycles(graph) == []


@pytest.mark.parametrize("order", list(permutations(["proxy", "scripts", "validation.k3s"])))
def test_proxy_scripts_and_k3s_validation_import_alone_in_any_order(order: tuple[str, ...]) -> None:
    code = "; ".join(f"import components.{name}" for name in order)
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr


# A comparison of the topology (or its name) with a literal: `topology == "docker"`,
# `.topology != "ssh"`, `topology in ("ssh", ...)`, and the same with the literal first.
_SWITCH = re.compile(
    r"""topology\s*(==|!=|\bnot\s+in\b|\bin\b)\s*[("'\[{]|["'](ssh|docker|kubeconfig)["']\s*(==|!=)\s*\S*topology"""
)


def test_nothing_outside_the_registry_switches_on_the_topology_name() -> None:
    registry = COMPONENTS / "topologies"
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in sorted(COMPONENTS.rglob("*.py"))
        if registry not in path.parents
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if _SWITCH.search(line)
    ]
    assert found == []


def test_the_pattern_finds_the_switches_it_forbids() -> None:
    for line in ('if settings.topology == "docker":', "x if topology != 'ssh' else y", 'if s.topology in ("ssh",):'):
        assert _SWITCH.search(line), line
    assert not _SWITCH.search("topology = topologies.named(raw['topology'])")


def test_the_registry_holds_every_topology_the_schema_accepts() -> None:
    from components import topologies
    from components.schema import load_schema

    assert set(topologies.TOPOLOGIES) == set(load_schema()["properties"]["topology"]["enum"])
    assert all(name == t.name for name, t in topologies.TOPOLOGIES.items())


def test_settings_hold_only_their_topologys_section() -> None:
    """Settings.site is a tagged union: each topology's config parses to its own variant, tagged
    with the topology's name, and the other topologies' sections are not there to be read."""
    from components.settings import DockerSite, KubeconfigSite, SshSite
    from tests.config_cases import base, parse

    ssh = parse(base())
    docker = parse({"topology": "docker"}, frozenset())
    given = parse({"topology": "kubeconfig", "rancher": {"hostname": "rancher.example.com"}}, frozenset({"kubeconfig"}))
    for settings, variant in ((ssh, SshSite), (docker, DockerSite), (given, KubeconfigSite)):
        assert type(settings.site) is variant
        assert settings.topology == settings.site.topology
    assert ssh.servers and docker.servers == given.servers == ()
    with pytest.raises(AttributeError, match="topology ssh has no docker settings"):
        _ = ssh.docker
    with pytest.raises(AttributeError, match="topology docker has no ssh settings"):
        _ = docker.ssh
    with pytest.raises(AttributeError, match="topology kubeconfig has no ssh settings"):
        _ = given.ssh
