#!/bin/sh
# Start the notary inside the enclave, reachable over vsock.
#
# An enclave has no network device except vsock, and its loopback interface
# starts down. The parent instance forwards TCP to vsock port VSOCK_PORT;
# socat here forwards each vsock connection to the notary on loopback.
set -eu

VSOCK_PORT="${VSOCK_PORT:-7047}"
NOTARY_PORT="${NOTARY_PORT:-7047}"

ip link set dev lo up

# fork: one child per connection; the notary handles many sessions at once.
socat "VSOCK-LISTEN:${VSOCK_PORT},fork,reuseaddr" "TCP:127.0.0.1:${NOTARY_PORT}" &

# The config file names no signing key, so the notary generates its key at
# start, inside the enclave; the key never leaves enclave memory.
exec notary-server --config /root/.notary/config.yaml
