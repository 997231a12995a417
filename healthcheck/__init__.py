"""The health service that runs on every notary instance (standard library only)."""
