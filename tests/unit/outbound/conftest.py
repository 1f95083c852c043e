"""Outbound tests run on the ingest tests' AWS fixtures (moto): customers are made by ingesting their messages."""

from tests.unit.ingest.conftest import aws, moto_server, threaded_aws

__all__ = ["aws", "moto_server", "threaded_aws"]
