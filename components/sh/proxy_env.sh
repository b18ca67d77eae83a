# shellcheck shell=sh
# k3s.proxy for K3s and containerd: the proxy variables in an environment file of our own, which
# systemd reads as written, never through the installer's env file. Sourced by install_node.sh.
# Needs: HTTP_PROXY_URL, HTTPS_PROXY_URL, NO_PROXY_LIST (inputs, only with k3s.proxy),
# PROXY_CREDENTIALS (stdin), SERVICE and INIT (choose_service), ENV_FILE (the installer's env
# file), PROXY_ENV_FILE (consts.sh); proxy_paths called once SERVICE is known.
# lib.sh: die put_file remove_managed
#
# Why not the installer's env file: install.sh create_env_file writes it as
# `sh -c export | while read x v; do echo $v; done`: `read` without -r drops backslashes and
# the unquoted echo squeezes runs of blanks, so a value with either arrives changed (which
# shell /bin/sh is decides the rest: dash quotes a ' as '"'"', bash as sh escapes \ $ " `
# inside "..."). Ours is written for systemd's EnvironmentFile= rules and read by it alone.
#
# Why a drop-in with EnvironmentFile= rather than Environment= lines: systemd.exec says that
# variables from EnvironmentFile= override those of Environment=, and that of several files
# the later one wins; the installer's unit names its env file, and a drop-in's directives come
# after the unit's own. So our file, named in the drop-in, is read last and its values are
# the ones K3s gets, whatever the installer's file holds (its copies are removed anyway, see
# drop_installer_proxy). Environment= would also expand % specifiers (%40 in a password).
# OpenRC has no drop-ins: its init script sources the installer's env file as shell code
# (`set -o allexport; . <env file>`, install.sh create_openrc_service_file), so there our
# lines, shell-quoted, take the place of the installer's.
set -eu

# proxy_paths: PROXY_DROP_IN, our systemd drop-in for SERVICE.
proxy_paths() { PROXY_DROP_IN=/etc/systemd/system/$SERVICE.service.d/50-k3s-rancher-proxy.conf; }

# check_proxy_credentials: user:password as a URL's userinfo, or stop. Go's URL parser, which
# K3s and containerd read the proxy variables with, takes only letters, digits,
# - . _ ~ ! $ & ' ( ) * + , ; = : and %XX there (net/url url.go validUserinfo); anything else
# makes it refuse the whole proxy URL. @ is refused too: other clients split at the first @.
check_proxy_credentials() {
  case $PROXY_CREDENTIALS in
    *[!A-Za-z0-9._~!\$\&\'\(\)*+,\;=:%-]* | *%[!0-9A-Fa-f]* | *%?[!0-9A-Fa-f]* | *% | *%?)
      die "the proxyCredentials secret must be user:password percent-encoded as in a URL: letters, digits and - . _ ~ ! \$ & ' ( ) * + , ; = stay, every other character is %XX (a space %20, @ %40, / %2F, ? %3F, # %23, a backslash %5C, a double quote %22, % itself %25)"
      ;;
  esac
}

# with_credentials URL: URL with the credentials after its scheme (URL as it is without them).
with_credentials() {
  if [ -n "$1" ] && [ -n "$PROXY_CREDENTIALS" ]; then
    printf "%s://%s@%s\n" "${1%%://*}" "$PROXY_CREDENTIALS" "${1#*://}"
  else
    printf "%s\n" "$1"
  fi
}

# systemd_quoted VALUE: VALUE in double quotes as systemd's EnvironmentFile= reads them
# (src/basic/env-file.c: inside "...", a backslash before " \ ` $ stands for that character;
# nothing is expanded). Values are single lines.
systemd_quoted() {
  # shellcheck disable=SC2016 # the characters themselves
  printf '"%s"\n' "$(printf '%s\n' "$1" | sed 's/[\\"`$]/\\&/g')"
}

# shell_quoted VALUE: VALUE in single quotes for a shell (' as '\'').
shell_quoted() { printf "'%s'\n" "$(printf '%s\n' "$1" | sed "s/'/'\\\\''/g")"; }

# proxy_lines QUOTER: NAME=value lines for K3s and containerd, each value through QUOTER; the
# lower-case names too (curl and wget read those). printf and the quoters' sed get the values
# on stdin, never as arguments.
proxy_lines() {
  _http=$(with_credentials "${HTTP_PROXY_URL:-}") _https=$(with_credentials "${HTTPS_PROXY_URL:-}")
  if [ -n "$_http" ]; then
    printf "HTTP_PROXY=%s\nhttp_proxy=%s\n" "$("$1" "$_http")" "$("$1" "$_http")"
  fi
  if [ -n "$_https" ]; then
    printf "HTTPS_PROXY=%s\nhttps_proxy=%s\n" "$("$1" "$_https")" "$("$1" "$_https")"
  fi
  printf "NO_PROXY=%s\nno_proxy=%s\n" "$("$1" "${NO_PROXY_LIST:-}")" "$("$1" "${NO_PROXY_LIST:-}")"
}

proxy_configured() { [ -n "${HTTP_PROXY_URL:-}${HTTPS_PROXY_URL:-}" ]; }

# write_proxy_files: with k3s.proxy on systemd, our 0600 env file and the drop-in that names
# it (put_file sets CHANGED when either changes: K3s restarts); without, both go.
write_proxy_files() {
  if proxy_configured && [ "$INIT" = systemd ]; then
    put_file 0600 "$PROXY_ENV_FILE" "$MANAGED_MARKER: k3s.proxy for $SERVICE (systemd EnvironmentFile= syntax)
$(proxy_lines systemd_quoted)"
    put_file 0644 "$PROXY_DROP_IN" "$MANAGED_MARKER: k3s.proxy for $SERVICE
[Service]
EnvironmentFile=$PROXY_ENV_FILE"
  else
    remove_managed "$PROXY_ENV_FILE"
    remove_managed "$PROXY_DROP_IN"
    rmdir "${PROXY_DROP_IN%/*}" 2>/dev/null || true
  fi
}

# drop_installer_proxy: after the installer ran with the proxy in its environment (it needs it
# for its downloads), the proxy lines it copied into its env file, changed, are removed; on
# OpenRC ours take their place. Not counted as a change: the installer rewrites that file at
# every run, and the restart is decided on what it holds after this.
drop_installer_proxy() {
  proxy_configured && [ -f "$ENV_FILE" ] || return 0
  _kept=$(grep -viE '^(no|http|https)_proxy=' "$ENV_FILE" || true)
  _tmp=$(mktemp "$ENV_FILE.XXXXXX")
  chmod 0600 "$_tmp"
  {
    if [ -n "$_kept" ]; then printf "%s\n" "$_kept"; fi
    if [ "$INIT" = openrc ]; then proxy_lines shell_quoted; fi
  } > "$_tmp"
  mv -f "$_tmp" "$ENV_FILE"
}
