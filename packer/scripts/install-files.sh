#!/bin/sh
# Install the release into the image: the EIF (its sha256 checked against the
# release manifest), the rendered configs, the health service and the units.
# Usage: install-files.sh STAGING BUILD_USER. Runs as root inside the image.
set -eu
staging=$1
manifest_sha256() {
    python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["eif_sha256"])' "$1"
}
expected=$(manifest_sha256 "$staging/etc/release.json")
actual=$(sha256sum "$staging/enclave.eif" | cut -d' ' -f1)
if [ "$actual" != "$expected" ]; then
    echo "error: EIF sha256 $actual does not match the release manifest's eif_sha256 $expected: rebuild the manifest from this EIF" >&2
    exit 1
fi

# The health service's user: a system user without a login shell, in the
# group that may use /dev/nitro_enclaves.
getent group ne >/dev/null || groupadd --system ne
if ! getent passwd notary-health >/dev/null; then
    useradd --system --user-group --groups ne --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin notary-health
fi

install -d -m 0755 -o root -g root /opt/notary /opt/notary/lib /opt/notary/bin \
    /etc/notary /etc/nitro_enclaves /etc/systemd/system
install -m 0644 -o root -g root "$staging/enclave.eif" /opt/notary/enclave.eif
for name in release.json enclave.json healthcheck.json bridge.env ports.nft; do
    install -m 0644 -o root -g root "$staging/etc/$name" "/etc/notary/$name"
done
install -m 0644 -o root -g root "$staging/etc/allocator.yaml" /etc/nitro_enclaves/allocator.yaml
rm -rf /opt/notary/lib/healthcheck
cp -R "$staging/lib/healthcheck" /opt/notary/lib/healthcheck
chown -R root:root /opt/notary/lib/healthcheck
find /opt/notary/lib/healthcheck -type d -exec chmod 0755 {} +
find /opt/notary/lib/healthcheck -type f -exec chmod 0644 {} +
install -m 0755 -o root -g root "$staging/files/notary-firstboot.sh" /opt/notary/bin/notary-firstboot
install -m 0755 -o root -g root "$staging/files/notary-enclave.sh" /opt/notary/bin/notary-enclave
install -d -m 0755 -o root -g root /var/lib/notary
install -d -m 0750 -o notary-health -g notary-health /var/lib/notary/tls

for unit in notary-enclave notary-bridge notary-health notary-firstboot; do
    install -m 0644 -o root -g root "$staging/files/systemd/$unit.service" "/etc/systemd/system/$unit.service"
done
systemctl enable notary-firstboot.service notary-enclave.service \
    notary-bridge.service notary-health.service

# The copy must still match: a short write would otherwise pass unnoticed.
copied=$(sha256sum /opt/notary/enclave.eif | cut -d' ' -f1)
if [ "$copied" != "$expected" ]; then
    echo "error: /opt/notary/enclave.eif sha256 $copied differs from $expected after the copy" >&2
    exit 1
fi
echo "installed release $(python3 -c 'import json; print(json.load(open("/etc/notary/release.json"))["release_id"])')"
