"""One module per provider: verify its requests and normalise its payloads (no AWS, no HTTP calls)."""
