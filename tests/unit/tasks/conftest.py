"""The task tests store on ProfileTable alone, on moto's in-process mock: the workflow tests' ``table`` fixture."""

from tests.unit.workflows.conftest import Table, table  # noqa: F401 - the fixture, for the tests in this folder

__all__ = ["Table"]
