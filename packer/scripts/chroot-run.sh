#!/bin/sh
# Run one provisioning step inside a root filesystem through chroot.
# Usage: chroot-run.sh ROOT STAGING STEP
# The first step copies the staging folder into ROOT/tmp/notary-staging.
# The lockdown step removes it again, so nothing from the build stays behind.
set -eu
root=$1
staging=$2
step=$3
echo "notary-step: $step"
if [ ! -d "$root/etc" ]; then
    echo "error: $root is not a root filesystem (no etc folder)" >&2
    exit 1
fi
inside=/tmp/notary-staging
if [ ! -d "$root$inside" ]; then
    mkdir -p "$root$inside"
    cp -a "$staging/." "$root$inside/"
fi
# No build user exists in the local root: the lockdown step gets "-".
chroot "$root" /bin/sh "$inside/scripts/$step.sh" "$inside" -
