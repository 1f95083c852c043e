"""Content kept as files: a directory of YAML documents, one per file, each file named after the id inside it.

Message templates and workflows are both kept this way, so both are loaded this way: PyYAML is imported only here,
when a directory is first read (a function that never reads one never pays for it), every file is checked by the
kind's own loader, and a broken file fails the whole load with an error that starts with the file's name.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from shared.errors import HiloError

T = TypeVar("T")


def load_directory(
    directory: Path,
    load: Callable[[Any, str], T],
    *,
    id_of: Callable[[T], str],
    invalid: type[HiloError],
) -> dict[str, T]:
    """Load every ``*.yaml`` in ``directory``, keyed by id.

    Parameters
    ----------
    directory : Path
        Where the files are; a file's name (without ``.yaml``) must be the id of what it holds.
    load : callable
        Checks one parsed document and builds it; given the document and the id its file name says it must have.
        Raises ``invalid`` for a document that breaks its kind's rules.
    id_of : callable
        The id of a built item.
    invalid : type of HiloError
        The kind's error (``TemplateInvalid``, ``WorkflowInvalid``): raised for a file that is not YAML, does not
        load, or is not named after its id, with the file's name first in the message and ``details`` kept.

    Returns
    -------
    dict
        Items by id, in file-name order.
    """
    import yaml

    items: dict[str, T] = {}
    for path in sorted(directory.glob("*.yaml")):
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as error:
            raise invalid(f"{path.name}: not valid YAML ({error})") from None
        try:
            item = load(data, path.stem)
        except invalid as error:
            raise invalid(f"{path.name}: {error.message}", details=error.details) from None
        if id_of(item) != path.stem:
            raise invalid(f"{path.name}: the file must be named after the id inside it ({id_of(item)!r})")
        items[path.stem] = item
    return items


def as_document(data: Any, invalid: type[HiloError], *, kind: str, expected: str) -> Mapping[str, Any]:
    """A document as a mapping, from a parsed mapping or JSON text (the API's body); ``invalid`` otherwise.

    ``kind`` names what it should be (``template``, ``workflow``), ``expected`` its required fields, for the error.
    """
    if isinstance(data, str | bytes):
        try:
            data = json.loads(data)
        except ValueError as exc:
            raise invalid(f"{kind} is not valid JSON: {exc}") from None
    if not isinstance(data, Mapping):
        raise invalid(f"a {kind} must be an object with {expected}")
    return data
