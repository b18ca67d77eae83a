# shellcheck shell=sh
# The drift check's read of one host (k3s.driftCheck; components/drift.py reads its output).
# Sent whole in the command text, as there may be no scripts bundle on the host (a wiped or
# reimaged one); read-only; it prints facts only, one `key=value` a line, never a file's
# content, the token or an endpoint.
# Inputs: ROLE (server|agent), API (1 on the init server: list the registered nodes).
# lib.sh: none
if [ "$ROLE" = server ]; then SERVICE=k3s; else SERVICE=k3s-agent; fi
if [ -x /sbin/openrc-run ]; then
  UNIT=/etc/init.d/$SERVICE
  if rc-service "$SERVICE" status >/dev/null 2>&1; then STATE=active; else STATE=inactive; fi
else
  UNIT=/etc/systemd/system/$SERVICE.service
  STATE=$(systemctl is-active "$SERVICE" 2>/dev/null) || true
fi
if [ -e "$UNIT" ]; then echo "unit=yes"; else echo "unit=no"; fi
echo "state=${STATE:-unknown}"
K3S=""
for _bin in /usr/local/bin/k3s /opt/bin/k3s; do
  if [ -x "$_bin" ]; then K3S=$_bin && break; fi
done
# The init server's API read runs beside the rest (the slowest read of the slowest host
# bounds the whole check); each of its lines is one short write, so lines never mix.
if [ "$API" = 1 ] && [ -n "$K3S" ] && [ "$STATE" = active ]; then
  {
    _nodes=$(timeout 5 "$K3S" kubectl --kubeconfig /etc/rancher/k3s/k3s.yaml --request-timeout=4s get nodes \
      -o 'jsonpath={range .items[*]}{.metadata.name}{" "}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' \
      2>/dev/null) && echo "api=yes" || echo "api=no"
    printf "%s\n" "$_nodes" | while read -r _name _ready; do
      [ -z "$_name" ] || echo "node=$_name $_ready"
    done
  } &
fi
if [ -n "$K3S" ]; then
  echo "version=$("$K3S" --version 2>/dev/null | sed -n '1s/^k3s version \(v[^ ]*\).*$/\1/p')"
else
  echo "version="
fi
if [ -d /var/lib/k3s-rancher/scripts/current ]; then echo "bundle=yes"; else echo "bundle=no"; fi
APPLIED=/var/lib/k3s-rancher/applied
if [ -f "$APPLIED" ]; then
  echo "applied=yes"
  while read -r _sum _file; do
    [ -n "$_file" ] || continue
    if [ ! -f "$_file" ]; then
      echo "missing=$_file"
    else
      _now=$(sha256sum "$_file" 2>/dev/null) || _now=""
      [ "${_now%% *}" = "$_sum" ] || echo "differs=$_file"
    fi
  done < "$APPLIED"
else
  echo "applied=no"
fi
wait
echo "end=1"
