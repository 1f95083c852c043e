"""The message templates a deployment ships: every ``shared/catalog/messages/*.yaml``, loaded and checked once.

Loaded lazily (the first send from a template pays for PyYAML and the checks, ~tens of ms; a webhook never does).
A file whose template is invalid fails the load with ``TemplateInvalid`` naming the file, template, variant and
field, so a broken template is caught by the tests before it is deployed, not by a customer's first message.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from shared.errors import InvalidInput
from shared.outbound.rendering import MessageTemplate, TemplateInvalid, load_template

MESSAGES_DIR: Final = Path(__file__).resolve().parent.parent / "catalog" / "messages"


class UnknownTemplate(InvalidInput):
    """A send command names a template the catalog does not have."""

    code = "unknown_template"


class TemplateCatalog:
    """Templates by id, from a directory of YAML files (one template per file, named ``<id>.yaml``)."""

    def __init__(self, templates: Mapping[str, MessageTemplate]) -> None:
        self._templates = dict(templates)

    @classmethod
    def from_directory(cls, directory: Path = MESSAGES_DIR) -> TemplateCatalog:
        """Load and check every ``*.yaml`` in ``directory``."""
        from shared.catalog.files import load_directory

        templates = load_directory(directory, lambda data, _: load_template(data), id_of=lambda template: template.id,
                                   invalid=TemplateInvalid)  # fmt: skip
        return cls(templates)

    def get(self, template_id: str) -> MessageTemplate:
        """The template ``template_id``; ``UnknownTemplate`` if there is none."""
        try:
            return self._templates[template_id]
        except KeyError:
            known = ", ".join(sorted(self._templates)) or "none"
            raise UnknownTemplate(f"No message template {template_id!r} (known: {known}).") from None

    def ids(self) -> tuple[str, ...]:
        """Every template id, sorted."""
        return tuple(sorted(self._templates))


@functools.cache
def shipped_catalog() -> TemplateCatalog:
    """The deployment's catalog, loaded once per process."""
    return TemplateCatalog.from_directory()


class ShippedCatalog:
    """The shipped catalog, loaded on the first ``get``: a function that never sends from a template (most agent API
    requests) never pays for PyYAML and the checks at cold start."""

    def get(self, template_id: str) -> MessageTemplate:
        return shipped_catalog().get(template_id)
