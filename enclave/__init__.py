"""The notary's enclave image: build inputs, EIF inspection, attestation."""
