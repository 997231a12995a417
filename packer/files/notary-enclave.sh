#!/bin/sh
# Run or stop the notary enclave described by a nitro-cli config file.
# Usage: notary-enclave run|stop CONFIG
# "run" starts the enclave, then stays in the foreground while it runs and
# exits 1 when it is gone, so that systemd restarts the service.
set -eu
action=$1
config=$2
field() {
    python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$config" "$1"
}
name=$(field enclave_name)
state() {
    nitro-cli describe-enclaves | python3 -c '
import json, sys
name = sys.argv[1]
states = [e["State"] for e in json.load(sys.stdin) if e.get("EnclaveName") == name]
print(states[0] if states else "GONE")' "$name"
}
case "$action" in
run)
    if [ "$(field debug_mode)" != False ]; then
        echo "error: $config sets debug_mode, and a debug enclave attests with zero PCRs: set debug_mode false" >&2
        exit 1
    fi
    if [ "$(state)" != GONE ]; then
        nitro-cli terminate-enclave --enclave-name "$name" || true
    fi
    nitro-cli run-enclave --config "$config"
    while [ "$(state)" = RUNNING ]; do
        sleep 10
    done
    echo "error: enclave $name is no longer running" >&2
    exit 1
    ;;
stop)
    if [ "$(state)" != GONE ]; then
        nitro-cli terminate-enclave --enclave-name "$name"
    fi
    ;;
*)
    echo "usage: notary-enclave run|stop CONFIG" >&2
    exit 2
    ;;
esac
