"""Wall time of a real `pulumi up` for 1 server + 1 agent versus 1 server + 4 agents.

Agents install in parallel after the last server, so four agents should cost far less than
four times one. Uses the tier-2 set-up: the engine built from Go modules (with our stand-in
command provider) and throwaway Debian hosts running the STAND-IN k3s (tests/real/), so it
measures our graph's shape and the SSH round trips, not K3s's own start-up time.
Run: .venv/bin/python -m benchmarks.engine_agents
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from tests.real.engine_project import TOKEN, engine_bin, make_project
from tests.real.hosts import run_setup_script, test_hosts
from tests.real.standin_k3s import standin_binary

VERSION = "v1.33.5+k3s1"


def measure(agents: int, bin_dir: Path) -> float:
    # kubernetes=True: the stand-in k3s serves the API of a real control plane (tests/real/host_api.py),
    # which every node step (the waits, an agent's rollout) asks since a0172e2.
    with tempfile.TemporaryDirectory() as tmp_name, test_hosts(1 + agents, kubernetes=True) as hosts:
        tmp = Path(tmp_name)
        project = make_project(tmp, bin_dir)
        project.set_secret("token", TOKEN)
        project.set_secret("sshPrivateKey", hosts[0].private_key)
        project.configure(hosts, 1, VERSION, standin_binary(tmp, VERSION))
        try:
            return project.timed_up()
        finally:
            project.pulumi("destroy", "--yes", "--skip-preview", check=False)


def main() -> None:
    run_setup_script()
    bin_dir = engine_bin()
    print(f"{'agents':>6} {'up seconds':>10}")
    results = {}
    for agents in (1, 4):
        results[agents] = measure(agents, bin_dir)
        print(f"{agents:>6} {results[agents]:>10.1f}", flush=True)
    print(f"1+4 / 1+1 = {results[4] / results[1]:.2f} (4.00 would mean no overlap)")


if __name__ == "__main__":
    main()
