#!/usr/bin/env bash
# Install etcd for test tier 3 from the distribution (Debian/Ubuntu package etcd-server),
# once. Idempotent: does nothing when an etcd binary is already on PATH. The package's own
# etcd.service is stopped and disabled when this script installed it: the tests run their
# own etcd inside a private network namespace, and a host-wide etcd on 127.0.0.1:2379 is
# not wanted on the test machine.
# The last line of stdout is the path of the etcd binary.
set -euo pipefail

log() { printf '[install-etcd] %s\n' "$*" >&2; }

if path="$(command -v etcd)"; then
  log "etcd is installed: $path ($("$path" --version 2>/dev/null | head -1))"
  printf '%s\n' "$path"
  exit 0
fi
command -v apt-get >/dev/null 2>&1 || { log "ERROR: no etcd on PATH and no apt-get to install etcd-server"; exit 1; }
# As a non-root user (GitHub's runners) through passwordless sudo.
sudo=()
if ((EUID != 0)); then
  command -v sudo >/dev/null 2>&1 || { log "ERROR: installing etcd-server needs root or sudo"; exit 1; }
  sudo=(sudo -n)
fi

export DEBIAN_FRONTEND=noninteractive
# Bounded: a mirror that hangs must not hang the test run.
if ! apt-cache policy etcd-server 2>/dev/null | grep -q 'Candidate: [0-9]'; then
  log "apt-get update (etcd-server is not in the package lists yet)"
  timeout 300 "${sudo[@]}" apt-get update -qq >&2
fi
log "apt-get install etcd-server"
timeout 600 "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends etcd-server >&2
if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
  "${sudo[@]}" systemctl disable --now etcd.service >&2 2>/dev/null || true
fi
path="$(command -v etcd)" || { log "ERROR: etcd-server installed but no etcd on PATH"; exit 1; }
log "installed $path ($("$path" --version 2>/dev/null | head -1))"
printf '%s\n' "$path"
