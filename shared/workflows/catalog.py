"""The workflows a deployment ships: every ``shared/catalog/workflows/*.yaml``, loaded and checked once.

Each file is checked against the shipped message templates too (a ``send`` naming a template that does not exist, or
a channel it has no variant for, fails the load), so a broken workflow is caught by the tests before it is deployed,
not when its first customer is enrolled. Loaded lazily, like the template catalog: PyYAML and the checks cost only
the function that asks for a workflow.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from shared.catalog.files import load_directory
from shared.errors import NotFound
from shared.workflows.language import TemplateLookup, Workflow, WorkflowInvalid, load_workflow

WORKFLOWS_DIR: Final = Path(__file__).resolve().parent.parent / "catalog" / "workflows"


class UnknownWorkflow(NotFound):
    """A workflow id the catalog does not have."""

    code = "unknown_workflow"


class WorkflowCatalog:
    """Workflows by id, from a directory of YAML files (one workflow per file, named ``<id>.yaml``)."""

    def __init__(self, workflows: Mapping[str, Workflow]) -> None:
        self._workflows = dict(workflows)

    @classmethod
    def from_directory(
        cls, directory: Path = WORKFLOWS_DIR, *, templates: TemplateLookup | None = None
    ) -> WorkflowCatalog:
        """Load and check every ``*.yaml`` in ``directory``; ``send`` steps against ``templates`` when given.

        Raises ``WorkflowInvalid`` naming the file, workflow, step and field of the first broken file.
        """

        def load(data: Any, file_id: str) -> Workflow:
            return load_workflow(data, templates=templates, expected_id=file_id)

        return cls(load_directory(directory, load, id_of=lambda workflow: workflow.id, invalid=WorkflowInvalid))

    def get(self, workflow_id: str) -> Workflow:
        """The workflow ``workflow_id`` (enabled or not); ``UnknownWorkflow`` if there is none."""
        try:
            return self._workflows[workflow_id]
        except KeyError:
            known = ", ".join(sorted(self._workflows)) or "none"
            raise UnknownWorkflow(f"No workflow {workflow_id!r} (known: {known}).") from None

    def ids(self) -> tuple[str, ...]:
        """Every workflow id, sorted."""
        return tuple(sorted(self._workflows))


@functools.cache
def shipped_workflows() -> WorkflowCatalog:
    """The deployment's workflows, checked against its message templates; loaded once per process."""
    from shared.outbound.catalog import shipped_catalog

    return WorkflowCatalog.from_directory(templates=shipped_catalog())
