#!/usr/bin/env bash
# Prepare this machine for the "real" tests: a running Docker engine and the
# k3s-rancher-testhost image (a Debian bookworm rootfs with sshd, sudo, python3).
#
# Idempotent: does nothing that is already done. Safe to run concurrently (flock).
# The last line printed on stdout is the image name (k3s-rancher-testhost:<hash>).
#
# Environment:
#   K3SR_CACHE            cache dir (default: $HOME/.cache/k3s-rancher); holds the rootfs tarball
#   K3SR_DOCKERD_LOG      dockerd log file (default: /tmp/k3s-rancher-dockerd.log)
#   K3SR_DOCKER_TIMEOUT   seconds to wait for the daemon to answer (default: 60)
#   K3SR_DEBIAN_MIRROR    debootstrap mirror (default: http://deb.debian.org/debian)
set -euo pipefail

CACHE=${K3SR_CACHE:-$HOME/.cache/k3s-rancher}
DOCKERD_LOG=${K3SR_DOCKERD_LOG:-/tmp/k3s-rancher-dockerd.log}
DOCKER_TIMEOUT=${K3SR_DOCKER_TIMEOUT:-60}
MIRROR=${K3SR_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
IMAGE_REPO=k3s-rancher-testhost

# Packages of the test host image. Changing this list (or the recipe below) changes the tag.
HOST_PACKAGES=(
  openssh-server iproute2 procps sudo
  python3-minimal curl ca-certificates netcat-openbsd
)

# Everything done inside the rootfs after debootstrap; part of the image hash.
read -r -d '' CUSTOMIZE <<'EOF' || true
set -eu
useradd --create-home --shell /bin/bash ubuntu
usermod --password '*' ubuntu
usermod --password '*' root
printf 'ubuntu ALL=(ALL) NOPASSWD:ALL\n' > /etc/sudoers.d/90-ubuntu
chmod 0440 /etc/sudoers.d/90-ubuntu
rm -f /etc/ssh/ssh_host_*
# Unprivileged containers cannot write /proc/self/loginuid.
sed -i 's/^session\s\+required\s\+pam_loginuid.so/session optional pam_loginuid.so/' /etc/pam.d/sshd
cat > /etc/ssh/sshd_config.d/10-k3sr-testhost.conf <<'CONF'
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
UseDNS no
MaxStartups 100
CONF
cat > /usr/local/sbin/k3sr-testhost-init <<'INIT'
#!/bin/sh
# Container entrypoint: host keys are made fresh per container, the test key
# (env K3SR_AUTHORIZED_KEY) is authorised for root and ubuntu, then sshd runs.
set -eu
ssh-keygen -A >/dev/null
mkdir -p /run/sshd
chmod 0755 /run/sshd
if [ -n "${K3SR_AUTHORIZED_KEY:-}" ]; then
  for home in /root /home/ubuntu; do
    owner=root
    [ "$home" = /home/ubuntu ] && owner=ubuntu
    mkdir -p "$home/.ssh"
    printf '%s\n' "$K3SR_AUTHORIZED_KEY" > "$home/.ssh/authorized_keys"
    chmod 0700 "$home/.ssh"
    chmod 0600 "$home/.ssh/authorized_keys"
    chown -R "$owner:$owner" "$home/.ssh"
  done
fi
exec /usr/sbin/sshd -D -e
INIT
chmod 0755 /usr/local/sbin/k3sr-testhost-init
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/*.log
EOF

log() { printf 'setup_docker: %s\n' "$*" >&2; }
die() { printf 'setup_docker: ERROR: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (needs apt-get, dockerd, debootstrap)"

mkdir -p "$CACHE"
exec 9>"$CACHE/setup.lock"
flock -w 900 9 || die "timed out waiting for $CACHE/setup.lock"

# --- packages ------------------------------------------------------------------
missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v docker >/dev/null 2>&1 || missing+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
command -v ssh >/dev/null 2>&1 || missing+=(openssh-client)
command -v ssh-keygen >/dev/null 2>&1 || missing+=(openssh-client)
command -v flock >/dev/null 2>&1 || missing+=(util-linux)
if [ "${#missing[@]}" -gt 0 ]; then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  log "installing: ${missing[*]}"
  # Third-party sources on this machine may be unreachable; apt-get update then
  # exits non-zero although the Debian lists were refreshed.
  apt-get update -qq >&2 || log "apt-get update reported errors (continuing)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >&2 || die "apt-get install ${missing[*]} failed"
fi

# --- docker engine -------------------------------------------------------------
docker_up() { docker info >/dev/null 2>&1; }

wait_docker() {
  local pid=$1 deadline=$((SECONDS + DOCKER_TIMEOUT))
  while [ "$SECONDS" -lt "$deadline" ]; do
    docker_up && return 0
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 1
  done
  return 1
}

stop_our_dockerd() {
  local pid=$1 i
  kill "$pid" 2>/dev/null || return 0
  for i in $(seq 1 30); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 1
  done
  log "dockerd $pid did not stop after ${i}s; sending KILL"
  kill -9 "$pid" 2>/dev/null || true
}

# Candidate dockerd flag sets, best first. A set that worked before is tried first.
FLAG_SETS=(
  ""
  "--iptables=false --ip6tables=false"
  "--storage-driver=vfs --iptables=false --ip6tables=false"
)
FLAGS_FILE="$CACHE/dockerd-flags"
if [ -f "$FLAGS_FILE" ]; then
  known=$(cat "$FLAGS_FILE")
  ordered=("$known")
  for f in "${FLAG_SETS[@]}"; do
    [ "$f" = "$known" ] || ordered+=("$f")
  done
  FLAG_SETS=("${ordered[@]}")
fi

started_pid=""
start_dockerd() {
  local flags=$1
  local -a argv
  read -r -a argv <<<"$flags"
  # containerd: dockerd starts its own when /run/containerd is not served.
  log "starting dockerd ${flags:-(default flags)}; log: $DOCKERD_LOG"
  printf '\n=== %s dockerd %s\n' "$(date -Is)" "$flags" >>"$DOCKERD_LOG"
  setsid nohup dockerd "${argv[@]}" >>"$DOCKERD_LOG" 2>&1 </dev/null &
  started_pid=$!
  echo "$started_pid" >"$CACHE/dockerd.pid"
  if wait_docker "$started_pid"; then
    return 0
  fi
  log "dockerd ${flags:-(default flags)} did not answer within ${DOCKER_TIMEOUT}s; last log lines:"
  tail -n 15 "$DOCKERD_LOG" >&2 || true
  stop_our_dockerd "$started_pid"
  started_pid=""
  return 1
}

# --- image ---------------------------------------------------------------------
HASH=$(printf '%s\n' "$SUITE" "${HOST_PACKAGES[@]}" "$CUSTOMIZE" | sha256sum | cut -c1-12)
IMAGE="$IMAGE_REPO:$HASH"
TARBALL="$CACHE/rootfs-$HASH.tar"

build_rootfs_tarball() {
  [ -s "$TARBALL" ] && return 0
  local dir include
  dir=$(mktemp -d "$CACHE/rootfs-$HASH.XXXXXX")
  include=$(IFS=,; printf '%s' "${HOST_PACKAGES[*]}")
  log "debootstrap $SUITE into $dir (packages: $include)"
  if ! debootstrap --variant=minbase --include="$include" "$SUITE" "$dir" "$MIRROR" \
      >"$CACHE/debootstrap.log" 2>&1; then
    tail -n 20 "$CACHE/debootstrap.log" >&2 || true
    rm -rf "$dir"
    die "debootstrap failed (full log: $CACHE/debootstrap.log)"
  fi
  printf '%s\n' "$CUSTOMIZE" | chroot "$dir" /bin/sh -s >&2 || { rm -rf "$dir"; die "rootfs customisation failed"; }
  tar -C "$dir" --numeric-owner -cf "$TARBALL.tmp" . || { rm -rf "$dir"; die "tar of rootfs failed"; }
  mv "$TARBALL.tmp" "$TARBALL"
  rm -rf "$dir"
}

import_image() {
  docker image inspect "$IMAGE" >/dev/null 2>&1 && return 0
  log "importing $TARBALL as $IMAGE"
  docker import \
    --change 'CMD ["/usr/local/sbin/k3sr-testhost-init"]' \
    --change 'EXPOSE 22' \
    --message "k3s-rancher test host ($SUITE: ${HOST_PACKAGES[*]})" \
    "$TARBALL" "$IMAGE" >/dev/null
}

# Prove the engine can do what the tests need: a user network, a container on
# it, and a port published on 127.0.0.1.
smoke_test() {
  local net="k3sr-smoke-$$" rc=0
  docker network create "$net" >/dev/null 2>&1 || return 1
  docker run --rm --network "$net" -p 127.0.0.1::22 "$IMAGE" /bin/true >/dev/null 2>&1 || rc=1
  docker network rm "$net" >/dev/null 2>&1 || true
  return "$rc"
}

build_rootfs_tarball

if docker_up; then
  import_image || die "docker import of $TARBALL failed"
else
  ok=""
  for flags in "${FLAG_SETS[@]}"; do
    start_dockerd "$flags" || continue
    if import_image && smoke_test; then
      printf '%s\n' "$flags" >"$FLAGS_FILE"
      ok=1
      break
    fi
    log "dockerd ${flags:-(default flags)} is up but cannot run a test container; trying next settings"
    docker run --rm "$IMAGE" /bin/true 2>&1 | tail -n 5 >&2 || true
    stop_our_dockerd "$started_pid"
  done
  [ -n "$ok" ] || die "could not start a working Docker engine (tried: default, --iptables=false, --storage-driver=vfs); see $DOCKERD_LOG"
  log "dockerd running (pid $started_pid) with: ${flags:-(default flags)}"
fi

printf '%s\n' "$IMAGE"
