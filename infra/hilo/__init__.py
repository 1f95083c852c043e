"""Hilo developer tooling: the `hilo` command and the local twin of the SAM stack."""
