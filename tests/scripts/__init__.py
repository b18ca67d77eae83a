"""The shell scripts (components/sh/*.sh and their rendering in components/scripts.py).

Static checks (test_static_checks.py): every file and every rendered command passes
shellcheck, `bash -n` and `dash -n` with awkward values, and those values stay data.

Behaviour (the other test_*.py, one per script or concern): rendered commands run for real in
a throwaway sandbox (sandbox.py), as sshd would run them (`sh -c COMMAND`, through a `sudo`
stand-in that insists on -n and resets PATH like RHEL's secure_path) inside
`unshare --mount --map-root-user`, with overlays on /etc, /usr/local and /opt and a scratch
/var/lib, so the scripts write their real paths without touching this machine. STAND-INs
(standins.py: curl, the K3s installer, the k3s binary with kubectl, systemctl, journalctl,
getent, getenforce) record what they are given and imitate the real behaviour the scripts
depend on; each notes the real source it imitates. Skipped where user namespaces or overlayfs
are not available.

Shared: awkward.py (the config with awkward values and every script rendered from it),
conftest.py (fixtures).
"""
