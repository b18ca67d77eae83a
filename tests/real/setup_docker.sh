#!/usr/bin/env bash
# Prepare this machine for the "real" tests: a running Docker engine and the
# k3s-rancher-testhost image: a Debian bookworm rootfs that boots systemd as PID 1, with
# sshd as a systemd service, sudo, python3 (see tests/real/README.md, "Test hosts").
#
# Idempotent: does nothing that is already done. Safe to run concurrently (flock).
# Runs as root, or as a user with passwordless sudo (GitHub-hosted runners): apt-get,
# debootstrap, chroot and dockerd then go through `sudo -n`; docker itself must then work
# for the user (the runner's user is in the docker group).
# The last line printed on stdout is the image name (k3s-rancher-testhost:<hash>).
#
# Environment:
#   K3SR_CACHE            cache dir (default: $HOME/.cache/k3s-rancher); holds the rootfs tarball
#   K3SR_DOCKERD_LOG      dockerd log file (default: /tmp/k3s-rancher-dockerd.log)
#   K3SR_DOCKER_TIMEOUT   seconds to wait for the daemon to answer (default: 60)
#   K3SR_DEBIAN_MIRROR    debootstrap mirror (default: the Debian mirror this machine's apt
#                         uses, else http://deb.debian.org/debian, e.g. on Ubuntu)
set -euo pipefail

CACHE=${K3SR_CACHE:-$HOME/.cache/k3s-rancher}
DOCKERD_LOG=${K3SR_DOCKERD_LOG:-/tmp/k3s-rancher-dockerd.log}
DOCKER_TIMEOUT=${K3SR_DOCKER_TIMEOUT:-60}
# The mirror this machine's own apt sources name for Debian (deb822 or one-line format).
apt_mirror() {
  { grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}'
    grep -hs '^deb ' /etc/apt/sources.list | awk '{print $2}'; } | grep -v -- '-security' | grep '/debian/*$' | head -n 1
}
# Not a Debian machine (an Ubuntu runner): the public Debian mirror.
MIRROR=${K3SR_DEBIAN_MIRROR:-$(apt_mirror || true)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
IMAGE_REPO=k3s-rancher-testhost
# debootstrap checks the Release signature with this keyring (Ubuntu ships it in
# debian-archive-keyring; Debian has it already).
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

# Packages debootstrap puts in the rootfs. The cached tarball and the base image are
# keyed by a hash of this list; the test host image by a hash of this list and the recipe.
# systemd/systemd-sysv/dbus: systemd is PID 1 (as on a real host: the K3s installer needs
# it); kmod: the K3s unit's `modprobe` pre-start lines find a real modprobe.
HOST_PACKAGES=(
  systemd systemd-sysv dbus kmod
  openssh-server iproute2 procps sudo
  python3 curl ca-certificates netcat-openbsd
)

# Run (sh -c) in a container of the base image, which is then committed as the test host
# image: changing it rebuilds only that image (seconds), not the rootfs (debootstrap).
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
HostKey /etc/ssh/ssh_host_ed25519_key
HostKey /etc/ssh/ssh_host_ecdsa_key
CONF
# Empty: systemd makes a machine id per container at its first boot.
: > /etc/machine-id
rm -f /var/lib/dbus/machine-id
# No unit needs masking: with the flags of tests/real/hosts.py the boot reaches `running`
# (units that need a real machine skip themselves on ConditionVirtualization/ReadWrite).
# First boot (and every boot): host keys for this container, the test key authorised.
cat > /usr/local/sbin/testhost-init <<'INIT'
#!/bin/sh
# Host keys are made once per container; RSA is left out (1.5 s of CPU per host).
# The test key comes from the container's environment (docker run --env
# K3SR_AUTHORIZED_KEY), which systemd does not pass to services: read it from PID 1.
set -eu
for type in ed25519 ecdsa; do
  [ -s "/etc/ssh/ssh_host_${type}_key" ] ||
    ssh-keygen -q -t "$type" -N '' -C "root@$(cat /proc/sys/kernel/hostname)" -f "/etc/ssh/ssh_host_${type}_key"
done
key=$(tr '\0' '\n' < /proc/1/environ | sed -n 's/^K3SR_AUTHORIZED_KEY=//p')
if [ -n "$key" ]; then
  for home in /root /home/ubuntu; do
    owner=root
    [ "$home" = /home/ubuntu ] && owner=ubuntu
    mkdir -p "$home/.ssh"
    printf '%s\n' "$key" > "$home/.ssh/authorized_keys"
    chmod 0700 "$home/.ssh"
    chmod 0600 "$home/.ssh/authorized_keys"
    chown -R "$owner:$owner" "$home/.ssh"
  done
fi
INIT
chmod 0755 /usr/local/sbin/testhost-init
# Not named k3s*: K3s's killall and uninstall scripts treat every
# /etc/systemd/system/k3s*.service as a K3s service ("Additional k3s services installed").
cat > /etc/systemd/system/testhost-init.service <<'UNIT'
[Unit]
Description=k3s-rancher test host: SSH host keys and the test key
Before=ssh.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/testhost-init

[Install]
WantedBy=multi-user.target
UNIT
mkdir -p /etc/systemd/system/ssh.service.d
cat > /etc/systemd/system/ssh.service.d/10-k3sr-testhost.conf <<'UNIT'
[Unit]
Wants=testhost-init.service
After=testhost-init.service
UNIT
systemctl enable testhost-init.service ssh.service
# PID 1 wrapper: on a cgroup v2 engine (GitHub's ubuntu runners) Docker mounts the
# container's own cgroup namespace read-only; systemd must create its cgroups there, and
# CAP_SYS_ADMIN allows the remount. On cgroup v1 (this machine) the bind-mounted
# hierarchy is used as it is. Then systemd replaces this script as PID 1.
cat > /usr/local/sbin/k3sr-boot <<'BOOT'
#!/bin/sh
if [ "$(stat -f -c %T /sys/fs/cgroup 2>/dev/null)" = cgroup2fs ] && ! touch /sys/fs/cgroup/.k3sr-rw 2>/dev/null; then
  mount -o remount,rw /sys/fs/cgroup || echo "k3sr-boot: cannot remount /sys/fs/cgroup rw" >&2
fi
rm -f /sys/fs/cgroup/.k3sr-rw 2>/dev/null
exec /lib/systemd/systemd "$@"
BOOT
chmod 0755 /usr/local/sbin/k3sr-boot
EOF

log() { printf 'setup_docker: %s\n' "$*" >&2; }
die() { printf 'setup_docker: ERROR: %s\n' "$*" >&2; exit 1; }

# Root, or passwordless sudo for the steps that need root.
if [ "$(id -u)" -eq 0 ]; then
  as_root() { "$@"; }
elif sudo -n true 2>/dev/null; then
  as_root() { sudo -n "$@"; }
else
  die "must run as root or with passwordless sudo (needs apt-get, debootstrap, chroot)"
fi

mkdir -p "$CACHE"
exec 9>"$CACHE/setup.lock"
flock -w 900 9 || die "timed out waiting for $CACHE/setup.lock"

# --- packages ------------------------------------------------------------------
missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v docker >/dev/null 2>&1 || missing+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
[ -s "$KEYRING" ] || missing+=(debian-archive-keyring)
command -v ssh >/dev/null 2>&1 || missing+=(openssh-client)
command -v ssh-keygen >/dev/null 2>&1 || missing+=(openssh-client)
command -v flock >/dev/null 2>&1 || missing+=(util-linux)
if [ "${#missing[@]}" -gt 0 ]; then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  log "installing: ${missing[*]}"
  # Third-party sources on this machine may be unreachable; apt-get update then
  # exits non-zero although the Debian lists were refreshed.
  as_root apt-get update -qq >&2 || log "apt-get update reported errors (continuing)"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
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
  local from
  from=$(wc -l <"$DOCKERD_LOG")
  # 9>&-: the daemon must not inherit (and so hold forever) the setup lock. env -u TMPDIR:
  # nor the caller's TMPDIR (a test run's private one, removed when the run ends): runc
  # writes each `docker exec`'s process file there, and every later exec would fail.
  setsid nohup env -u TMPDIR dockerd "${argv[@]}" >>"$DOCKERD_LOG" 2>&1 </dev/null 9>&- &
  started_pid=$!
  echo "$started_pid" >"$CACHE/dockerd.pid"
  if wait_docker "$started_pid"; then
    return 0
  fi
  if kill -0 "$started_pid" 2>/dev/null; then
    log "dockerd ${flags:-(default flags)} did not answer within ${DOCKER_TIMEOUT}s; its log:"
  else
    log "dockerd ${flags:-(default flags)} exited; its log:"
  fi
  tail -n "+$((from + 1))" "$DOCKERD_LOG" | tail -n 15 >&2 || true
  stop_our_dockerd "$started_pid"
  started_pid=""
  return 1
}

# --- image ---------------------------------------------------------------------
PKG_HASH=$(printf '%s\n' "$SUITE" "${HOST_PACKAGES[@]}" | sha256sum | cut -c1-12)
HASH=$(printf '%s\n' "$PKG_HASH" "$CUSTOMIZE" | sha256sum | cut -c1-12)
TARBALL="$CACHE/rootfs-$PKG_HASH.tar"
BASE_IMAGE="$IMAGE_REPO-base:$PKG_HASH"
IMAGE="$IMAGE_REPO:$HASH"

build_rootfs_tarball() {
  [ -s "$TARBALL" ] && return 0
  local dir include
  dir=$(mktemp -d "$CACHE/rootfs-$PKG_HASH.XXXXXX")
  include=$(IFS=,; printf '%s' "${HOST_PACKAGES[*]}")
  log "debootstrap $SUITE from $MIRROR into $dir (packages: $include)"
  if ! as_root debootstrap --variant=minbase --keyring="$KEYRING" --include="$include" \
      "$SUITE" "$dir" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1; then
    tail -n 20 "$CACHE/debootstrap.log" >&2 || true
    as_root rm -rf "$dir"
    die "debootstrap failed (full log: $CACHE/debootstrap.log)"
  fi
  as_root chroot "$dir" apt-get clean >&2 || true
  # shellcheck disable=SC2016 # expanded by the inner sh, as root
  as_root sh -c 'rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin "$1"/var/log/*.log' sh "$dir"
  # The tarball is written by this user (root's tar reads the tree, stdout lands here).
  as_root tar -C "$dir" --numeric-owner -cf - . >"$TARBALL.tmp" || { as_root rm -rf "$dir"; die "tar of rootfs failed"; }
  mv "$TARBALL.tmp" "$TARBALL"
  as_root rm -rf "$dir"
  # Tarballs of other package lists, once a week old: other checkouts may still use them.
  find "$CACHE" -maxdepth 1 -name 'rootfs-*.tar' ! -name "rootfs-$PKG_HASH.tar" -mtime +7 -delete
}

build_image() {
  docker image inspect "$IMAGE" >/dev/null 2>&1 && return 0
  if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    # Only now: a machine that has the base image never runs debootstrap again.
    build_rootfs_tarball
    log "importing $TARBALL as $BASE_IMAGE"
    docker import --message "k3s-rancher test host rootfs ($SUITE: ${HOST_PACKAGES[*]})" \
      "$TARBALL" "$BASE_IMAGE" >/dev/null || return 1
  fi
  log "building $IMAGE from $BASE_IMAGE"
  local ctr="k3sr-build-$HASH-$$"
  if ! docker run --name "$ctr" --network none "$BASE_IMAGE" /bin/sh -c "$CUSTOMIZE" >&2; then
    docker rm -f "$ctr" >/dev/null 2>&1 || true
    return 1
  fi
  # No STOPSIGNAL here: images built on this one (tests/real/standin_image) run other
  # programs as PID 1; tests/real/hosts.py passes --stop-signal SIGRTMIN+3 itself.
  docker commit \
    --change 'CMD ["/usr/local/sbin/k3sr-boot"]' \
    --change 'ENV container=docker' \
    --change 'EXPOSE 22' \
    --change "LABEL k3s-rancher.testhost.packages=\"${HOST_PACKAGES[*]}\"" \
    --change 'LABEL k3s-rancher.testhost.init=systemd' \
    "$ctr" "$IMAGE" >/dev/null || { docker rm -f "$ctr" >/dev/null 2>&1; return 1; }
  docker rm "$ctr" >/dev/null
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

# A dockerd this script started before env -u TMPDIR above may hold a TMPDIR that is gone
# ("OCI runtime exec failed: open <TMPDIR>/runc-process...: no such file or directory"):
# stop it, so that it is started again below.
if [ -f "$CACHE/dockerd.pid" ]; then
  old_pid=$(cat "$CACHE/dockerd.pid")
  old_tmp=""
  if [ "$(cat "/proc/$old_pid/comm" 2>/dev/null)" = dockerd ]; then # not a reused pid
    old_tmp=$(tr '\0' '\n' <"/proc/$old_pid/environ" 2>/dev/null | sed -n 's/^TMPDIR=//p' || true)
  fi
  if [ -n "$old_tmp" ] && [ ! -d "$old_tmp" ]; then
    log "dockerd $old_pid runs with a TMPDIR that no longer exists ($old_tmp): restarting it"
    stop_our_dockerd "$old_pid"
  fi
fi

if docker_up; then
  build_image || die "could not build $IMAGE"
elif [ "$(id -u)" -ne 0 ]; then
  die "Docker does not answer for $(id -un); start it (e.g. sudo systemctl start docker) and add $(id -un) to the docker group"
else
  ok=""
  for flags in "${FLAG_SETS[@]}"; do
    start_dockerd "$flags" || continue
    if build_image && smoke_test; then
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
