"""What one resource of our graph costs under Pulumi's mocks, compared with a minimal program
of the same size and dependency shape, measured in the same process.

The minimal program registers, per node, one ComponentResource and the same number of
remote.Command resources as ours (with one-line command text), servers in a chain and every
agent after the last server, each agent's last command behind the previous batch of agents
(10%, as an agent's install is, on a run after the agents' first), then one cluster-wide command:
only what the SDK itself costs for that shape.
Our program's cost above that is ours to explain (script rendering, Output plumbing).
Beside it, issue 27's floor: a plain program with as many resources as ours (an install and
a ready check per node, one cluster check), and the longest dependency chain of ours.

Each program runs in a process of its own (a second program in one process runs slower than
the first), three rounds in turn; the medians.

Run:  .venv/bin/python -m benchmarks.graph_cost [AGENTS ...]   (default 100 400)
      .venv/bin/python -m benchmarks.graph_cost --profile 400  (top functions by own time)
"""

from __future__ import annotations

import cProfile
import json
import pstats
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import pulumi
import pulumi_command.remote as remote
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from benchmarks.graph_scale import make_config
from tests.harness import TEST_SSH_KEY, TEST_TOKEN, Run, _Mocks, _RecordingMonitor, default_stdout, run_program

SERVERS = 3


def _register(body: Callable[[], None]) -> Run:
    run = Run()
    mocks = _Mocks(default_stdout)
    monitor = _RecordingMonitor(mocks, run)
    pulumi.runtime.set_mocks(mocks, project="bench", stack="bench", preview=False, monitor=monitor)
    _sync_await(run_pulumi_func(body))
    return run


def minimal_program(servers: int, agents: int, commands_per_agent: int, commands_per_server: int) -> Callable[[], None]:
    def body() -> None:
        conn = remote.ConnectionArgs(host="10.0.0.1", user="root", private_key=pulumi.Output.secret("k"))
        stdin = pulumi.Output.secret("token\n")

        def node(
            name: str, count: int, after: list[pulumi.Resource], chained: int = 0, gate: Sequence[pulumi.Resource] = ()
        ) -> pulumi.Resource:
            """`count` commands after `after`; the last `chained` of them one after another,
            the first of those also after `gate` (the shape of an agent's rollout steps)."""
            parent = pulumi.ComponentResource("bench:index:Node", name, None)
            last: pulumi.Resource | None = None
            first: pulumi.Resource | None = None
            for i in range(count):
                in_chain = i >= count - chained
                depends = [*after] if not in_chain else ([last] if i > count - chained else [first, *gate])
                last = remote.Command(
                    f"{name}-c{i}",
                    connection=conn,
                    create=f"echo {name} {i}",
                    stdin=stdin,
                    add_previous_output_in_env=False,
                    opts=pulumi.ResourceOptions(parent=parent, depends_on=[d for d in depends if d is not None]),
                )
                first = first or last
            parent.register_outputs({})
            assert last is not None
            return last

        previous: list[pulumi.Resource] = []
        for s in range(servers):
            previous = [node(f"cp{s}", commands_per_server, previous)]
        # Agents in batches (k3s.upgrade's default, 10%): each agent's last command (as its
        # install is) after the previous batch's one no-op step.
        size = max(1, -(-agents * 10 // 100))
        done: list[pulumi.Resource] = []
        gate: list[pulumi.Resource] = []
        for start in range(0, agents, size):
            batch = [
                node(f"w{a}", commands_per_agent, previous, 1, gate) for a in range(start, min(start + size, agents))
            ]
            done += batch
            gate = [remote.Command(f"batch-{start}", connection=conn, opts=pulumi.ResourceOptions(depends_on=batch))]
        remote.Command("cluster-ready", connection=conn, create="true", opts=pulumi.ResourceOptions(depends_on=done))

    return body


def plain_program(total: int) -> Callable[[], None]:
    """The issue's floor: as many resources as `total`, as an install and a ready check per
    node (the ready after the install) and one cluster check after every ready; plain text
    inputs, no components, no chain."""

    def body() -> None:
        conn = remote.ConnectionArgs(host="10.0.0.1", user="root", private_key=pulumi.Output.secret("k"))
        readies: list[pulumi.Resource] = []
        for n in range((total - 1) // 2):
            install = remote.Command(f"n{n}-install", connection=conn, create=f"echo install {n}")
            readies.append(
                remote.Command(
                    f"n{n}-ready",
                    connection=conn,
                    create=f"echo ready {n}",
                    opts=pulumi.ResourceOptions(depends_on=[install]),
                )
            )
        remote.Command("cluster-ready", connection=conn, create="true", opts=pulumi.ResourceOptions(depends_on=readies))

    return body


def ours(agents: int) -> Run:
    """Our program on a run after the first (the record names every node: the agents' installs
    then wait for their k3s.upgrade batch, the graph's heavier shape; and its retired steps)."""
    config = make_config(SERVERS, agents)
    record = {
        "nodes": [{**n, "role": role} for role in ("server", "agent") for n in config[f"{role}s"]],
        "retiredSteps": ["-cleanup"],
    }
    secrets = {"sshPrivateKey": TEST_SSH_KEY, "token": TEST_TOKEN}
    return run_program(config, secrets, previous_outputs=record)


def per_node_commands(run: Run, node_type: str) -> int:
    nodes = [r.urn for r in run.registrations if r.type == node_type]
    children = [r for r in run.registrations if r.parent in nodes and r.custom]
    return len(children) // max(len(nodes), 1)


def timed(fn: Callable[[], Run]) -> tuple[float, Run]:
    start = time.perf_counter()
    run = fn()
    return time.perf_counter() - start, run


def one(kind: str, size: int, per_agent: int = 0, per_server: int = 0) -> dict[str, Any]:
    """One program, timed, in this (fresh) process after a small warm-up run of the same kind:
    ours for `size` agents, the same-shape minimal program, or the plain one with `size`
    resources. A second program in one process runs slower than the first (the runtime keeps
    state from run to run), so compare() starts a process per measurement."""
    programs: dict[str, Callable[[int], Run]] = {
        "ours": ours,
        "minimal": lambda n: _register(minimal_program(SERVERS, n, per_agent, per_server)),
        "plain": lambda n: _register(plain_program(n)),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        programs[kind](10 if kind != "plain" else 21)  # imports and caches
        seconds, run = timed(lambda: programs[kind](size))
    result: dict[str, Any] = {"resources": len(run.registrations), "seconds": seconds}
    if kind == "ours":
        result["per_agent"] = per_node_commands(run, "k3s-rancher:index:K3sAgent")
        result["per_server"] = per_node_commands(run, "k3s-rancher:index:K3sServer")
        result["chain"] = longest_chain(run)
    return result


def in_process(kind: str, size: int, per_agent: int = 0, per_server: int = 0) -> dict[str, Any]:
    argv = ["--one", kind, str(size), str(per_agent), str(per_server)]
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.graph_cost", *argv], capture_output=True, text=True, check=True
    )
    return dict(json.loads(out.stdout.splitlines()[-1]))


def compare(agents: int, rounds: int = 3) -> dict[str, Any]:
    """Median ms per resource of ours, the same-shape and the plain program, each run in its
    own process, `rounds` times, in turn (so that a change of the machine's load hits all)."""
    first = in_process("ours", agents)
    n_ours, per_agent, per_server = first["resources"], first["per_agent"], first["per_server"]
    times: dict[str, list[float]] = {"ours": [], "minimal": [], "plain": []}
    counts: dict[str, int] = {}
    for number in range(rounds):
        for kind, size in (("ours", agents), ("minimal", agents), ("plain", n_ours)):
            # The first round's own run is the one that gave the counts above.
            r = first if (number, kind) == (0, "ours") else in_process(kind, size, per_agent, per_server)
            times[kind].append(1000 * r["seconds"] / r["resources"])
            counts[kind] = r["resources"]
    return {
        "agents": agents,
        "resources": n_ours,
        "per_agent": per_agent + 1,  # + the component
        "chain": first["chain"],
        "ours_ms": statistics.median(times["ours"]),
        "minimal_resources": counts["minimal"],
        "minimal_ms": statistics.median(times["minimal"]),
        "plain_resources": counts["plain"],
        "plain_ms": statistics.median(times["plain"]),
        "runs": times,
    }


def longest_chain(run: Run) -> int:
    """The longest path of dependencies (parents aside) among the registered resources."""
    deps: dict[str, set[str]] = {}
    for r in run.registrations:
        through_inputs = [d for ds in r.property_dependencies.values() for d in ds]
        deps[r.urn] = {d for d in [*r.dependencies, *through_inputs] if d != r.parent}
    depth: dict[str, int] = {}

    def walk(urn: str) -> int:
        if urn not in depth:
            depth[urn] = 0  # a cycle cannot happen (the SDK refuses one); this ends recursion
            depth[urn] = 1 + max((walk(d) for d in deps.get(urn, []) if d in deps), default=0)
        return depth[urn]

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 20000))
    return max((walk(u) for u in deps), default=0)


def main(argv: list[str]) -> None:
    if argv[:1] == ["--one"]:
        print(json.dumps(one(argv[1], *(int(a) for a in argv[2:]))))
        return
    if argv[:1] == ["--profile"]:
        agents = int(argv[1]) if len(argv) > 1 else 400
        profiler = cProfile.Profile()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            profiler.runcall(ours, agents)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
        return
    print("ms/res: wall time per registered resource; 'same shape': the minimal program above;")
    print("'plain': as many resources as ours, an install and a ready check per node (the issue's floor)")
    print(
        f"{'agents':>6} {'resources':>9} {'per agent':>9} {'chain':>5} {'ms/res ours':>11} "
        f"{'same shape':>10} {'ratio':>5} {'plain':>7} {'ratio':>5}"
    )
    for agents in [int(a) for a in argv] or [100, 400]:
        r = compare(agents)
        print(
            f"{r['agents']:>6} {r['resources']:>9} {r['per_agent']:>9} {r['chain']:>5} {r['ours_ms']:>11.3f} "
            f"{r['minimal_ms']:>10.3f} {r['ours_ms'] / r['minimal_ms']:>5.2f} "
            f"{r['plain_ms']:>7.3f} {r['ours_ms'] / r['plain_ms']:>5.2f}",
            flush=True,
        )
        for kind, runs in r["runs"].items():
            print(f"        {kind:8} ms/res per run: {' '.join(f'{t:.3f}' for t in runs)}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
