"""Which Kubernetes minors each Rancher minor's chart accepts.

The Rancher chart's Chart.yaml carries a kubeVersion range; Helm refuses an install outside
it, half-way through `pulumi up`. Checking the pair here refuses it before anything exists.
Ranges are inclusive Kubernetes minors (1.x), from Rancher's support matrix per release line.
"""

from __future__ import annotations

RANCHER_KUBERNETES_MINORS: dict[tuple[int, int], tuple[int, int]] = {
    (2, 9): (27, 30),
    (2, 10): (28, 31),
    (2, 11): (30, 32),
    (2, 12): (31, 33),
    (2, 13): (32, 34),
    (2, 14): (33, 35),
}


def rancher_minor(version: str) -> tuple[int, int]:
    major, minor, *_ = version.split(".")
    return int(major), int(minor)


def rancher_k3s_error(rancher_version: str, k3s_minor: int) -> str | None:
    """None when Rancher `rancher_version` supports Kubernetes 1.<k3s_minor>, else why not."""
    line = rancher_minor(rancher_version)
    known = RANCHER_KUBERNETES_MINORS.get(line)
    if known is None:
        lines = ", ".join(f"{a}.{b}" for a, b in RANCHER_KUBERNETES_MINORS)
        return f"Rancher {rancher_version} is not a release line this program knows ({lines})"
    low, high = known
    if low <= k3s_minor <= high:
        return None
    fitting = [f"{a}.{b}" for (a, b), (lo, hi) in RANCHER_KUBERNETES_MINORS.items() if lo <= k3s_minor <= hi]
    hint = f"; Rancher lines that accept 1.{k3s_minor}: {', '.join(fitting)}" if fitting else ""
    return (
        f"Rancher {rancher_version} supports Kubernetes 1.{low} to 1.{high}, "
        f"not K3s 1.{k3s_minor}: pick k3s.version v1.{low}.x-v1.{high}.x{hint}"
    )


# K3s minors this program supports: those some Rancher line accepts. The K3s flag lists
# (components/data/k3s-flags.json) cover exactly these; tests/test_config_validation.py
# checks that they agree.
K3S_MINORS: tuple[int, ...] = tuple(
    range(
        min(lo for lo, _ in RANCHER_KUBERNETES_MINORS.values()),
        max(hi for _, hi in RANCHER_KUBERNETES_MINORS.values()) + 1,
    )
)


def k3s_minor_error(minor: int) -> str | None:
    if minor in K3S_MINORS:
        return None
    return (
        f"K3s 1.{minor} is outside the minors this program supports (1.{K3S_MINORS[0]} to 1.{K3S_MINORS[-1]}): "
        "its flags and its Rancher support are not known here"
    )
