"""Edges of the system: every boto3 and provider HTTP call lives here, translated into Hilo's errors."""
