"""Deploy a TLSNotary notary in AWS Nitro Enclaves to several regions."""
