"""What k3s.driftCheck costs (issue 25), with the check off and on.

mocks:  the program under Pulumi's mocks for 3 servers + AGENTS agents, every node installed
        by the previous run (so every one is read), the hosts' reads faked as healthy at the
        edge (components/drift_ssh.read_hosts): wall time of the program run and the
        resources it registers. What the check adds to the graph, not the SSH time.
engine: tier 2 (tests/real/): the real engine, 1 server + 4 agents on throwaway hosts with
        the STAND-IN k3s, installed once; then, alternately with the check off and on, a
        no-op `pulumi preview`, `pulumi up --yes` (its own preview, then the update) and
        `pulumi up --yes --skip-preview`, ROUNDS times each; the median wall times. The
        issue's bound: a no-op up with the check at most 1.5x the one without.

Run:  .venv/bin/python -m benchmarks.drift_cost mocks [AGENTS]    (default 100)
      .venv/bin/python -m benchmarks.drift_cost engine [ROUNDS]   (default 3)
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from unittest import mock

from benchmarks.graph_scale import make_config
from components import drift, drift_ssh
from components.settings import Node
from tests.harness import TEST_SSH_KEY, TEST_TOKEN, run_program

SERVERS = 3
VERSION = "v1.33.5+k3s1"
HEALTHY = "unit=yes\nstate=active\nversion=v1.33.5+k3s1\nbundle=yes\napplied=yes\nend=1\n"


def _healthy(
    targets: Sequence[tuple[Node, bool]], ssh: Any, creds: Any, timeout: int
) -> Mapping[str, drift.Probe | str]:
    probe = drift.parse(HEALTHY)
    assert probe is not None
    return {node.name: probe for node, _ in targets}


def mocks(agents: int) -> None:
    config = make_config(SERVERS, agents)
    previous = {
        "nodes": [{"name": s["name"], "role": "server", "address": s["address"]} for s in config["servers"]]
        + [{"name": a["name"], "role": "agent", "address": a["address"]} for a in config["agents"]],
        "k3sVersion": VERSION,
    }
    secrets = {"sshPrivateKey": TEST_SSH_KEY, "token": TEST_TOKEN}

    def once(on: bool) -> tuple[float, float, int, int]:
        cfg = {**config, "k3s": {**config.get("k3s", {}), "driftCheck": on}}
        fake = mock.MagicMock(side_effect=_healthy)
        with mock.patch.object(drift_ssh, "read_hosts", fake):
            start, cpu = time.perf_counter(), time.process_time()
            run = run_program(cfg, secrets, preview=True, previous_outputs=previous)
            elapsed, used = time.perf_counter() - start, time.process_time() - cpu
        read = len(fake.call_args.args[0]) if fake.called else 0
        return elapsed, used, len(run.registrations), read

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        once(False)  # warm imports and caches
        # Alternately off and on, so that a change of the machine's load hits both alike.
        pairs = [(once(False), once(True)) for _ in range(5)]
    print(f"mocks, {SERVERS} servers + {agents} agents (median of 5 program runs, alternating; wall and CPU):")
    for on in (False, True):
        runs = [pair[on] for pair in pairs]
        wall, cpu = statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)
        label = "on " if on else "off"
        print(f"  check {label}: {wall:6.2f} s wall, {cpu:6.2f} s CPU, {runs[0][2]} resources, {runs[0][3]} hosts read")


def engine(rounds: int) -> None:
    from tests.real.engine_project import TOKEN, engine_bin, make_project
    from tests.real.hosts import run_setup_script, test_hosts
    from tests.real.standin_k3s import standin_binary

    run_setup_script()
    bin_dir = engine_bin()
    commands: dict[str, tuple[str, ...]] = {
        "preview": ("preview", "--expect-no-changes"),
        "up": ("up", "--yes", "--expect-no-changes"),
        "up --skip-preview": ("up", "--yes", "--skip-preview", "--expect-no-changes"),
    }
    times: dict[tuple[str, bool], list[float]] = {(c, on): [] for c in commands for on in (False, True)}
    # kubernetes=True: the stand-in k3s serves the API of a real control plane (tests/real/host_api.py).
    with tempfile.TemporaryDirectory() as tmp_name, test_hosts(5, kubernetes=True) as hosts:
        tmp = Path(tmp_name)
        project = make_project(tmp, bin_dir)
        project.set_secret("token", TOKEN)
        project.set_secret("sshPrivateKey", hosts[0].private_key)
        binary = standin_binary(tmp, VERSION)
        project.configure(hosts, 1, VERSION, binary)
        try:
            project.pulumi("up", "--yes", "--skip-preview")
            for _ in range(rounds):
                for on in (False, True):
                    project.configure(hosts, 1, VERSION, binary, k3s={"driftCheck": on})
                    for name, args in commands.items():
                        start = time.perf_counter()
                        project.pulumi(*args)
                        times[(name, on)].append(time.perf_counter() - start)
            read_directly(hosts, rounds)
        finally:
            project.pulumi("destroy", "--yes", "--skip-preview", check=False)
    print(f"engine, 1 server + 4 agents, no-op runs (median of {rounds}; all runs in s):")
    for name in commands:
        t_off, t_on = statistics.median(times[(name, False)]), statistics.median(times[(name, True)])
        runs = (
            " ".join(f"{t:.1f}" for t in times[(name, False)])
            + " | "
            + " ".join(f"{t:.1f}" for t in times[(name, True)])
        )
        print(f"  {name:18} off {t_off:5.1f} s  on {t_on:5.1f} s  ratio {t_on / t_off:4.2f}   ({runs})")


def read_directly(hosts: Sequence[Any], rounds: int) -> None:
    """The check's own part, outside the engine: read_hosts for the 5 nodes at once, and each
    host alone (the init server also lists the nodes through its API)."""
    from components.settings import SshEndpoint, SshSettings

    nodes = [
        (
            Node(
                "srv-1" if i == 0 else f"agt-{i}",
                "server" if i == 0 else "agent",
                h.address,
                SshEndpoint("127.0.0.1", h.ssh_port, "ubuntu"),
            ),
            i == 0,
        )
        for i, h in enumerate(hosts)
    ]
    ssh = SshSettings(
        user="ubuntu", port=22, use_agent=False, host_keys={}, bastion=None, dial_error_limit=10, per_dial_timeout=15
    )
    creds = drift_ssh.Credentials(hosts[0].private_key, None)
    every: list[float] = []
    alone: dict[str, list[float]] = {node.name: [] for node, _ in nodes}
    for _ in range(rounds):
        start = time.perf_counter()
        answers = drift_ssh.read_hosts(nodes, ssh, creds, 10)
        every.append(time.perf_counter() - start)
        assert all(isinstance(a, drift.Probe) for a in answers.values()), answers
        for target in nodes:
            start = time.perf_counter()
            drift_ssh.read_hosts([target], ssh, creds, 10)
            alone[target[0].name].append(time.perf_counter() - start)
    runs = " ".join(f"{t:.2f}" for t in every)
    print(f"read_hosts, the 5 nodes at once: median {statistics.median(every):.2f} s ({runs})")
    for name, times in alone.items():
        print(f"  {name} alone: median {statistics.median(times):.2f} s")


def main() -> None:
    what = sys.argv[1] if len(sys.argv) > 1 else "mocks"
    if what == "mocks":
        mocks(int(sys.argv[2]) if len(sys.argv) > 2 else 100)
    elif what == "engine":
        engine(int(sys.argv[2]) if len(sys.argv) > 2 else 3)
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
