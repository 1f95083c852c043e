"""Ingest: the inbound FIFO consumer's domain (rules, use case, ports) and its wiring.

``shared.ingest.rules`` and ``shared.ingest.service`` know nothing of AWS; ``shared.ingest.bootstrap`` wires the
DynamoDB, SQS, EventBridge and S3 adapters for the function in ``functions/ingest``.
"""
