# shellcheck shell=sh
# A node's drain of itself, through the Eviction API, with the node's own credentials (which
# may list the pods bound to it, with the spec.nodeName field selector only, and evict them;
# not read their DaemonSets, so kubectl drain cannot run with them). What it moves is what
# lib.sh drain_node (kubectl drain --ignore-daemonsets --delete-emptydir-data --force) moves:
# every pod but DaemonSet pods and static (mirror) pods. An eviction a PodDisruptionBudget
# refuses (429) is asked again every 5 s until the deadline, as kubectl drain does.
# Needs: NODE_NAME, kc with the node's kubeconfig (KC_KUBECONFIG).
# lib.sh: log kc deadline
set -eu

# own_pods: "namespace|name|deleting" of each pod to move off this node, one a line.
own_pods() {
  _list=$(kc get pods --all-namespaces --field-selector "spec.nodeName=$NODE_NAME" -o 'jsonpath={range .items[*]}{.metadata.namespace}{"|"}{.metadata.name}{"|"}{.metadata.deletionTimestamp}{"|"}{.metadata.ownerReferences[?(@.controller==true)].kind}{"|"}{.metadata.annotations.kubernetes\.io/config\.mirror}{"\n"}{end}') || return 1
  printf '%s\n' "$_list" | awk -F'|' 'NF >= 2 && $4 != "DaemonSet" && $5 == "" { print $1 "|" $2 "|" $3 }'
}

# evict NAMESPACE POD: one eviction; kubectl's refusal (a budget's 429) goes to the log and
# into REFUSED.
evict() {
  _answer=$(printf '{"apiVersion":"policy/v1","kind":"Eviction","metadata":{"name":"%s","namespace":"%s"}}' "$2" "$1" \
    | kc create --raw "/api/v1/namespaces/$1/pods/$2/eviction" -f - 2>&1) && return 0
  case $_answer in
    *NotFound*) return 0 ;;
  esac
  REFUSED="$1/$2: $_answer"
  log "eviction of $1/$2 refused: $_answer"
}

# drain_own_pods SECONDS: evict, then wait until none is left; 1 when some are still there at
# the deadline, printing their names and the last refusal.
drain_own_pods() {
  _end=$(deadline "$1")
  REFUSED=""
  while :; do
    _pods=$(own_pods) || { echo "(its pod list could not be read: see above)"; return 1; }
    [ -n "$_pods" ] || { log "node $NODE_NAME drained"; return 0; }
    _late=""
    [ "$(date +%s)" -lt "$_end" ] || _late=1
    _names=""
    for _pod in $_pods; do
      _ns=${_pod%%|*} _rest=${_pod#*|}
      _names="$_names $_ns/${_rest%%|*}"
      # Before the deadline, a pod not yet terminating is asked to go (a terminating one is
      # left to finish).
      [ -n "$_late" ] || [ -n "${_rest#*|}" ] || evict "$_ns" "${_rest%%|*}"
    done
    if [ -n "$_late" ]; then
      printf '%s\n' "${_names# }${REFUSED:+ (last refusal: $REFUSED)}"
      return 1
    fi
    sleep 5
  done
}
