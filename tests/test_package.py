"""k3s-rancher as a package a user installs (issue 27 item 1): the wheel built from this
checkout, installed into a fresh virtualenv, imported as `k3s_rancher` by a program outside
the repository (tests/package_probe.py, with examples/library/__main__.py), under Pulumi's
mocks.

The wheel is built as `pip wheel .` builds it (setuptools in an isolated build environment,
from the package index, or pip's cache). The fresh virtualenv gets the wheel with --no-deps
and sees the suite's virtualenv's site-packages through a .pth file: a full install
downloads ~200 MB (about 30 s); what it would resolve is checked instead, every declared
dependency against the pinned version the suite runs with.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement

import components
from components import bundle
from tests.harness import ROOT

PROBE = ROOT / "tests" / "package_probe.py"
EXAMPLE = ROOT / "examples" / "library" / "__main__.py"
# What the wheel is built from: the build must need nothing else of the repository.
SOURCES = ("pyproject.toml", "README.md", "components")


def _pip(*args: str, cwd: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, f"pip {' '.join(args)}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"


def _build_wheel(tmp: Path) -> Path:
    source = tmp / "source"
    source.mkdir()
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy(path, source / name)
    _pip("wheel", "--no-deps", "--wheel-dir", str(tmp / "dist"), str(source), cwd=tmp)
    (built,) = (tmp / "dist").glob("*.whl")
    return built


def _run_as_a_user(wheel: Path, tmp: Path) -> dict[str, Any]:
    """Install `wheel` into a fresh virtualenv and run the probe with it outside the repository."""
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    _pip("--python", str(python), "install", "--no-deps", str(wheel), cwd=tmp)
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(purelib) / "suite-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    program = tmp / "program"
    program.mkdir()
    shutil.copy(PROBE, program / "probe.py")
    shutil.copy(EXAMPLE, program / "__main__.py")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    done = subprocess.run(
        [python, "-I", "probe.py", str(program / "__main__.py")],
        cwd=program,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"the program outside the repository failed:\n{done.stderr[-4000:]}"
    result: dict[str, Any] = json.loads(done.stdout)
    result["venv"] = str(venv)
    return result


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """The wheel and the probe's report, made once per run: under xdist the workers share
    them (the run's base temporary directory, under a lock), as the xdist docs suggest for
    an expensive session fixture."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        tmp = tmp_path_factory.mktemp("package")
        wheel = _build_wheel(tmp)
        return wheel, _run_as_a_user(wheel, tmp)
    shared = tmp_path_factory.getbasetemp().parent / "package"
    shared.mkdir(exist_ok=True)
    with (shared / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        saved = shared / "report.json"
        if not saved.exists():
            wheel = _build_wheel(shared)
            saved.write_text(json.dumps({"wheel": str(wheel), "report": _run_as_a_user(wheel, shared)}))
        data = json.loads(saved.read_text())
    return Path(data["wheel"]), data["report"]


@pytest.fixture
def wheel(built: tuple[Path, dict[str, Any]]) -> Path:
    return built[0]


@pytest.fixture
def report(built: tuple[Path, dict[str, Any]]) -> dict[str, Any]:
    return built[1]


def test_the_wheel_holds_the_package_and_every_file_it_reads(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    source = ROOT / "components"
    wanted = {
        "k3s_rancher/" + path.relative_to(source).as_posix()
        for path in source.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }
    assert not wanted - names, f"missing from the wheel: {sorted(wanted - names)}"
    assert "k3s_rancher/py.typed" in names
    # Nothing else at the top level (no `components`, no tests): k3s_rancher and its metadata.
    assert {n.split("/")[0] for n in names} == {"k3s_rancher", f"k3s_rancher-{components.__version__}.dist-info"}


def test_a_program_outside_the_repository_imports_the_installed_package(report: dict[str, Any]) -> None:
    assert report["file"].startswith(report["venv"]), report["file"]
    assert report["version"] == report["distribution_version"] == components.__version__
    assert not report["components_importable"], "the wheel must not install a top-level `components`"
    assert report["all"] == sorted(components.__all__)


def test_the_installed_package_sends_the_same_scripts_as_this_checkout(report: dict[str, Any]) -> None:
    """The host scripts are package data: an install from the wheel re-runs no node."""
    assert report["bundle_sha256"] == bundle.current_bundle().sha256


def test_the_example_builds_its_clusters_from_the_installed_package(report: dict[str, Any]) -> None:
    resources = {(r["type"], r["name"]) for r in report["resources"]}
    clusters = {name for typ, name in resources if typ == "k3s-rancher:index:K3sCluster"}
    assert clusters == {"hub", "edge"}
    assert {name for typ, name in resources if typ == "k3s-rancher:index:RancherDeployment"} == {"hub"}
    parents = {r["name"]: r["parent"] for r in report["resources"]}
    for node, cluster in (("hub-cp1", "hub"), ("hub-w1", "hub"), ("edge-cp1", "edge")):
        assert parents[node].endswith(f"::{cluster}"), (node, parents[node])
        assert ("command:remote:Command", f"{node}-install") in resources
    assert {"hubRancherUrl", "hubKubeconfig", "edgeKubeconfig"} <= set(report["outputs"])


def test_two_clusters_on_hosts_the_program_makes_itself_from_the_installed_package(report: dict[str, Any]) -> None:
    """Issue 27's user: `from k3s_rancher import K3sCluster, ..., AgentPool`, hosts made in the
    same program (their addresses Outputs), two clusters with alike node names, a pool each."""
    resources = report["on_vms"]
    by_name = {r["name"]: r for r in resources}
    assert len(by_name) == len(resources), "no two resources share a name"
    vms = {r["name"]: r for r in resources if r["type"] == "probe:index:Vm"}
    pools = [r for r in resources if r["type"] == "k3s-rancher:index:AgentPool"]
    assert sorted(r["parent"].rsplit("::", 1)[1] for r in pools) == ["east", "west"]
    for cluster, subnet in (("east", 1), ("west", 2)):
        for node, last in (("cp1", 11), ("w1", 21), ("g1", 31)):
            install = by_name[f"{cluster}-{node}-install"]
            assert install["host"] == f"10.{subnet}.0.{last}", install  # the VM's address, once known
            assert vms[f"{cluster}-vm-{node}"]["urn"] in install["dependencies"]  # after its VM


def test_a_bad_config_gets_every_error_by_key_from_the_installed_package(report: dict[str, Any]) -> None:
    assert report["bad_config_keys"] == [
        "k3s-rancher:k3s.verison",  # found by the schema (package data)
        "k3s-rancher:rancher.replicas",
        "k3s-rancher:servers[0].name",
    ]


def test_every_declared_dependency_is_met_by_the_pinned_versions(report: dict[str, Any]) -> None:
    """pyproject.toml's ranges hold requirements.txt's pins (the versions the suite runs)."""
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            pin = Requirement(line)
            pins[pin.name.lower().replace("_", "-")] = str(pin.specifier).removeprefix("==")
    assert report["requires"], "the package declares no dependencies"
    for text in report["requires"]:
        requirement = Requirement(text)
        name = requirement.name.lower().replace("_", "-")
        assert report["installed"].get(name) is not None, f"{name}: not installed"
        assert requirement.specifier.contains(report["installed"][name]), f"{text}: found {report['installed'][name]}"
        pinned = pins.get(name)
        assert pinned is not None and requirement.specifier.contains(pinned), f"{text}: requirements.txt pins {pinned}"


def test_no_python_file_here_edits_sys_path() -> None:
    """Everything imports the package as installed or from the repository's root (pytest's
    pythonpath, `python -m`): a sys.path edit would hide an import that only works here. The
    policy pack's entry point loads its rules with importlib (tests/test_policy_pack.py runs
    a copy of it under another name)."""
    tracked = subprocess.run(["git", "ls-files", "*.py"], cwd=ROOT, capture_output=True, text=True, check=True)
    edits = [
        f"{name}:{number}"
        for name in tracked.stdout.split()
        for number, line in enumerate((ROOT / name).read_text().splitlines(), 1)
        if any(f"sys.path.{verb}(" in line for verb in ("insert", "append"))
    ]
    assert edits == []
