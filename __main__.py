"""k3s-rancher: a K3s cluster with Rancher on it, as one Pulumi graph (see README.md)."""

from components.program import exit_quietly_on_interrupt, run

exit_quietly_on_interrupt()  # here, not in run(): the mock tests call run() inside pytest
run()
