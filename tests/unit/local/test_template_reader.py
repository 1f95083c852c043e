"""The twin reads templates as CloudFormation and SAM do: short forms, Globals, conditions, intrinsics, order."""

from __future__ import annotations

from pathlib import Path

import pytest

from hilo.local.template import (
    Physical,
    Resolver,
    TemplateError,
    creation_order,
    load_template,
    parameter_values,
    resource_properties,
)

TEMPLATE = """
Parameters:
  Stage: {Type: String, Default: dev}
  Email: {Type: String, Default: ""}
Conditions:
  IsProd: !Equals [!Ref Stage, prod]
  HasEmail: !Not [!Equals [!Ref Email, ""]]
Globals:
  Function:
    Timeout: 10
    Layers: [!Ref DepsLayer]
    Environment: {Variables: {A: global, B: global}}
Resources:
  DepsLayer: {Type: AWS::Serverless::LayerVersion, Properties: {ContentUri: deps/}}
  Queue:
    Type: AWS::SQS::Queue
    Properties:
      RedrivePolicy: {deadLetterTargetArn: !GetAtt Dlq.Arn, maxReceiveCount: 3}
  Dlq: {Type: AWS::SQS::Queue}
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      Timeout: 30
      Layers: [extra]
      Environment: {Variables: {B: local, URL: !Sub "${Queue}?stage=${Stage}", ARN: !Sub "${Dlq.Arn}"}}
"""


@pytest.fixture
def template(tmp_path: Path) -> dict:
    path = tmp_path / "template.yaml"
    path.write_text(TEMPLATE)
    return load_template(path)


def test_globals_merge_like_sam(template: dict) -> None:
    props = resource_properties(template, "Fn")
    assert props["Timeout"] == 30  # scalars: the function wins
    assert props["Layers"] == [{"Ref": "DepsLayer"}, "extra"]  # lists: globals first, then the function's
    assert props["Environment"]["Variables"]["A"] == "global"  # maps: merged
    assert props["Environment"]["Variables"]["B"] == "local"


def test_resources_come_after_what_they_reference(template: dict) -> None:
    order = creation_order(template)
    assert order.index("Dlq") < order.index("Queue") < order.index("Fn")
    assert order.index("DepsLayer") < order.index("Fn")  # a reference that only Globals make


def test_cycles_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text("Resources:\n  A: {Type: X, Properties: {P: !Ref B}}\n  B: {Type: X, Properties: {P: !Ref A}}\n")
    with pytest.raises(TemplateError, match="circular"):
        creation_order(load_template(path))


def test_intrinsics_resolve_against_created_resources(template: dict) -> None:
    physical = {
        "Queue": Physical("http://q/url", {"Arn": "arn:q"}),
        "Dlq": Physical("http://dlq/url", {"Arn": "arn:dlq"}),
        "DepsLayer": Physical("arn:layer"),
    }
    resolver = Resolver(template, parameter_values(template, {}), {"AWS::Region": "us-east-1"}, physical)
    props = resolver.resolve(resource_properties(template, "Fn"))
    assert props["Environment"]["Variables"]["URL"] == "http://q/url?stage=dev"
    assert props["Environment"]["Variables"]["ARN"] == "arn:dlq"
    assert props["Layers"] == ["arn:layer", "extra"]
    assert resolver.resolve({"Fn::Join": ["-", ["a", {"Ref": "Stage"}]]}) == "a-dev"
    assert resolver.resolve({"Fn::If": ["IsProd", "big", "small"]}) == "small"
    assert resolver.resolve({"K": {"Fn::If": ["HasEmail", "x", {"Ref": "AWS::NoValue"}]}}) == {}
    assert resolver.resolve({"Fn::Sub": "${!Literal}"}) == "${Literal}"


def test_parameters_take_overrides_and_refuse_unknown_ones(template: dict) -> None:
    assert parameter_values(template, {"Stage": "prod"})["Stage"] == "prod"
    with pytest.raises(TemplateError, match="unknown parameter"):
        parameter_values(template, {"Nope": "x"})


def test_unresolvable_references_are_clear_errors(template: dict) -> None:
    resolver = Resolver(template, {}, {}, {})
    with pytest.raises(TemplateError, match=r"GetAtt Missing\.Arn"):
        resolver.resolve({"Fn::GetAtt": ["Missing", "Arn"]})
    with pytest.raises(TemplateError, match="does not support Fn::ImportValue"):
        resolver.resolve({"Fn::ImportValue": "x"})


def test_a_file_without_resources_is_not_a_template(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text("hello: world\n")
    with pytest.raises(TemplateError, match="not a CloudFormation template"):
        load_template(path)
