# shellcheck shell=sh
# A rolled agent's install `update` (k3s.upgrade): the change it carries is applied by the
# agent's own -upgrade step, in its batch, between a cordon and a rejoin; here nothing runs.
# Runs as the SSH user (no sudo).
# Inputs: NODE_NAME.
: "${NODE_NAME:?}"
log "$NODE_NAME: a change of this install is applied by $NODE_NAME-upgrade, in its k3s.upgrade batch"
