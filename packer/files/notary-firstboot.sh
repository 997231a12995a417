#!/bin/sh
# Make the health service's TLS key (P-256, mode 0600, owned by notary-health)
# and a self-signed certificate valid for 10 years, once per instance.
# Usage: notary-firstboot [DIR], where DIR defaults to /var/lib/notary/tls.
set -eu
dir=${1:-/var/lib/notary/tls}
umask 077
install -d -m 0750 -o notary-health -g notary-health "$dir"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$dir/key.pem.tmp" -out "$dir/cert.pem.tmp" -days 3650 \
    -subj "/CN=$(hostname)"
chown notary-health:notary-health "$dir/key.pem.tmp" "$dir/cert.pem.tmp"
chmod 0600 "$dir/key.pem.tmp"
chmod 0644 "$dir/cert.pem.tmp"
mv "$dir/cert.pem.tmp" "$dir/cert.pem"
mv "$dir/key.pem.tmp" "$dir/key.pem"
