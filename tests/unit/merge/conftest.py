"""The merge tests run on the ingest tests' AWS fixtures (moto), since merges work on what ingest wrote."""

from tests.unit.ingest.conftest import aws, moto_server, threaded_aws

__all__ = ["aws", "moto_server", "threaded_aws"]
