"""The validators each cluster topology runs, in the order their problems are listed: here,
not in components/topologies, so that the cluster components (components/backends), which
the topologies build, run the same list on args built by hand without importing the
registry (components/validation/args.py). Each topology's `validators()` returns its own.
"""

from __future__ import annotations

from functools import partial

from . import Validator, docker, k3s, kubeconfig, nodes, rancher, ssh

SSH: tuple[Validator, ...] = (nodes.problems, k3s.problems, ssh.problems, kubeconfig.secret_refused, rancher.problems)
DOCKER: tuple[Validator, ...] = (
    nodes.problems,
    partial(k3s.problems, registry_auth_refused=docker.REGISTRY_AUTH_REFUSED, proxy_refused=docker.PROXY_REFUSED),
    docker.problems,
    kubeconfig.secret_refused,
    rancher.problems,
)
