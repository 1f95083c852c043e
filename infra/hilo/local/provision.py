"""Creates, in the embedded moto server, every resource template.yaml declares, in dependency order.

Each supported CloudFormation type has one small creator that maps its Properties to the service API and
returns what CloudFormation's Ref and GetAtt would give. Types with no local effect (IAM, permissions,
policies, layers) resolve to plausible identifiers so references to them still work.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hilo.local.template import Physical, Resolver, TemplateError, creation_order, resource_properties

# Resource types that exist only to grant or package things in AWS; locally nothing needs creating.
NO_LOCAL_EFFECT = {
    "AWS::IAM::Role",
    "AWS::IAM::Policy",
    "AWS::IAM::ManagedPolicy",
    "AWS::Lambda::Permission",
    "AWS::SQS::QueuePolicy",
    "AWS::SNS::TopicPolicy",
    "AWS::S3::BucketPolicy",
    "AWS::Serverless::LayerVersion",
    "AWS::Lambda::LayerVersion",
}

# SQS attributes CloudFormation exposes as properties (the rest of a queue's properties are tags etc.).
_SQS_ATTRIBUTES = (
    "ContentBasedDeduplication", "DeduplicationScope", "DelaySeconds", "FifoQueue", "FifoThroughputLimit",
    "KmsDataKeyReusePeriodSeconds", "KmsMasterKeyId", "MaximumMessageSize", "MessageRetentionPeriod",
    "ReceiveMessageWaitTimeSeconds", "RedriveAllowPolicy", "RedrivePolicy", "SqsManagedSseEnabled",
    "VisibilityTimeout",
)  # fmt: skip


@dataclass
class StackContext:
    """Identity of the local stack and a factory of boto3 clients bound to the embedded moto server."""

    stack_name: str
    region: str
    account_id: str
    client: Callable[[str], Any]

    def name_for(self, logical_id: str) -> str:
        return f"{self.stack_name}-{logical_id}"

    def arn(self, service: str, resource: str, *, regional: bool = True) -> str:
        return f"arn:aws:{service}:{self.region if regional else ''}:{self.account_id}:{resource}"


@dataclass
class ProvisionedStack:
    """Everything created: physical ids by logical id, the resolver bound to them, and what was skipped."""

    physical: dict[str, Physical]
    resolver: Resolver
    skipped: dict[str, str] = field(default_factory=dict)
    created: dict[str, str] = field(default_factory=dict)  # logical id -> type
    run_by_twin: dict[str, dict[str, Any]] = field(default_factory=dict)  # functions/APIs -> resolved properties


def provision(
    template: Mapping[str, Any],
    context: StackContext,
    parameters: Mapping[str, str],
    *,
    secret_overlay: Mapping[str, str] | None = None,
) -> ProvisionedStack:
    """Create every resource of ``template`` whose Condition holds; return how to resolve references to them.

    ``secret_overlay`` holds local configuration merged into every Secrets Manager secret's JSON value, so
    functions read their settings the same way they do in AWS.
    """
    pseudo = {
        "AWS::Region": context.region,
        "AWS::AccountId": context.account_id,
        "AWS::StackName": context.stack_name,
        "AWS::StackId": context.arn("cloudformation", f"stack/{context.stack_name}/local"),
        "AWS::Partition": "aws",
        "AWS::URLSuffix": "amazonaws.com",
    }
    physical: dict[str, Physical] = {}
    resolver = Resolver(template, parameters, pseudo, physical)
    stack = ProvisionedStack(physical=physical, resolver=resolver)
    resources = template["Resources"]
    for logical_id in creation_order(template):
        resource = resources[logical_id]
        condition = resource.get("Condition")
        if condition and not resolver.condition(condition):
            stack.skipped[logical_id] = f"condition {condition} is false"
            continue
        kind = resource["Type"]
        properties = resolver.resolve(resource_properties(template, logical_id))
        if kind in _RUN_BY_TWIN:
            stack.run_by_twin[logical_id] = properties
        creator = _CREATORS.get(kind)
        if creator is not None:
            physical[logical_id] = creator(context, logical_id, properties, secret_overlay or {})
            stack.created[logical_id] = kind
        else:
            physical[logical_id] = _placeholder(context, logical_id, kind)
            if kind not in NO_LOCAL_EFFECT and kind not in _RUN_BY_TWIN:
                stack.skipped[logical_id] = f"{kind} is not emulated locally"
    return stack


# Types the twin runs itself rather than creating in moto (functions and the HTTP API).
_RUN_BY_TWIN = {"AWS::Serverless::Function", "AWS::Serverless::HttpApi"}


def _placeholder(context: StackContext, logical_id: str, kind: str) -> Physical:
    name = context.name_for(logical_id)
    if kind == "AWS::Serverless::Function":
        arn = context.arn("lambda", f"function:{name}")
        return Physical(ref=name, attributes={"Arn": arn})
    if kind in ("AWS::Serverless::LayerVersion", "AWS::Lambda::LayerVersion"):
        return Physical(ref=context.arn("lambda", f"layer:{name}:1"))
    if kind == "AWS::IAM::Role":
        arn = context.arn("iam", f"role/{name}", regional=False)
        return Physical(ref=name, attributes={"Arn": arn, "RoleId": name})
    return Physical(ref=name, attributes={"Arn": context.arn("local", name)})


def _is_true(value: Any) -> bool:
    """CloudFormation booleans arrive as true, "true" or "True"."""
    return str(value).lower() == "true"


def _api_attributes(props: Mapping[str, Any], keys: tuple[str, ...]) -> dict[str, str]:
    """CloudFormation properties as the string attributes the SQS/SNS APIs take (JSON for documents)."""
    return {
        key: json.dumps(value)
        if isinstance(value, dict)
        else str(value).lower()
        if isinstance(value, bool)
        else str(value)
        for key, value in ((key, props[key]) for key in keys if key in props)
    }


def _sqs_queue(context: StackContext, logical_id: str, props: dict[str, Any], _: Mapping[str, str]) -> Physical:
    fifo = _is_true(props.get("FifoQueue"))
    name = props.get("QueueName") or context.name_for(logical_id) + (".fifo" if fifo else "")
    attributes = _api_attributes(props, _SQS_ATTRIBUTES)
    url = context.client("sqs").create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    return Physical(ref=url, attributes={"Arn": context.arn("sqs", name), "QueueName": name, "QueueUrl": url})


def _sns_topic(context: StackContext, logical_id: str, props: dict[str, Any], _: Mapping[str, str]) -> Physical:
    fifo = _is_true(props.get("FifoTopic"))
    name = props.get("TopicName") or context.name_for(logical_id) + (".fifo" if fifo else "")
    attributes = {"FifoTopic": "true"} if fifo else {}
    arn = context.client("sns").create_topic(Name=name, Attributes=attributes)["TopicArn"]
    for subscription in props.get("Subscription", []):
        context.client("sns").subscribe(
            TopicArn=arn, Protocol=subscription["Protocol"], Endpoint=subscription["Endpoint"]
        )
    return Physical(ref=arn, attributes={"TopicArn": arn, "TopicName": name})


def _sns_subscription(context: StackContext, _: str, props: dict[str, Any], __: Mapping[str, str]) -> Physical:
    attributes = _api_attributes(props, ("RawMessageDelivery", "FilterPolicy", "FilterPolicyScope", "RedrivePolicy"))
    arn = context.client("sns").subscribe(
        TopicArn=props["TopicArn"], Protocol=props["Protocol"], Endpoint=props["Endpoint"], Attributes=attributes
    )["SubscriptionArn"]
    return Physical(ref=arn)


def _dynamodb_table(context: StackContext, logical_id: str, props: dict[str, Any], _: Mapping[str, str]) -> Physical:
    client = context.client("dynamodb")
    name = props.get("TableName") or context.name_for(logical_id)
    request: dict[str, Any] = {
        "TableName": name,
        "AttributeDefinitions": props["AttributeDefinitions"],
        "KeySchema": props["KeySchema"],
        "BillingMode": props.get("BillingMode", "PROVISIONED"),
    }
    if request["BillingMode"] == "PROVISIONED":
        request["ProvisionedThroughput"] = props.get(
            "ProvisionedThroughput", {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5}
        )
    for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes", "StreamSpecification"):
        if key in props:
            request[key] = props[key]
    if "SSESpecification" in props:  # CloudFormation says SSEEnabled where the API says Enabled
        sse = dict(props["SSESpecification"])
        request["SSESpecification"] = {"Enabled": _is_true(sse.pop("SSEEnabled", True)), **sse}
    if "StreamSpecification" in request:
        request["StreamSpecification"] = {"StreamEnabled": True, **request["StreamSpecification"]}
    table = client.create_table(**request)["TableDescription"]
    ttl = props.get("TimeToLiveSpecification")
    if ttl and _is_true(ttl.get("Enabled")):
        client.update_time_to_live(
            TableName=name, TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True}
        )
    pitr = props.get("PointInTimeRecoverySpecification", {})
    if _is_true(pitr.get("PointInTimeRecoveryEnabled")):
        client.update_continuous_backups(
            TableName=name, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
        )
    attributes = {"Arn": table["TableArn"]}
    if "LatestStreamArn" in table:
        attributes["StreamArn"] = table["LatestStreamArn"]
    return Physical(ref=name, attributes=attributes)


def _s3_bucket(context: StackContext, logical_id: str, props: dict[str, Any], _: Mapping[str, str]) -> Physical:
    name = props.get("BucketName") or context.name_for(logical_id).lower()
    request: dict[str, Any] = {"Bucket": name}
    if context.region != "us-east-1":
        request["CreateBucketConfiguration"] = {"LocationConstraint": context.region}
    context.client("s3").create_bucket(**request)
    rules = (props.get("LifecycleConfiguration") or {}).get("Rules")
    if rules:
        context.client("s3").put_bucket_lifecycle_configuration(
            Bucket=name,
            LifecycleConfiguration={
                "Rules": [
                    {
                        "ID": rule.get("Id", f"rule-{index}"),
                        "Status": rule["Status"],
                        "Filter": {"Prefix": rule.get("Prefix", "")},
                        **(
                            {"Expiration": {"Days": int(rule["ExpirationInDays"])}}
                            if "ExpirationInDays" in rule
                            else {}
                        ),
                    }
                    for index, rule in enumerate(rules)
                ]
            },
        )
    return Physical(
        ref=name,
        attributes={
            "Arn": f"arn:aws:s3:::{name}",
            "DomainName": f"{name}.s3.amazonaws.com",
            "RegionalDomainName": f"{name}.s3.{context.region}.amazonaws.com",
        },
    )


def _event_bus(context: StackContext, logical_id: str, props: dict[str, Any], _: Mapping[str, str]) -> Physical:
    name = props.get("Name") or context.name_for(logical_id)
    arn = context.client("events").create_event_bus(Name=name)["EventBusArn"]
    return Physical(ref=name, attributes={"Arn": arn, "Name": name})


def _event_rule(context: StackContext, logical_id: str, props: dict[str, Any], _: Mapping[str, str]) -> Physical:
    """An EventBridge rule and its targets: moto delivers matching ``PutEvents`` to SQS targets as EventBridge does
    (with ``InputTransformer``; moto ignores ``InputPath``, so locally the whole event arrives)."""
    if "ScheduleExpression" in props:
        raise TemplateError(f"{logical_id}: scheduled rules are not run locally; use a function's Schedule event")
    name = props.get("Name") or context.name_for(logical_id)
    bus = props.get("EventBusName") or "default"
    pattern = props.get("EventPattern")
    pattern_text = pattern if isinstance(pattern, str) else json.dumps(pattern)
    events = context.client("events")
    arn = events.put_rule(Name=name, EventBusName=bus, State=props.get("State", "ENABLED"), EventPattern=pattern_text)[
        "RuleArn"
    ]
    fields = ("Id", "Arn", "Input", "InputPath", "InputTransformer", "SqsParameters")
    targets = [{key: target[key] for key in fields if key in target} for target in props.get("Targets", [])]
    if targets:
        events.put_targets(Rule=name, EventBusName=bus, Targets=targets)
    # CloudFormation's Ref: the rule's name, "<bus>|<name>" on a custom bus.
    return Physical(ref=name if bus == "default" else f"{bus}|{name}", attributes={"Arn": arn})


def _secret(context: StackContext, logical_id: str, props: dict[str, Any], overlay: Mapping[str, str]) -> Physical:
    name = props.get("Name") or context.name_for(logical_id)
    if "GenerateSecretString" in props:  # a generated key (e.g. a signing key): random, as Secrets Manager does
        secret_value = secrets.token_urlsafe(int(props["GenerateSecretString"].get("PasswordLength", 32)))
    else:
        try:
            document = json.loads(props.get("SecretString", "{}"))
        except json.JSONDecodeError as error:
            raise TemplateError(f"{logical_id}: SecretString must be a JSON object locally") from error
        secret_value = json.dumps({**document, **overlay})
    arn = context.client("secretsmanager").create_secret(Name=name, SecretString=secret_value)["ARN"]
    return Physical(ref=arn, attributes={"Id": arn})


def _schedule_group(context: StackContext, logical_id: str, props: dict[str, Any], _: Mapping[str, str]) -> Physical:
    name = props.get("Name") or context.name_for(logical_id)
    arn = context.client("scheduler").create_schedule_group(Name=name)["ScheduleGroupArn"]
    return Physical(ref=name, attributes={"Arn": arn})


def _log_group(context: StackContext, logical_id: str, props: dict[str, Any], _: Mapping[str, str]) -> Physical:
    name = props.get("LogGroupName") or f"/hilo/{context.stack_name}/{logical_id}"
    context.client("logs").create_log_group(logGroupName=name)
    return Physical(ref=name, attributes={"Arn": context.arn("logs", f"log-group:{name}:*")})


def _alarm(context: StackContext, logical_id: str, props: dict[str, Any], _: Mapping[str, str]) -> Physical:
    name = props.get("AlarmName") or context.name_for(logical_id)
    request = {key: props[key] for key in props if key not in {"AlarmName", "Threshold", "Period", "EvaluationPeriods"}}
    context.client("cloudwatch").put_metric_alarm(
        AlarmName=name,
        Threshold=float(props["Threshold"]),
        Period=int(props["Period"]),
        EvaluationPeriods=int(props["EvaluationPeriods"]),
        **request,
    )
    return Physical(ref=name, attributes={"Arn": context.arn("cloudwatch", f"alarm:{name}")})


def _http_api(context: StackContext, logical_id: str, props: dict[str, Any], _: Mapping[str, str]) -> Physical:
    # Routes are added once the functions' events are read (see hilo.local.stack); the API itself exists now
    # so functions can read their own API's routes through the management API, as they do in AWS.
    api = context.client("apigatewayv2").create_api(
        Name=props.get("Name") or context.name_for(logical_id), ProtocolType="HTTP"
    )
    return Physical(ref=api["ApiId"], attributes={"ApiEndpoint": api.get("ApiEndpoint", ""), "ApiId": api["ApiId"]})


_CREATORS: dict[str, Callable[[StackContext, str, dict[str, Any], Mapping[str, str]], Physical]] = {
    "AWS::SQS::Queue": _sqs_queue,
    "AWS::SNS::Topic": _sns_topic,
    "AWS::SNS::Subscription": _sns_subscription,
    "AWS::DynamoDB::Table": _dynamodb_table,
    "AWS::S3::Bucket": _s3_bucket,
    "AWS::Events::EventBus": _event_bus,
    "AWS::Events::Rule": _event_rule,
    "AWS::SecretsManager::Secret": _secret,
    "AWS::Scheduler::ScheduleGroup": _schedule_group,
    "AWS::Logs::LogGroup": _log_group,
    "AWS::CloudWatch::Alarm": _alarm,
    "AWS::Serverless::HttpApi": _http_api,
}
