"""k3s-rancher: a K3s cluster with Rancher on it, as one Pulumi graph (see README.md)."""

from components.program import run

run()
