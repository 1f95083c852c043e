"""Edges of the system: every AWS (botocore) and provider HTTP call lives here, translated into Hilo's errors."""
