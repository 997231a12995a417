"""The health service that runs on every notary instance (standard library only).

`python3 -m healthcheck --config /etc/notary/healthcheck.json` serves over
HTTPS (TLS 1.2 and 1.3):

- `GET /healthcheck`: 200 `{"status":"ok"}`, or 503
  `{"status":"unhealthy","check":CHECK,"reason":REASON}` naming the first
  failing check. Reasons of the "enclave" check: no-enclave, enclave-count,
  not-running, debug-mode, enclave-name, pcr-mismatch, nitro-cli-missing,
  nitro-cli-failed, nitro-cli-output, manifest, timeout. Reasons of the
  "notary" check: unreachable, timeout, tls, status-NNN, body, api-key.
  Either check may also fail with "error" (an unexpected exception, logged),
  and before the first probe ends a waiting request gets check "probe" with
  reason "pending".
- `GET /metrics`: Prometheus text format.

Logs are JSON lines on standard output. The package runs on Python 3.9 and
later, because Amazon Linux 2023 ships 3.9.
"""
