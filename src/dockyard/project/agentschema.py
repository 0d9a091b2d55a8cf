"""Microsoft's published AgentSchema for hosted agents, vendored under `schema/` and loaded once.

The schema files are data, copied unchanged from `microsoft/AgentSchema` (see `schema/README.md` for the
commit). They are JSON Schema draft 2020-12 written as YAML, and refer to each other by file name
(`$ref: AgentDefinition.yaml`), so every file is registered under its own `$id` and references resolve
offline, the same way they would next to each other on GitHub.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from importlib import resources
from typing import Any

import yaml
from jsonschema import Draft202012Validator, ValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

ROOT_SCHEMA = "ContainerAgent.yaml"


@functools.cache
def validator() -> Draft202012Validator:
    """A validator for `ContainerAgent.yaml` with every vendored file it references registered."""
    folder = resources.files("dockyard.project") / "schema"
    documents: dict[str, Any] = {}
    for entry in folder.iterdir():
        if entry.name.endswith(".yaml"):
            documents[entry.name] = yaml.safe_load(entry.read_text(encoding="utf-8"))
    registry: Registry = Registry().with_resources(
        (name, Resource.from_contents(document, default_specification=DRAFT202012))
        for name, document in documents.items()
    )
    return Draft202012Validator(documents[ROOT_SCHEMA], registry=registry)


def schema_errors(document: object) -> Iterator[ValidationError]:
    """Every way `document` breaks the published schema, deepest cause first where there is a choice."""
    for error in validator().iter_errors(document):
        yield _most_specific(error)


def _most_specific(error: ValidationError) -> ValidationError:
    # An anyOf/oneOf failure says only "is not valid under any of the given schemas"; the branch that got
    # furthest usually names the real mistake (a missing `value`, a wrong type).
    while error.validator in ("anyOf", "oneOf") and error.context:
        error = max(error.context, key=lambda e: (len(e.absolute_path), -len(e.context or ())))
    return error
