"""A STAND-IN K3s node image for the docker topology's plumbing tests: not K3s.

Images cannot be pulled on the test machine, so this makes one locally: the test host image
(Debian with python3, from setup_docker.sh) plus the stand-in k3s of tests/real/standin/
as its entrypoint, like rancher/k3s (ENTRYPOINT /bin/k3s, `k3s server|agent` as command).
The stand-in reads /etc/rancher/k3s/config.yaml (node-name, server, token-file), joins
over plain HTTP on :6443 with the token, registers its Node in the real Kubernetes API whose
socket directory the plumbing test mounts into each container (tests/real/host_api.py),
writes /etc/rancher/k3s/k3s.yaml, and `k3s kubectl` is the real kubectl. It checks how
containers, files, addresses and commands are wired; it says nothing about K3s itself.
"""

from __future__ import annotations

import hashlib
import subprocess
import tempfile
from pathlib import Path

from components import checks
from tests.real.standin_k3s import STANDIN, standin_binary

REPOSITORY = "k3s-rancher-standin-node"
BINARY = "/usr/local/bin/k3s"


def _docker(*args: str, timeout: float = 120) -> str:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout.strip()


def build_node_image(base_image: str, k3s_version: str) -> str:
    """The stand-in node image for `k3s_version`, tagged like rancher/k3s (v1.33.5-k3s1);
    rebuilt when the base image or the stand-in changes (both are in the label)."""
    image = f"{REPOSITORY}:{checks.k3s_image_tag(k3s_version)}"
    digest = hashlib.sha256((STANDIN / "k3s").read_bytes()).hexdigest()[:12]
    source = f"{base_image} {digest}"
    current = subprocess.run(
        ["docker", "image", "inspect", "--format", '{{index .Config.Labels "k3s-rancher.standin.source"}}', image],
        capture_output=True,
        text=True,
        check=False,
    )
    if current.returncode == 0 and current.stdout.strip() == source:
        return image
    with tempfile.TemporaryDirectory() as directory:
        binary = standin_binary(Path(directory), k3s_version)
        container = _docker("create", base_image, "true")
        try:
            _docker("cp", str(binary), f"{container}:{BINARY}")
            _docker(
                "commit",
                "--change", f'ENTRYPOINT ["{BINARY}"]',
                "--change", 'CMD ["agent"]',
                "--change", f'LABEL k3s-rancher.standin.source="{source}"',
                container,
                image,
            )  # fmt: skip
        finally:
            _docker("rm", "-f", container)
    return image
