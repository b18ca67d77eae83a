"""Releases, and upgrading from each of them (issue 22): under Pulumi's mocks, nothing on an
existing stack changes that the release notes do not name.

- releases.toml lists the releases (version, commit, date, what the upgrade touches on nodes);
  pyproject.toml, components.release.VERSION and CHANGELOG.md agree with it.
- From every past release to the working tree, for every scenario of tests/graph_snapshot.py
  the release had (its graph is the snapshot file at its commit, read with `git show`) and for
  a 3 + 3 etcd stack with every feature on (rendered by the release's own code, from its
  commit): no URN disappears, nothing is replaced (commands' triggers, every other resource's
  inputs), and no node command's text changes unless a release since declares touches_nodes.
- A harmless change to the host scripts changes the `<node>-scripts` steps only.
- components.release.SCRIPTS_GENERATION is the one number that re-runs the installs.

The working tree's graph is rendered in memory here; the snapshot files of the working tree
are never read (tests/test_graph_snapshot.py keeps them equal to the code).
"""

from __future__ import annotations

import copy
import datetime
import functools
import io
import itertools
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

import components
from components import bundle, release, scripts
from tests import graph_snapshot
from tests.harness import ROOT, TEST_SSH_KEY, TEST_TOKEN, Run, run_program

RELEASES_FILE = ROOT / "releases.toml"
CHANGELOG = ROOT / "CHANGELOG.md"
SNAPSHOTS_IN_COMMIT = "tests/graph_snapshots"
SCRIPTS_SUFFIX = "-scripts"
# What a `-scripts` step's bundle changes (its text on stdin, its digest in create and, on
# Docker, update): a code
# change to the host scripts may always change them.
SCRIPTS_STEP_DELIVERY = frozenset({"create", "update", "stdin"})


# -- releases.toml ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Release:
    version: str
    commit: str  # "" while unreleased: the working tree
    date: datetime.date | None
    touches_nodes: tuple[str, ...]
    creates: tuple[str, ...]
    retires: tuple[str, ...] = ()

    @property
    def released(self) -> bool:
        return bool(self.commit)


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


@functools.cache
def releases() -> tuple[Release, ...]:
    """releases.toml's releases, newest first."""
    data = tomllib.loads(RELEASES_FILE.read_text())
    found = []
    for entry in data["release"]:
        unknown = set(entry) - {"version", "commit", "date", "touches_nodes", "creates", "retires"}
        assert not unknown, f"releases.toml: {entry.get('version')}: unknown keys {sorted(unknown)}"
        date = entry["date"]
        found.append(
            Release(
                version=entry["version"],
                commit=entry["commit"],
                date=date if isinstance(date, datetime.date) else None,
                touches_nodes=tuple(entry["touches_nodes"]),
                creates=tuple(entry.get("creates", ())),
                retires=tuple(entry.get("retires", ())),
            )
        )
    return tuple(found)


def past_releases() -> list[Release]:
    return [r for r in releases() if r.released]


def since(old: Release) -> list[Release]:
    """The releases after `old`, up to the working tree."""
    listed = releases()
    return list(listed[: listed.index(old)])


def test_releases_are_listed_newest_first_with_a_full_commit_and_a_date() -> None:
    listed = releases()
    assert listed, "releases.toml lists no release"
    versions = [r.version for r in listed]
    for version in versions:
        assert re.fullmatch(r"\d+\.\d+\.\d+", version), f"releases.toml: {version!r} is not MAJOR.MINOR.PATCH"
    assert versions == sorted(versions, key=_version_key, reverse=True), f"not newest first: {versions}"
    assert len(set(versions)) == len(versions), f"a version is listed twice: {versions}"
    for r in listed[1:]:
        assert r.released, f"releases.toml: {r.version} has no commit; only the newest may be unreleased"
    for r in listed:
        if r.released:
            assert re.fullmatch(r"[0-9a-f]{40}", r.commit), f"releases.toml: {r.version}: commit is not a full sha"
            assert r.date is not None, f"releases.toml: {r.version}: a released version has a date"
        else:
            assert r.date is None, f'releases.toml: {r.version} is unreleased (commit ""): its date is "" too'
        for pattern in r.creates:
            assert pattern.startswith("-"), f"releases.toml: {r.version}: creates lists name suffixes ({pattern!r})"
    dates = [r.date for r in listed if r.date is not None]
    assert dates == sorted(dates, reverse=True), f"release dates are not newest first: {dates}"


def declared_version(read: Callable[[str], str | None]) -> str:
    """The version a tree declares (`read` gives a file of it): pyproject.toml's own, or, from
    0.3.0 on, components/release.py's VERSION, which pyproject.toml names as the package's
    version (dynamic, through the k3s_rancher -> components mapping)."""
    pyproject = tomllib.loads(read("pyproject.toml") or "")
    if "version" in pyproject["project"]:
        return str(pyproject["project"]["version"])
    assert "version" in pyproject["project"].get("dynamic", []), "pyproject.toml has no version"
    setuptools = pyproject["tool"]["setuptools"]
    assert setuptools["dynamic"]["version"] == {"attr": "k3s_rancher.release.VERSION"}
    assert setuptools["package-dir"]["k3s_rancher"] == "components"
    found = re.search(r'^VERSION = "([^"]+)"$', read("components/release.py") or "", re.M)
    assert found, "components/release.py has no VERSION"
    return found.group(1)


def test_this_release_is_the_newest_listed_everywhere() -> None:
    pyproject = declared_version(lambda path: (ROOT / path).read_text())
    newest = releases()[0].version
    assert pyproject == release.VERSION == components.__version__ == newest, (
        f"pyproject.toml says {pyproject}, components/release.py {release.VERSION}, "
        f"components.__version__ {components.__version__}, releases.toml's newest {newest}: one version for all"
    )
    assert changelog_sections()[0][0] == newest, "CHANGELOG.md's first section is the newest release"


def test_the_test_workflow_fetches_every_commit() -> None:
    """A checkout of one commit has no release to compare with: the upgrade tests would skip."""
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "test.yml").read_text())
    checkouts = [
        step
        for job in workflow["jobs"].values()
        for step in job["steps"]
        if str(step.get("uses", "")).startswith("actions/checkout@")
    ]
    assert checkouts, "test.yml checks the repository out"
    for step in checkouts:
        assert (step.get("with") or {}).get("fetch-depth") == 0, "test.yml: actions/checkout needs fetch-depth: 0"


# -- git history -----------------------------------------------------------------------------


def _git(*args: str) -> subprocess.CompletedProcess[str] | None:
    try:
        return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=False)
    except FileNotFoundError:
        return None


def _git_bytes(*args: str) -> bytes:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, check=True).stdout


def require_commit(r: Release) -> None:
    """Skip, saying why, when the release's commit cannot be read (no git, a shallow clone)."""
    done = _git("cat-file", "-e", f"{r.commit}^{{commit}}")
    if done is None:
        pytest.skip(f"git is not installed: release {r.version} ({r.commit[:12]}) cannot be read")
    if done.returncode != 0:
        pytest.skip(
            f"release {r.version}'s commit {r.commit[:12]} is not in this clone (a shallow clone? "
            "`git fetch --unshallow`, or fetch-depth: 0 on actions/checkout)"
        )


def show(commit: str, path: str) -> str | None:
    done = _git("show", f"{commit}:{path}")
    return done.stdout if done is not None and done.returncode == 0 else None


@functools.cache
def snapshot_names_at(commit: str) -> frozenset[str]:
    done = _git("ls-tree", "--name-only", f"{commit}:{SNAPSHOTS_IN_COMMIT}")
    if done is None or done.returncode != 0:
        return frozenset()
    return frozenset(line.removesuffix(".json") for line in done.stdout.split() if line.endswith(".json"))


def test_each_release_commit_says_its_own_version() -> None:
    """A release's commit declares that release's version, and the commits come in order."""
    past = past_releases()
    for r in past:
        require_commit(r)
        assert show(r.commit, "pyproject.toml") is not None, f"{r.version}: no pyproject.toml at {r.commit[:12]}"
        assert declared_version(functools.partial(show, r.commit)) == r.version, f"version at {r.commit[:12]}"
    for newer, older in itertools.pairwise(past):
        done = _git("merge-base", "--is-ancestor", older.commit, newer.commit)
        assert done is not None and done.returncode == 0, f"{older.version} is not an ancestor of {newer.version}"
    if past:
        done = _git("merge-base", "--is-ancestor", past[0].commit, "HEAD")
        assert done is not None and done.returncode == 0, f"release {past[0].version} is not in HEAD's history"


# -- scenarios -------------------------------------------------------------------------------

FULL = "ssh-full"
REPO = "<repo>"  # in a scenario's config: the root of the tree whose code renders it


def _full() -> tuple[dict[str, Any], dict[str, str], str]:
    """3 etcd servers + 3 agents with every feature on: airgap, registries, proxy (with its
    credentials), etcd snapshots to S3 (with keys), labels and taints on servers and agents,
    upgrade batches of two agents (a batch gate), a bastion, Rancher with its bootstrap password."""
    airgap = f"{REPO}/tests/data/airgap"
    config = {
        "topology": "ssh",
        "k3s": {
            "version": "v1.33.5+k3s1",
            "datastore": "etcd",
            "initServer": "full-cp1",
            "apiAddress": "10.30.0.10",
            "tlsSans": ["k3s.full.example.com"],
            "airgap": {
                "installScript": f"{airgap}/install.sh",
                "binary": f"{airgap}/k3s",
                "images": f"{airgap}/images.tar.zst",
            },
            "registries": {"mirrors": {"docker.io": {"endpoint": ["https://mirror.example.com"]}}},
            "proxy": {"httpsProxy": "http://proxy.example.com:3128", "noProxy": [".corp.example.com"]},
            "etcdSnapshots": {
                "scheduleCron": "0 */6 * * *",
                "retention": 14,
                "s3": {"endpoint": "s3.example.com", "bucket": "k3s-snaps", "folder": "full", "region": "eu-west-1"},
            },
            "upgrade": {"agentsAtOnce": 2},
        },
        "ssh": {"user": "ubuntu", "bastion": {"host": "bastion.full.example.com", "user": "jump"}},
        "servers": [
            {
                "name": "full-cp1",
                "address": "10.30.0.11",
                "taints": ["node-role.kubernetes.io/control-plane=true:NoSchedule"],
            },
            {"name": "full-cp2", "address": "10.30.0.12", "labels": {"zone": "b"}},
            {"name": "full-cp3", "address": "10.30.0.13"},
        ],
        "agents": [
            {"name": "full-w1", "address": "10.30.0.21", "labels": {"workload": "rancher"}},
            {"name": "full-w2", "address": "10.30.0.22", "taints": ["gpu=true:NoSchedule"]},
            {"name": "full-w3", "address": "10.30.0.23"},
        ],
        "rancher": {
            "enabled": True,
            "hostname": "rancher.full.example.com",
            "tls": "letsEncrypt",
            "letsEncryptEmail": "ops@example.com",
            "bootstrap": True,
        },
    }
    secrets = {
        "sshPrivateKey": TEST_SSH_KEY,
        "token": TEST_TOKEN,
        "proxyCredentials": "proxy-user:proxy-password",
        "etcdS3AccessKey": "AKIA-test-access",
        "etcdS3SecretKey": "s3-test-secret",
        "rancherBootstrapPassword": "full-bootstrap-password",
    }
    return config, secrets, "full"


SCENARIOS: dict[str, graph_snapshot.Scenario] = {**graph_snapshot.SCENARIOS, FULL: _full}


def _resolve(value: Any, root: Path) -> Any:
    return json.loads(json.dumps(value).replace(REPO, str(root)))


def older_record(outputs: dict[str, Any]) -> dict[str, Any]:
    """The record a run of a release before 0.3.0 left, for a run's outputs: the stack's
    `nodes` and each library cluster's `k3s-rancher:<name>`, without `retiredSteps`."""
    record: dict[str, Any] = {}
    for key, value in outputs.items():
        if key == "nodes":
            record[key] = value
        elif key.startswith("k3s-rancher:") and isinstance(value, dict):
            record[key] = {k: v for k, v in value.items() if k != "retiredSteps"}
    return record


def render(name: str) -> tuple[Run, dict[str, Any]]:
    """The working tree's run and graph (tests/graph_snapshot.py's form) of a scenario, as its
    first `up` on a stack an earlier release made (whose record it reads: a new stack's first
    run, the graph snapshots, differs in what a record changes, e.g. the retained cleanups)."""
    config, secrets, stack = SCENARIOS[name]()
    config, secrets = _resolve(config, ROOT), _resolve(secrets, ROOT)
    first = run_program(config, secrets, stack=stack)
    run = run_program(config, secrets, stack=stack, previous_outputs=older_record(first.outputs))
    return run, graph_snapshot.graph(run)


@functools.cache
def head(name: str) -> dict[str, Any]:
    """The working tree's graph, as the code is (rendered before any test patches it)."""
    return render(name)[1]


# What runs in a tree of a release's commit to render the full scenario, which its snapshot
# files do not hold: that release's own tests/harness.py and tests/graph_snapshot.py.
_RENDER_AT = f"""
import json, sys
from pathlib import Path
from tests.harness import run_program
from tests.graph_snapshot import graph
spec = json.loads(sys.stdin.read().replace({REPO!r}, str(Path.cwd())))
print(json.dumps(graph(run_program(spec["config"], spec["secrets"], stack=spec["stack"]))))
"""


class History:
    """Graphs of past releases: the snapshot files at their commits, or the full scenario
    rendered by the release's own code in a tree of its commit."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.full: dict[str, dict[str, Any]] = {}

    def graph(self, r: Release, name: str) -> dict[str, Any]:
        if not r.released:
            return head(name)
        require_commit(r)
        if name in snapshot_names_at(r.commit):
            text = show(r.commit, f"{SNAPSHOTS_IN_COMMIT}/{name}.json")
            assert text is not None
            data: dict[str, Any] = json.loads(text)
            return data
        if name != FULL:
            pytest.skip(f"scenario {name} has no snapshot at release {r.version}: it came later")
        if r.commit not in self.full:
            self.full[r.commit] = self._render_full(r)
        return self.full[r.commit]

    def _render_full(self, r: Release) -> dict[str, Any]:
        tree = self.workdir / r.commit
        tree.mkdir()
        archive = io.BytesIO(_git_bytes("archive", "--format=tar", r.commit))
        with tarfile.open(fileobj=archive) as tar:
            tar.extractall(tree, filter="data")
        config, secrets, stack = _full()
        spec = json.dumps({"config": config, "secrets": secrets, "stack": stack})
        done = subprocess.run(
            [sys.executable, "-c", _RENDER_AT],
            input=spec,
            cwd=tree,
            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tree), "HOME": str(self.workdir)},
            capture_output=True,
            text=True,
            check=False,
        )
        shutil.rmtree(tree)
        assert done.returncode == 0, (
            f"release {r.version}'s code ({r.commit[:12]}) could not render {FULL} (a config key it "
            f"does not know yet?):\n{done.stderr[-3000:]}"
        )
        graph: dict[str, Any] = json.loads(done.stdout)
        return graph


@pytest.fixture(scope="module")
def history() -> Iterator[History]:
    with tempfile.TemporaryDirectory(prefix="k3sr-releases-") as workdir:
        yield History(Path(workdir))


# -- what an upgrade does --------------------------------------------------------------------


def _name(urn: str) -> str:
    return urn.rsplit("::", 1)[-1]


def _is_command(resource: dict[str, Any]) -> bool:
    return str(resource["type"]).startswith("command:")


def _is_scripts_step(urn: str) -> bool:
    name = _name(urn)
    return name.endswith(SCRIPTS_SUFFIX) or f"{SCRIPTS_SUFFIX}-" in name


def upgrade_problems(
    old: dict[str, Any],
    new: dict[str, Any],
    *,
    nodes_declared: bool,
    creates: tuple[str, ...] = (),
    retires: tuple[str, ...] = (),
) -> list[str]:
    """What `pulumi up` after the upgrade would do that the releases since do not declare: one
    line per URN and property. `nodes_declared`: a release since says the upgrade touches nodes
    (command texts may change); `creates`: name suffixes those releases create; `retires`: name
    suffixes of commands they drop, which may go only where they have no delete (pulumi-command
    runs nothing to delete a command without one: provider/pkg/provider/remote/
    commandController.go, Delete returns at once when the state has no delete; so their
    leaving runs nothing on a host)."""
    problems: list[str] = []
    before, after = old["resources"], new["resources"]
    for urn in sorted(set(before) - set(after)):
        if any(_name(urn).endswith(suffix) for suffix in retires):
            if not _is_command(before[urn]):
                problems.append(f"{urn}: retired, but it is no command: its deletion is its provider's")
            elif before[urn]["inputs"].get("delete"):
                problems.append(f"{urn}: retired, but it has a delete: its leaving would run that on the host")
            continue
        problems.append(f"{urn}: gone: its resource would be deleted (an alias is needed to move it)")
    for urn in sorted(set(after) - set(before)):
        declared = _is_scripts_step(urn) or any(_name(urn).endswith(suffix) for suffix in creates)
        if after[urn]["custom"] and not declared:
            problems.append(f"{urn}: new: it would be created on existing stacks, and no release since declares it")
    for urn in sorted(set(before) & set(after)):
        a, b = before[urn], after[urn]
        if not b["custom"]:
            continue
        if a["options"].get("provider") != b["options"].get("provider"):
            problems.append(
                f"{urn}: option provider {a['options'].get('provider')!r} -> {b['options'].get('provider')!r}"
            )
        for prop in sorted(set(a["inputs"]) | set(b["inputs"])):
            was, now = a["inputs"].get(prop), b["inputs"].get(prop)
            if was == now:
                continue
            if not _is_command(b):
                problems.append(f"{urn}: input {prop} changed ({was!r} -> {now!r}): {b['type']} updated or replaced")
            elif prop == "triggers":
                problems.append(f"{urn}: input triggers changed ({was!r} -> {now!r}): the command would be replaced")
            elif _is_scripts_step(urn) and prop in SCRIPTS_STEP_DELIVERY:
                # A new bundle: the step re-delivers the scripts, nothing else runs (issue 22).
                continue
            elif not nodes_declared:
                problems.append(
                    f"{urn}: input {prop} changed: the command would run again on existing nodes, "
                    "and no release since declares touches_nodes"
                )
    return problems


def plan(old: dict[str, Any], new: dict[str, Any]) -> dict[str, list[str]]:
    """The custom resources an upgrade creates, updates, replaces and deletes (a non-command
    resource whose inputs change counts as replaced: its provider decides, assume the worst)."""
    before, after = old["resources"], new["resources"]
    steps: dict[str, list[str]] = {"create": [], "update": [], "replace": [], "delete": []}
    steps["create"] = sorted(u for u in set(after) - set(before) if after[u]["custom"])
    steps["delete"] = sorted(u for u in set(before) - set(after) if before[u]["custom"])
    for urn in sorted(set(before) & set(after)):
        a, b = before[urn]["inputs"], after[urn]["inputs"]
        if not after[urn]["custom"] or a == b:
            continue
        replaced = a.get("triggers") != b.get("triggers") if _is_command(after[urn]) else True
        steps["replace" if replaced else "update"].append(urn)
    return steps


def _past_and_scenarios() -> list[Any]:
    return [
        pytest.param(r, name, id=f"{r.version}-{name}") for r in releases() if r.released for name in sorted(SCENARIOS)
    ]


@pytest.mark.parametrize(("past", "name"), _past_and_scenarios())
def test_upgrading_from_a_release_touches_only_what_the_releases_since_declare(
    history: History, past: Release, name: str
) -> None:
    newer = since(past)
    problems = upgrade_problems(
        history.graph(past, name),
        head(name),
        nodes_declared=any(r.touches_nodes for r in newer),
        creates=tuple(suffix for r in newer for suffix in r.creates),
        retires=tuple(suffix for r in newer for suffix in r.retires),
    )
    assert not problems, (
        f"{name}: upgrading from {past.version} ({past.commit[:12]}) to the working tree:\n  "
        + "\n  ".join(problems[:40])
        + f"\n({len(problems)} in all.) A resource gone or replaced is a defect (an alias; triggers kept as they "
        "were); a changed command text or a new resource is declared in releases.toml (touches_nodes, creates) "
        "and CHANGELOG.md, or avoided."
    )


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_a_step_with_a_delete_leaves_only_after_a_completed_run_retained_it(name: str) -> None:
    """The first up on a stack an earlier release made keeps every step it had; a step whose
    leaving would run a delete (the `-cleanup` steps, whose delete is the uninstall) is
    registered with retain_on_delete, and leaves only in the next up, after the record says
    so: its leaving then runs nothing (pulumi pkg/resource/deploy/step.go, DeleteStep.Apply)."""
    config, secrets, stack = SCENARIOS[name]()
    config, secrets = _resolve(config, ROOT), _resolve(secrets, ROOT)
    first, _ = render(name)
    second = run_program(config, secrets, stack=stack, previous_outputs=first.outputs)
    gone = [r for r in first.registrations if r.urn not in {x.urn for x in second.registrations}]
    for r in gone:
        assert r.custom and _is_command({"type": r.type}), f"{r.name}: a step that is not a command left"
        if r.plain().get("delete"):
            assert r.options["retainOnDelete"], f"{r.name}: left with a delete it would run"
    cleanups = [r for r in first.registrations if r.name.endswith("-cleanup")]
    assert {r.name for r in gone} == {r.name for r in cleanups}
    assert all(r.options["retainOnDelete"] for r in cleanups)
    # An ssh scenario has them on its first up after an upgrade; docker and kubeconfig none.
    assert bool(cleanups) == any(r.type == "k3s-rancher:index:K3sCluster" for r in first.registrations)


def test_the_upgrade_check_names_the_urn_and_the_property() -> None:
    """upgrade_problems on a hand-changed graph: each kind of change is reported by URN."""
    before = head("stack-dev")
    after = copy.deepcopy(before)
    urns = after["resources"]
    install = next(u for u in urns if u.endswith("::dev-w1-install"))
    urns[install]["inputs"]["create"] = "changed"
    ready = next(u for u in urns if u.endswith("::dev-cp1-ready"))
    urns[ready]["inputs"]["triggers"] = ["changed"]
    provider = next(u for u, r in urns.items() if r["custom"] and not _is_command(r))
    urns[provider]["inputs"]["changed"] = True
    gone = next(u for u in urns if u.endswith("::dev-w2-membership"))
    del urns[gone]
    urns["urn:pulumi:dev::k3s-rancher::command:remote:Command::dev-w1-extra"] = urns[install]
    urns["urn:pulumi:dev::k3s-rancher::command:remote:Command::dev-w9-scripts"] = urns[install]
    scripts_step = next(u for u in urns if u.endswith("::dev-w1-scripts"))
    urns[scripts_step] = copy.deepcopy(urns[scripts_step])
    urns[scripts_step]["inputs"]["stdin"] = "k3s-rancher scripts 9.9.9 generation 1\n"
    urns[scripts_step]["inputs"]["create"] = "a new digest"
    scripts_trigger = next(u for u in urns if u.endswith("::dev-w2-scripts"))
    urns[scripts_trigger] = copy.deepcopy(urns[scripts_trigger])
    urns[scripts_trigger]["inputs"]["triggers"] = ["changed"]
    strict = upgrade_problems(before, after, nodes_declared=False)
    assert not any(line.startswith(scripts_step) for line in strict), "a new bundle is never a node change"
    assert any(line.startswith(f"{scripts_trigger}: input triggers changed") for line in strict)
    assert any(line.startswith(f"{install}: input create changed") for line in strict)
    assert any(line.startswith(f"{ready}: input triggers changed") for line in strict)
    assert any(line.startswith(f"{provider}: input changed changed") for line in strict)
    assert any(line.startswith(f"{gone}: gone") for line in strict)
    assert any("dev-w1-extra: new" in line for line in strict)
    assert not any("dev-w9-scripts" in line for line in strict)
    declared = upgrade_problems(before, after, nodes_declared=True, creates=("-extra",))
    assert not any(install in line for line in declared)
    retired = upgrade_problems(before, after, nodes_declared=True, retires=("-membership",))
    assert any(line.startswith(f"{gone}: retired, but it has a delete") for line in retired)
    delete_less = copy.deepcopy(before)
    delete_less["resources"][gone]["inputs"].pop("delete", None)
    assert not any(
        gone in line for line in upgrade_problems(delete_less, after, nodes_declared=True, retires=("-membership",))
    )
    assert not any("dev-w1-extra" in line for line in declared)
    assert any(line.startswith(f"{ready}: input triggers changed") for line in declared)


# -- CHANGELOG.md ----------------------------------------------------------------------------

_SECTION = re.compile(r"^## (\d+\.\d+\.\d+)\b.*$", re.M)


@functools.cache
def changelog_sections() -> tuple[tuple[str, str], ...]:
    """(version, text) per `## <version>` section, in file order."""
    text = CHANGELOG.read_text()
    heads = list(_SECTION.finditer(text))
    return tuple(
        (m.group(1), text[m.end() : heads[i + 1].start() if i + 1 < len(heads) else len(text)])
        for i, m in enumerate(heads)
    )


def test_changelog_has_one_section_per_release_in_the_same_order() -> None:
    assert [v for v, _ in changelog_sections()] == [r.version for r in releases()]


def test_each_upgrading_line_says_what_releases_toml_says() -> None:
    by_version = {r.version: r for r in releases()}
    for version, text in changelog_sections():
        lines = [line for line in text.splitlines() if re.match(r"^\**Upgrading:?\**:?", line.strip())]
        assert len(lines) == 1, f"CHANGELOG.md {version}: one 'Upgrading:' line, found {len(lines)}"
        said = re.search(r"touches nodes: (yes|no)\b", lines[0])
        assert said, f"CHANGELOG.md {version}: the Upgrading line says 'touches nodes: yes' or 'touches nodes: no'"
        declared = bool(by_version[version].touches_nodes)
        assert (said.group(1) == "yes") == declared, (
            f"CHANGELOG.md {version} says touches nodes: {said.group(1)}, "
            f"releases.toml's touches_nodes is {list(by_version[version].touches_nodes)}"
        )


def _generation_at(r: Release) -> int | None:
    if not r.released:
        return release.SCRIPTS_GENERATION
    text = show(r.commit, "components/release.py")
    match = re.search(r"^SCRIPTS_GENERATION = (\d+)$", text or "", re.M)
    return int(match.group(1)) if match else None


def test_a_new_scripts_generation_is_declared_as_touching_nodes() -> None:
    listed = releases()
    for newer, older in itertools.pairwise(listed):
        if older.released:
            require_commit(older)
        was, now = _generation_at(older), _generation_at(newer)
        if was is not None and was != now:
            assert newer.touches_nodes, (
                f"SCRIPTS_GENERATION {was} -> {now} in {newer.version} re-runs every install: "
                "releases.toml's touches_nodes and CHANGELOG.md must say so"
            )


# The migration preview in CHANGELOG.md: a table row per scenario, figures under mocks.
_ROW = re.compile(r"^\| `([a-z0-9-]+)` \| (\d+) \| (\d+) \| (\d+) \| (\d+) \|$", re.M)


def test_the_changelogs_migration_figures_are_the_measured_ones(history: History) -> None:
    """Each section with a figures table (`| stack | create | update | replace | delete |`)
    shows what upgrading from the release before it plans, per scenario, under mocks."""
    listed = releases()
    sections = dict(changelog_sections())
    checked = 0
    for newer, older in itertools.pairwise(listed):
        rows = {m.group(1): tuple(int(m.group(i)) for i in range(2, 6)) for m in _ROW.finditer(sections[newer.version])}
        if not rows:
            continue
        assert set(rows) <= set(SCENARIOS), (
            f"CHANGELOG.md {newer.version}: unknown scenarios {set(rows) - set(SCENARIOS)}"
        )
        measured = {}
        for name in rows:
            steps = plan(history.graph(older, name), history.graph(newer, name))
            measured[name] = tuple(len(steps[kind]) for kind in ("create", "update", "replace", "delete"))
        expected = "\n".join(f"| `{n}` | " + " | ".join(map(str, measured[n])) + " |" for n in sorted(rows))
        assert rows == measured, f"CHANGELOG.md {newer.version}'s figures are stale; measured:\n{expected}"
        checked += 1
    assert checked, "no CHANGELOG.md section has migration figures"


# -- a code change to the host scripts -------------------------------------------------------


def _clear_script_caches() -> None:
    for cached in (scripts._read, scripts.lib_blocks, bundle._cached):
        cached.cache_clear()


Renders = dict[str, tuple[Run, dict[str, Any]]]


@pytest.fixture(scope="module")
def harmless(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Renders]:
    """Every scenario rendered with a harmless line appended to lib.sh and install_node.sh
    (a copy of components/sh); the code is as it was again once they are rendered."""
    for name in SCENARIOS:
        head(name)  # the graphs of the unchanged code first
    sh_dir = tmp_path_factory.mktemp("harmless") / "sh"
    shutil.copytree(bundle.SH_DIR, sh_dir)
    for name in ("lib.sh", "install_node.sh"):
        path = sh_dir / name
        path.write_text(path.read_text() + ": # harmless\n")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(bundle, "SH_DIR", sh_dir)
        patch.setattr(scripts, "SH_DIR", sh_dir)
        _clear_script_caches()
        try:
            renders = {name: render(name) for name in SCENARIOS}
        finally:
            _clear_script_caches()
    _clear_script_caches()
    return sh_dir, renders


def _nodes(graph: dict[str, Any]) -> set[str]:
    """The names of the node components (K3sServer, K3sAgent, DockerServer, DockerAgent)."""
    node_types = ("Server", "Agent")
    return {_name(u) for u, r in graph["resources"].items() if not r["custom"] and r["type"].endswith(node_types)}


def _changed(before: dict[str, Any], after: dict[str, Any]) -> dict[str, list[str]]:
    """URN -> what changed (inputs, dependencies, options...), for URNs in both graphs."""
    changed: dict[str, list[str]] = {}
    for urn in sorted(set(before["resources"]) & set(after["resources"])):
        a, b = before["resources"][urn], after["resources"][urn]
        parts = [p for p in ("dependencies", "propertyDependencies", "options") if a[p] != b[p]]
        parts += [
            f"input {k}"
            for k in sorted(set(a["inputs"]) | set(b["inputs"]))
            if a["inputs"].get(k) != b["inputs"].get(k)
        ]
        if parts:
            changed[urn] = parts
    return changed


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_a_harmless_script_change_changes_only_the_scripts_steps(harmless: tuple[Path, Renders], name: str) -> None:
    sh_dir, renders = harmless
    run, after = renders[name]
    before = head(name)
    assert set(after["resources"]) == set(before["resources"]), f"{name}: a script change added or removed resources"
    changed = _changed(before, after)
    steps = {u for u in after["resources"] if _is_scripts_step(u) and _is_command(after["resources"][u])}
    others = {u: parts for u, parts in changed.items() if u not in steps}
    assert not others, f"{name}: a harmless change to lib.sh and install_node.sh changes more than -scripts:\n  " + (
        "\n  ".join(f"{u}: {', '.join(p)}" for u, p in others.items())
    )
    new_bundle = bundle.make_bundle(sh_dir)
    for urn in sorted(steps):
        assert {"input create", "input stdin"} <= set(changed.get(urn, [])), f"{urn}: {changed.get(urn)}"
        step = run.by_name(_name(urn)).plain()
        assert step["stdin"] == new_bundle.text, f"{urn}: stdin is not the new bundle"
        assert new_bundle.sha256 in step["create"], f"{urn}: create does not check the new bundle's digest"
        unpacked = bundle.unpack(step["stdin"])
        assert unpacked["lib.sh"].endswith(": # harmless\n") and unpacked["install_node.sh"].endswith(": # harmless\n")
    assert {_name(u) for u in steps} == {f"{node}{SCRIPTS_SUFFIX}" for node in _nodes(before)}, (
        f"{name}: one scripts step per node"
    )


# -- SCRIPTS_GENERATION ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def next_generation() -> dict[str, dict[str, Any]]:
    """Every scenario rendered with SCRIPTS_GENERATION one higher, as a release that bumps it
    in components/release.py would render them (every module that imported it sees it)."""
    for name in SCENARIOS:
        head(name)
    with pytest.MonkeyPatch.context() as patch:
        bumped = release.SCRIPTS_GENERATION + 1
        for module in (release, scripts, bundle):
            patch.setattr(module, "SCRIPTS_GENERATION", bumped)
        _clear_script_caches()
        try:
            renders = {name: render(name)[1] for name in SCENARIOS}
        finally:
            _clear_script_caches()
    _clear_script_caches()
    return renders


def _downstream(graph: dict[str, Any], roots: set[str]) -> set[str]:
    """The resources that wait, directly or not, for one of `roots` (a dependency on a
    component is one on everything under it)."""
    resources = graph["resources"]
    children: dict[str, set[str]] = {}
    for urn, r in resources.items():
        children.setdefault(r["parent"], set()).add(urn)

    def under(urn: str) -> set[str]:
        found, todo = set(), [urn]
        while todo:
            for child in children.get(todo.pop(), ()):
                if child not in found:
                    found.add(child)
                    todo.append(child)
        return found

    reached = set(roots)
    grew = True
    while grew:
        grew = False
        for urn, r in resources.items():
            if urn in reached:
                continue
            deps = set(r["dependencies"]) | {d for ds in r["propertyDependencies"].values() for d in ds}
            if any(d in reached or under(d) & reached for d in deps):
                reached.add(urn)
                grew = True
    return reached - roots


def _installs(graph: dict[str, Any]) -> set[str]:
    return {u for u, r in graph["resources"].items() if _is_command(r) and _name(u).endswith("-install")}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scripts_generation_is_the_one_number_that_reruns_the_installs(
    next_generation: dict[str, dict[str, Any]], name: str
) -> None:
    before, after = head(name), next_generation[name]
    assert set(after["resources"]) == set(before["resources"])
    changed = {u for u, parts in _changed(before, after).items() if any(p.startswith("input") for p in parts)}
    installs = _installs(before)
    unchanged = sorted(installs - changed)
    assert not unchanged, f"{name}: a new SCRIPTS_GENERATION leaves installs as they were: {unchanged}"
    # The servers' -ready and the cluster's: they wait for the installs, and check them again.
    checks = {u for u in _downstream(before, installs) if _name(u).endswith("-ready")}
    assert bool(checks) == bool(installs), f"{name}: readiness checks after the installs: {sorted(checks)}"
    assert checks <= changed, f"{name}: readiness checks that would not run again: {sorted(checks - changed)}"
    steps = {u for u in before["resources"] if _is_scripts_step(u)}
    allowed = installs | steps | _downstream(before, installs)
    stray = sorted(changed - allowed)
    assert not stray, f"{name}: a new SCRIPTS_GENERATION changes what does not follow an install: {stray}"
