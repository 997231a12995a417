#!/bin/sh
# Run one provisioning step on the build instance over Packer's SSH session.
# Usage: remote-run.sh STEP, with REMOTE_PROVISION, STAGING_DIR, PYTHON and
# SSH_HOST, SSH_PORT, SSH_USER, SSH_PRIVATE_KEY (Packer's temporary key) in
# the environment. When the template only registers an AMI record
# (REMOTE_PROVISION=0, communicator none) every step is skipped.
set -eu
step=$1
if [ "${REMOTE_PROVISION:-1}" != 1 ]; then
    echo "notary-step: $step skipped: no communicator, registration only"
    exit 0
fi
echo "notary-step: $step"
key=$(mktemp)
trap 'rm -f "$key"' EXIT
chmod 600 "$key"
printf '%s\n' "$SSH_PRIVATE_KEY" >"$key"
options="-i $key -p $SSH_PORT -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes"
target="$SSH_USER@$SSH_HOST"
inside=/tmp/notary-staging
here=$(cd "$(dirname "$0")" && pwd)
case "$step" in
upload)
    # shellcheck disable=SC2086
    tar -C "$STAGING_DIR" -cf - . |
        ssh $options "$target" "rm -rf $inside && mkdir -m 0700 $inside && tar -xf - -C $inside"
    ;;
testinfra)
    # The lockdown checks run in the local bake only: here lockdown comes
    # after this step, because it removes the SSH access the checks use.
    cd "$here/../.."
    # testinfra's ssh backend uses the OpenSSH client, as the steps above do.
    "$PYTHON" -m pytest tests/image -q -p no:cacheprovider -m "not lockdown" \
        --hosts="ssh://$target:$SSH_PORT" --ssh-identity-file="$key" --sudo \
        --expected-manifest="$STAGING_DIR/etc/release.json" \
        --ssh-extra-args="-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"
    ;;
*)
    # shellcheck disable=SC2086
    ssh $options "$target" "sudo /bin/sh $inside/scripts/$step.sh $inside $SSH_USER"
    ;;
esac
