"""Reads template.yaml the way SAM and CloudFormation do: short-form tags, conditions, Globals, intrinsics.

The local twin is built from this reading alone, so there is never a second hand-kept list of resources.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

NO_VALUE = object()  # AWS::NoValue: the key disappears


class TemplateError(ValueError):
    """The template uses something the twin cannot read or resolve."""


# ---------------------------------------------------------------- YAML with CloudFormation short forms
class _CfnLoader(yaml.SafeLoader):
    pass


def _tag(name: str) -> Callable[[yaml.Loader, yaml.Node], Any]:
    long_name = "Ref" if name == "Ref" else f"Fn::{name}"

    def construct(loader: yaml.Loader, node: yaml.Node) -> Any:
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
            if name == "GetAtt":
                value = value.split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
        return {long_name: value}

    return construct


for _name in (
    "Ref", "GetAtt", "Sub", "Join", "If", "Equals", "Not", "And", "Or", "Select", "Split", "FindInMap",
    "Base64", "GetAZs", "ImportValue", "Condition", "Cidr", "ToJsonString", "Length",
):  # fmt: skip
    _CfnLoader.add_constructor(f"!{_name}", _tag(_name))


def load_template(path: Path) -> dict[str, Any]:
    """Parse a CloudFormation/SAM YAML template into plain data with long-form intrinsics."""
    with path.open(encoding="utf-8") as handle:
        document = yaml.load(handle, Loader=_CfnLoader)  # noqa: S506 - a SafeLoader subclass
    if not isinstance(document, dict) or "Resources" not in document:
        raise TemplateError(f"{path} is not a CloudFormation template (no Resources)")
    return document


# ---------------------------------------------------------------- resolution
@dataclass
class Physical:
    """What a resource resolves to: its Ref value and its GetAtt attributes."""

    ref: str
    attributes: dict[str, str] = field(default_factory=dict)


def references(value: Any) -> set[str]:
    """Logical ids a value depends on (Ref, GetAtt and ${...} in Sub)."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "Ref" and isinstance(inner, str):
                found.add(inner)
            elif key == "Fn::GetAtt":
                found.add(inner[0] if isinstance(inner, list) else str(inner).split(".")[0])
            elif key == "Fn::Sub":
                text = inner[0] if isinstance(inner, list) else inner
                local = set(inner[1]) if isinstance(inner, list) and len(inner) > 1 else set()
                found |= {m.split(".")[0] for m in re.findall(r"\$\{([^!][^}]*)\}", text)} - local
                if isinstance(inner, list) and len(inner) > 1:
                    found |= references(inner[1])
            else:
                found |= references(inner)
    elif isinstance(value, list):
        for inner in value:
            found |= references(inner)
    return {name for name in found if not name.startswith("AWS::")}


class Resolver:
    """Resolves intrinsic functions against parameters, pseudo parameters, conditions and created resources."""

    def __init__(
        self,
        template: Mapping[str, Any],
        parameters: Mapping[str, str],
        pseudo: Mapping[str, str],
        physical: Mapping[str, Physical],
    ) -> None:
        self.template = template
        self.parameters = parameters
        self.pseudo = pseudo
        self.physical = physical
        self._conditions: dict[str, bool] = {}

    def condition(self, name: str) -> bool:
        """Evaluate a named condition of the template."""
        if name not in self._conditions:
            definition = self.template.get("Conditions", {}).get(name)
            if definition is None:
                raise TemplateError(f"unknown condition {name!r}")
            self._conditions[name] = bool(self.resolve(definition))
        return self._conditions[name]

    def resolve(self, value: Any) -> Any:
        """Return ``value`` with every intrinsic function replaced by its local value."""
        if isinstance(value, list):
            items = [self.resolve(item) for item in value]
            return [item for item in items if item is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref" or key.startswith("Fn::") or key == "Condition":
                return self._intrinsic(key, arg)
        resolved = {key: self.resolve(inner) for key, inner in value.items()}
        return {key: inner for key, inner in resolved.items() if inner is not NO_VALUE}

    def _ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        if name in self.physical:
            return self.physical[name].ref
        raise TemplateError(f"cannot resolve Ref {name!r} (not a parameter or a created resource)")

    def _get_att(self, name: str, attribute: str) -> str:
        resource = self.physical.get(name)
        if resource is None or attribute not in resource.attributes:
            raise TemplateError(f"cannot resolve GetAtt {name}.{attribute}")
        return resource.attributes[attribute]

    def _sub(self, arg: Any) -> str:
        text, local = (arg[0], self.resolve(arg[1]) if len(arg) > 1 else {}) if isinstance(arg, list) else (arg, {})

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in local:
                return str(local[name])
            if "." in name and not name.startswith("AWS::"):
                return self._get_att(*name.split(".", 1))
            return str(self._ref(name))

        return re.sub(r"\$\{([^}]+)\}", replace, text)

    def _intrinsic(self, key: str, arg: Any) -> Any:
        if key == "Ref":
            return self._ref(arg)
        if key == "Fn::GetAtt":
            name, attribute = arg if isinstance(arg, list) else str(arg).split(".", 1)
            return self._get_att(name, self.resolve(attribute))
        if key == "Fn::Sub":
            return self._sub(arg)
        if key == "Fn::Join":
            separator, items = arg
            return str(separator).join(str(item) for item in self.resolve(items))
        if key == "Fn::Select":
            index, items = self.resolve(arg)
            return items[int(index)]
        if key == "Fn::Split":
            separator, text = self.resolve(arg)
            return str(text).split(separator)
        if key == "Fn::If":
            name, when_true, when_false = arg
            return self.resolve(when_true if self.condition(name) else when_false)
        if key == "Fn::Equals":
            left, right = self.resolve(arg)
            return str(left) == str(right)
        if key == "Fn::Not":
            return not self.resolve(arg[0])
        if key == "Fn::And":
            return all(self.resolve(item) for item in arg)
        if key == "Fn::Or":
            return any(self.resolve(item) for item in arg)
        if key == "Condition":
            return self.condition(arg)
        if key == "Fn::FindInMap":
            map_name, top, second = self.resolve(arg)
            return self.template["Mappings"][map_name][top][second]
        if key == "Fn::Base64":
            import base64

            return base64.b64encode(str(self.resolve(arg)).encode()).decode()
        if key == "Fn::GetAZs":
            region = self.pseudo["AWS::Region"]
            return [f"{region}a", f"{region}b", f"{region}c"]
        raise TemplateError(f"the local twin does not support {key}")


# ---------------------------------------------------------------- SAM Globals
_GLOBAL_SECTIONS = {"AWS::Serverless::Function": "Function", "AWS::Serverless::HttpApi": "HttpApi"}


def _merge_globals(global_value: Any, local_value: Any) -> Any:
    """SAM's rules: maps merge (local wins), lists add (globals first), scalars are replaced by the local value."""
    if isinstance(global_value, dict) and isinstance(local_value, dict) and not _is_intrinsic(local_value):
        merged = copy.deepcopy(global_value)
        for key, value in local_value.items():
            merged[key] = _merge_globals(merged[key], value) if key in merged else value
        return merged
    if isinstance(global_value, list) and isinstance(local_value, list):
        return [*global_value, *local_value]
    return local_value


def _is_intrinsic(value: dict[str, Any]) -> bool:
    return len(value) == 1 and next(iter(value)).startswith(("Fn::", "Ref"))


def resource_properties(template: Mapping[str, Any], logical_id: str) -> dict[str, Any]:
    """A resource's Properties with the template's Globals applied, still unresolved."""
    resource = template["Resources"][logical_id]
    properties = copy.deepcopy(resource.get("Properties") or {})
    section = _GLOBAL_SECTIONS.get(resource["Type"])
    globals_ = (template.get("Globals") or {}).get(section or "", {}) if section else {}
    return _merge_globals(copy.deepcopy(globals_), properties) if globals_ else properties


def parameter_values(template: Mapping[str, Any], overrides: Mapping[str, str]) -> dict[str, str]:
    """Parameter defaults, overridden; a parameter with neither is an error, as in CloudFormation."""
    values: dict[str, str] = {}
    for name, spec in (template.get("Parameters") or {}).items():
        if name in overrides:
            values[name] = str(overrides[name])
        elif "Default" in spec:
            values[name] = str(spec["Default"])
        else:
            raise TemplateError(f"parameter {name} has no Default; pass it with --parameter {name}=VALUE")
    unknown = set(overrides) - set(values)
    if unknown:
        raise TemplateError(f"unknown parameter(s): {', '.join(sorted(unknown))}")
    return values


def creation_order(template: Mapping[str, Any]) -> list[str]:
    """Logical ids ordered so every resource comes after those it references (Globals and DependsOn included)."""
    resources = template["Resources"]
    graph: dict[str, set[str]] = {}
    for logical_id, resource in resources.items():
        depends = resource.get("DependsOn") or []
        depends = [depends] if isinstance(depends, str) else depends
        graph[logical_id] = (references(resource_properties(template, logical_id)) | set(depends)) & set(resources)
    ordered: list[str] = []
    visiting: set[str] = set()

    def visit(node: str) -> None:
        if node in ordered:
            return
        if node in visiting:
            raise TemplateError(f"circular dependency through {node}")
        visiting.add(node)
        for dependency in sorted(graph[node]):
            visit(dependency)
        visiting.discard(node)
        ordered.append(node)

    for node in sorted(graph):
        visit(node)
    return ordered
