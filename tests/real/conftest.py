"""Fixtures for the real tier: a running Docker engine and the test host image.

The session fixture runs ``setup_docker.sh`` once (idempotent; installs Docker and builds
the image on a cold machine) before the first test in ``tests/real``. If Docker cannot be
started, the tests FAIL with the script's error. ``K3SR_SKIP_REAL=1`` skips them on purpose.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

# `tests.real.*` is importable however pytest is started: pyproject.toml's pytest `pythonpath`.
from tests.real import private_tmp
from tests.real.engine_project import engine_bin
from tests.real.hosts import remove_stale, run_setup_script

if TYPE_CHECKING:
    from tests.real.controlplane import ControlPlane


_private_tmp: tuple[Path, str | None] | None = None


def pytest_configure(config: pytest.Config) -> None:
    """This run's own TMPDIR for every process the tests start (tests/real/private_tmp.py:
    the kubernetes provider leaves admin kubeconfig copies in $TMPDIR)."""
    global _private_tmp
    if _private_tmp is None:
        _private_tmp = private_tmp.enter()


def pytest_unconfigure(config: pytest.Config) -> None:
    """Remove this run's TMPDIR, with whatever the processes left in it."""
    global _private_tmp
    if _private_tmp is not None:
        private_tmp.leave(*_private_tmp)
        _private_tmp = None


@pytest.fixture(scope="session", autouse=True)
def testhost_image() -> str:
    """The name of the test host image; Docker is running when this returns."""
    if os.environ.get("K3SR_SKIP_REAL") == "1":
        pytest.skip("K3SR_SKIP_REAL=1: real-host tests skipped on request")
    try:
        image = run_setup_script()
    except (RuntimeError, OSError) as exc:
        pytest.fail(f"cannot prepare Docker test hosts: {exc}", pytrace=False)
    remove_stale()  # groups left by killed test runs (their process is gone)
    return image


_engine_ready = False


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Before the first engine test: build the engine (or find it cached) with its progress on
    the terminal, outside pytest's capture. A cold build takes tens of minutes; without this
    the run would print nothing all that time."""
    global _engine_ready
    if _engine_ready or not item.path.stem.startswith("test_engine") or os.environ.get("K3SR_SKIP_REAL") == "1":
        return
    _engine_ready = True
    capture = item.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        sys.stderr.write("\n== the engine: tests/real/engine/build.sh (cached after the first build)\n")
        engine_bin(progress=sys.stderr)


# --- tier 3: a real Kubernetes control plane (tests/real/controlplane.py) ---------------


@pytest.fixture(scope="session")
def controlplane_bin() -> Path:
    """The built control-plane binaries (tests/real/controlplane/build.sh; bin/test builds
    them before the real tiers). Not built: skip, or fail in CI (CI=true)."""
    from tests.real.controlplane import cached_bin_dir

    bin_dir = cached_bin_dir()
    if bin_dir is None:
        reason = "control-plane binaries not built: run tests/real/controlplane/build.sh (tens of minutes, cached)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    return bin_dir


@pytest.fixture(scope="session")
def controlplane(controlplane_bin: Path) -> Iterator[ControlPlane]:
    """One control plane for the session (per xdist worker), in its own private network
    namespace; stopped, and its files removed, at the end."""
    from tests.real.controlplane import control_plane

    with control_plane(controlplane_bin) as cp:
        yield cp


@pytest.fixture(scope="session")
def cert_manager_chart(controlplane_bin: Path, request: pytest.FixtureRequest) -> Path:
    """The REAL cert-manager chart archive at the program's pinned version, assembled from its
    Go module (tests/real/cert_manager_chart.py; seconds, cached beside the control plane). A
    failed assembly fails the tests that need it."""
    from tests.real.cert_manager_chart import ChartBuildError, build_cert_manager_chart, cached_cert_manager_chart

    helm = controlplane_bin / "helm"
    cached = cached_cert_manager_chart(helm)
    if cached is not None:
        return cached
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        sys.stderr.write("\n== the real cert-manager chart: tests/real/controlplane/cert-manager-chart.sh\n")
        try:
            return build_cert_manager_chart(helm, progress=sys.stderr)
        except ChartBuildError as exc:
            pytest.fail(str(exc), pytrace=False)
