#!/bin/sh
# Install nitro-cli, the allocator and the packages the units need.
# Usage: nitro.sh STAGING BUILD_USER. Runs as root inside the image.
# The packages exist for Amazon Linux only. On another system this step logs
# that and succeeds, so the image tests can still check a Debian root.
set -eu
. /etc/os-release
if [ "${ID:-}" != amzn ]; then
    echo "nitro-cli and the allocator are packaged for Amazon Linux only: skipped on ${ID:-unknown} ${VERSION_ID:-}"
    exit 0
fi
dnf install -y aws-nitro-enclaves-cli aws-nitro-enclaves-cli-devel socat nftables openssl python3
systemctl enable nitro-enclaves-allocator.service
