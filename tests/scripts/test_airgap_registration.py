"""Airgap (stage_airgap.sh and the airgap path of install_node.sh) and registration.sh, and how
their per-node commands are wired before the install (mocks)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

from components import scripts
from tests.scripts.awkward import awkward_config, settings_for
from tests.scripts.sandbox import IMAGES, Sandbox, airgap_setup, mode, needs_sandbox, stdin


@needs_sandbox
def test_an_airgap_install_runs_only_verified_root_owned_copies(box: Sandbox, tmp_path: Path) -> None:
    """Item 3: staged files are copied to a root-owned place that survives reboots, checked
    against the sums the program computed, and only then run."""
    _, a = airgap_setup(box, tmp_path)
    assert a.node.ssh.user == "ubuntu" and not str(a.staged).startswith("/tmp/k3s-rancher")
    result = box.run(scripts.install_script(a.node, a.settings.k3s, first_server=True), stdin())
    assert result.returncode == 0, result.stderr
    root_copy = f"{scripts.AIRGAP_ROOT}/{a.layout.generation}"
    assert mode(box.path(root_copy)) == 0o700
    assert box.path(f"{root_copy}/k3s").read_text() == "#!/bin/sh\necho k3s\n"
    assert box.path("/usr/local/bin/k3s").read_text() == "#!/bin/sh\necho k3s\n"
    assert mode(box.path("/usr/local/bin/k3s")) == 0o755
    assert box.path(f"/var/lib/rancher/k3s/agent/images/{IMAGES}").read_text() == "tar"
    env = box.records("installer")[-1]["env"]
    assert env["INSTALL_K3S_SKIP_DOWNLOAD"] == "true"
    assert not (box.log / "curl.log").exists()

    # The staged copies are consumed once the root-owned ones are checked: none stay behind,
    # and the root-owned copy serves a re-run.
    assert not a.staged.exists()
    again = box.run(scripts.install_script(a.node, a.settings.k3s, first_server=True), stdin())
    assert again.returncode == 0, again.stderr


@needs_sandbox
def test_tampered_staged_airgap_files_are_never_run(box: Sandbox, tmp_path: Path) -> None:
    """Item 3: anything that changed the staged files between upload and install is caught
    on the root-owned copies, before anything runs as root."""
    _, a = airgap_setup(box, tmp_path)
    (a.staged / "install.sh").write_text("#!/bin/sh\ntouch /etc/owned\n")
    result = box.run(scripts.install_script(a.node, a.settings.k3s, first_server=True), stdin())
    assert result.returncode != 0
    assert "do not match the sha256 sums of the local files; nothing was run" in result.stderr
    assert not box.records("installer") and not box.path("/etc/owned").exists()
    assert not box.path(f"{scripts.AIRGAP_ROOT}/{a.layout.generation}").exists()
    assert not box.path("/usr/local/bin/k3s").exists()


@needs_sandbox
def test_a_replaced_nodes_uninstall_leaves_the_new_generation_alone(box: Sandbox, tmp_path: Path) -> None:
    """Item 3/14: a new binary (same version) is a new generation; the old generation's
    uninstall removes only its own files, so the new install still finds its files."""
    _, old = airgap_setup(box, tmp_path)
    old_install = scripts.install_script(old.node, old.settings.k3s, first_server=True)
    assert box.run(old_install, stdin()).returncode == 0
    _, new = airgap_setup(box, tmp_path, binary="#!/bin/sh\necho k3s rebuilt\n")
    assert new.layout.generation != old.layout.generation
    new_install = scripts.install_script(new.node, new.settings.k3s, first_server=True)
    assert old_install.command != new_install.command  # a changed file re-runs the install

    removed = box.run(scripts.uninstall_script(old.node, old.settings.k3s))
    assert removed.returncode == 0, removed.stderr
    assert not old.staged.exists() and not box.path(f"{scripts.AIRGAP_ROOT}/{old.layout.generation}").exists()
    assert new.staged.is_dir()
    result = box.run(new_install, stdin())
    assert result.returncode == 0, result.stderr
    assert box.path("/usr/local/bin/k3s").read_text() == "#!/bin/sh\necho k3s rebuilt\n"
    assert not new.staged.exists()  # consumed by the install

    removed = box.run(scripts.uninstall_script(new.node, new.settings.k3s))
    assert removed.returncode == 0, removed.stderr
    # What is left of ours is the scripts bundle, which the `-scripts` step's delete removes last.
    assert not new.staged.exists() and sorted(p.name for p in box.path("/var/lib/k3s-rancher").iterdir()) == ["scripts"]
    gone = box.run(scripts.remove_scripts_script(new.node, new.settings.k3s))
    assert gone.returncode == 0, gone.stderr
    assert not box.path("/var/lib/k3s-rancher").exists()


@needs_sandbox
def test_an_update_to_a_new_airgap_generation_prunes_the_old_one(box: Sandbox, tmp_path: Path) -> None:
    _, old = airgap_setup(box, tmp_path)
    assert box.run(scripts.install_script(old.node, old.settings.k3s, first_server=True), stdin()).returncode == 0
    _, new = airgap_setup(box, tmp_path, binary="#!/bin/sh\necho k3s rebuilt\n")
    result = box.run(scripts.install_script(new.node, new.settings.k3s, first_server=True), stdin())
    assert result.returncode == 0, result.stderr
    assert len(box.systemctl("restart")) == 2  # the binary changed: restarted
    assert sorted(p.name for p in box.path(scripts.AIRGAP_ROOT).iterdir()) == [new.layout.generation]
    assert not old.staged.exists() and not new.staged.exists()


@needs_sandbox
def test_what_a_failed_upgrade_or_a_refused_install_staged_is_removed(box: Sandbox, tmp_path: Path) -> None:
    """Issue 23 item 3: every path that stages has one that removes. A generation staged and
    never installed goes with the staging step's delete (as the SSH user); a newer root-owned
    generation left by a failed upgrade goes with the uninstall."""
    _, old = airgap_setup(box, tmp_path)
    assert box.run(scripts.install_script(old.node, old.settings.k3s, first_server=True), stdin()).returncode == 0
    _, new = airgap_setup(box, tmp_path, binary="#!/bin/sh\necho k3s rebuilt\n")
    (box.log / "installer-fails").write_text("")  # the upgrade fails after the copy
    failed = box.run(scripts.install_script(new.node, new.settings.k3s, first_server=True), stdin())
    assert failed.returncode != 0
    assert box.path(f"{scripts.AIRGAP_ROOT}/{new.layout.generation}").is_dir() and not new.staged.exists()
    # A generation staged for an install that never ran (refused, or the node removed first).
    _, never = airgap_setup(box, tmp_path, binary="#!/bin/sh\necho k3s never\n")
    unstage = scripts.unstage_airgap_script(never.node, never.settings.k3s)
    assert not unstage.command.startswith("sudo")  # as the SSH user, like the staging
    home = box.home(never.node.ssh.user)
    done = subprocess.run(["sh", "-c", unstage.effective], cwd=home, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert not never.staged.exists()
    removed = box.run(scripts.uninstall_script(old.node, old.settings.k3s))
    assert removed.returncode == 0, removed.stderr
    assert not box.path(scripts.AIRGAP_ROOT).exists()


def test_the_staging_directory_is_0700_under_the_ssh_users_home(tmp_path: Path) -> None:
    """Item 3: staged as the SSH user (no sudo, no root check), relative to the home where
    sshd starts commands and the SFTP server; refuses a directory someone else planted."""
    s = settings_for(awkward_config("etcd", airgap={"installScript": __file__, "binary": __file__}))
    script = scripts.stage_airgap_script(s.servers[0], s.k3s)
    assert not script.command.startswith("sudo") and "need_root" not in script.body
    home = tmp_path / "home"
    home.mkdir()
    # What the host runs once the entry point has sourced the bundle's files.
    result = subprocess.run(["sh", "-c", script.effective], cwd=home, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    layout = scripts.airgap_layout(s.servers[0], s.k3s)
    assert layout is not None and layout.stage.startswith(".k3s-rancher/airgap/")
    for part in (".k3s-rancher", ".k3s-rancher/airgap", layout.stage):
        assert mode(home / part) == 0o700
    shutil.rmtree(home / layout.stage)
    (home / layout.stage).symlink_to(tmp_path)
    planted = subprocess.run(["sh", "-c", script.effective], cwd=home, capture_output=True, text=True)
    assert planted.returncode != 0 and "is a link or not owned by" in planted.stderr


@needs_sandbox
def test_labels_and_taints_are_in_the_config_before_the_first_registration_only(box: Sandbox) -> None:
    """Item 7: K3s applies --node-label/--node-taint only when a node first registers."""
    s = settings_for(awkward_config())
    agent = s.agents[0]
    result = box.run(scripts.registration_script(agent, s.k3s))
    assert result.returncode == 0, result.stderr
    written = box.path(scripts.REGISTRATION_FILE)
    data = yaml.safe_load(written.read_text())
    assert data == {
        "node-label+": ["node-role.kubernetes.io/worker=true", "tier="],
        "node-taint+": ["gpu:NoExecute", "gpu=true:NoSchedule"],
    }
    assert mode(written) == 0o600
    box.put("/etc/rancher/node/password", "x", 0o600)  # registered since
    changed = settings_for({**awkward_config(), "agents": [{**awkward_config()["agents"][0], "labels": {"new": "x"}}]})
    again = box.run(scripts.registration_script(changed.agents[0], changed.k3s))
    assert again.returncode == 0, again.stderr
    # Registered: K3s would merge the old labels in again at every start, so the file goes;
    # node_meta syncs the change through the API.
    assert not written.exists()


def test_a_label_change_does_not_change_the_install() -> None:
    config = awkward_config()
    s = settings_for(config)
    before = scripts.install_script(s.agents[0], s.k3s, first_server=False)
    config["agents"][0]["labels"] = {"other": "label"}
    config["agents"][0]["taints"] = ["new:NoSchedule"]
    after = settings_for(config)
    assert scripts.install_script(after.agents[0], after.k3s, first_server=False).command == before.command
    assert "worker" not in before.command and "gpu" not in before.command
    assert (
        scripts.registration_script(after.agents[0], after.k3s).command
        != scripts.registration_script(s.agents[0], s.k3s).command
    )


def test_registration_and_airgap_staging_are_wired_before_the_install(tmp_path: Path) -> None:
    """Item 7: a `<node>-registration` command (only for nodes with labels or taints) runs
    before the install; item 3: the staging directory is made (as the SSH user) before the
    copies, which land under the generation's relative path, before the install."""
    from tests.harness import TEST_SSH_KEY, load_stack_config, run_program

    config, secrets = load_stack_config("dev")
    secrets.setdefault("sshPrivateKey", TEST_SSH_KEY)
    config["agents"][1].pop("labels")  # dev-w2: no labels, no taints
    for name in ("install.sh", "k3s"):
        (tmp_path / name).write_text(f"stand-in {name}\n")
    config["k3s"]["airgap"] = {"installScript": str(tmp_path / "install.sh"), "binary": str(tmp_path / "k3s")}
    run = run_program({**config, "rancher": {"enabled": False}}, secrets, stack="dev")

    registration = run.by_name("dev-w1-registration")
    assert run.depends_on("dev-w1-install", "dev-w1-registration")
    assert registration.parent == run.by_name("dev-w1").urn
    assert registration.plain()["addPreviousOutputInEnv"] is False
    assert "node.kubernetes.io/pool=general" in registration.plain()["create"]
    assert registration.options["deleteBeforeReplace"] is True
    assert "dev-w2-registration" not in run.names() and "dev-cp1-registration" not in run.names()
    assert "node.kubernetes.io/pool" not in run.by_name("dev-w1-install").plain()["create"]

    stage = run.by_name("dev-w1-airgap-stage")
    assert not stage.plain()["create"].startswith("sudo")  # as the SSH user: SFTP writes there
    for target in ("install-sh", "k3s"):
        copy = run.by_name(f"dev-w1-airgap-{target}")
        assert run.depends_on(copy.name, "dev-w1-airgap-stage")
        assert run.depends_on("dev-w1-install", copy.name)
        assert copy.plain()["remotePath"].startswith(f"{scripts.AIRGAP_STAGE_PARENT}/")
        assert not copy.plain()["remotePath"].startswith("/")
