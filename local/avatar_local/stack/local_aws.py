"""Local AWS: a moto server on loopback with template.yaml itself deployed into it.

Server mode (not in-process mocks) because the Segmind emulator must fetch the presigned media
URLs over real HTTP, exactly as Segmind fetches them from S3. Resource names and every function
setting come from the stack moto's CloudFormation creates from the translated template; the
gaps moto leaves (notes/local-aws.md) are closed here, each in one small, named step.
"""

from __future__ import annotations

import functools
import io
import json
import logging
import os
import re
import warnings
import zipfile
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import httpx
from moto import backends as moto_backends
from moto.server import ThreadedMotoServer

from avatar_local.stack.dynamodb_atomic import dynamodb_item_writes_atomic
from avatar_local.stack.s3_conditions import copy_source_if_match_enforced
from avatar_local.stack.sam_translate import code_artifacts, translate_template

# Not us-east-1, so the offline stack runs the code paths every other region needs (regional S3 hosts
# in presigned URLs, buckets created with a location constraint, region-scoped ARNs), in one of the
# regions opened after March 2019, where S3 is strictest about them.
REGION = "ap-southeast-3"
REPO_ROOT = Path(__file__).resolve().parents[3]
TEMPLATE_PATH = REPO_ROOT / "template.yaml"
FUNCTIONS = {
    "SubmitFunction": "submit",
    "PollFunction": "poll",
    "FinalizeFunction": "finalize",
    "ReportFailureFunction": "report_failure",
    "DeadLetterFunction": "dead_letter",
    "SplitFunction": "split",
}
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
    "AWS_SESSION_TOKEN": "local",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
}


@dataclass
class DeployedStack:
    """What the offline stack needs to know about the deployed template."""

    outputs: dict[str, str]
    resources: dict[str, str]  # logical id -> physical id
    function_environment: dict[str, dict[str, str]]  # logical id -> env vars as deployed
    submit_batch_size: int
    submit_max_concurrency: int
    submit_visibility_timeout: int
    max_receive_count: int
    function_timeouts: dict[str, float] = field(default_factory=dict)  # logical id -> seconds
    dead_letter_batch_size: int = 10
    split_batch_size: int = 1
    split_max_concurrency: int = 2
    split_visibility_timeout: int = 3600
    secret_arn: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def physical(self, logical_id: str) -> str:
        return self.resources[logical_id]


class LocalAws:
    """Starts moto on an ephemeral loopback port and points every boto3 client of this process at it."""

    def __init__(self) -> None:
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.endpoint = ""
        self._saved_env: dict[str, str | None] = {}
        # moto gaps closed by patching moto itself, for as long as the server runs.
        self._patches = ExitStack()

    def start(self) -> LocalAws:
        # The server logs every request through werkzeug, and moto warns about each resource type its
        # CloudFormation skips (closed below, in _close_moto_gaps); the stack has its own output.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        logging.getLogger("moto").setLevel(logging.ERROR)
        # moto's ASL interpreter logs every error it evaluates at ERROR, with a dump: an IsPresent on an
        # absent field, a task failure the state machine then retries or catches. The execution
        # history holds them all; the console is for the run's own progress.
        logging.getLogger("moto.stepfunctions.parser").setLevel(logging.CRITICAL)
        warnings.filterwarnings("ignore", message="Tried to parse .* but it's not supported", category=UserWarning)
        _cache_moto_module_list()
        self._patches.enter_context(copy_source_if_match_enforced())
        self._patches.enter_context(dynamodb_item_writes_atomic())
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        self._set_env({**FAKE_CREDENTIALS, "AWS_ENDPOINT_URL": self.endpoint, "MOTO_PORT": str(port)})
        # moto's backends are process-wide: start from nothing, even after an earlier stack.
        httpx.post(f"{self.endpoint}/moto-api/reset")
        # Step Functions runs the ASL for real inside the server process (this process).
        httpx.post(f"{self.endpoint}/moto-api/config", json={"stepfunctions": {"execute_state_machine": True}})
        boto3.DEFAULT_SESSION = None
        return self

    def stop(self) -> None:
        if self.endpoint:
            httpx.post(f"{self.endpoint}/moto-api/reset")
            self._server.stop()
        self._patches.close()
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        boto3.DEFAULT_SESSION = None

    def _set_env(self, values: dict[str, str]) -> None:
        for name, value in values.items():
            self._saved_env.setdefault(name, os.environ.get(name))
            os.environ[name] = value


def _cache_moto_module_list() -> None:
    """moto's server lists its own package directory (os.listdir + a stat per entry) on every request
    to find the service, while holding the dispatcher's lock: every concurrent call waits on it. The
    list cannot change while the process runs, so read it once."""
    if not isinstance(moto_backends.list_of_moto_modules, functools.partial):
        modules = tuple(moto_backends.list_of_moto_modules())
        moto_backends.list_of_moto_modules = functools.partial(iter, modules)


def deploy(parameters: dict[str, str], api_key: str, stack_name: str = "avatar-pipeline") -> DeployedStack:
    """Translate template.yaml (SAM -> CloudFormation) and create it in moto's CloudFormation."""
    template = translate_template(TEMPLATE_PATH, parameters)
    event_sources = _take_event_source_mappings(template)
    submit_event = event_sources["SubmitFunction"]
    _upload_code_placeholders(template)
    cfn = boto3.client("cloudformation")
    cfn.create_stack(
        StackName=stack_name,
        TemplateBody=json.dumps(template),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"],
    )
    described = cfn.describe_stacks(StackName=stack_name)["Stacks"][0]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}
    resources = {
        r["LogicalResourceId"]: r["PhysicalResourceId"]
        for r in cfn.list_stack_resources(StackName=stack_name)["StackResourceSummaries"]
    }
    queue = template["Resources"]["SubmitQueue"]["Properties"]
    stack = DeployedStack(
        outputs=outputs,
        resources=resources,
        function_environment={},
        submit_batch_size=int(submit_event.get("BatchSize", 10)),
        submit_max_concurrency=int(
            _resolve(submit_event.get("ScalingConfig", {}).get("MaximumConcurrency", 2), template, parameters)
        ),
        submit_visibility_timeout=int(queue.get("VisibilityTimeout", 30)),
        max_receive_count=int(queue.get("RedrivePolicy", {}).get("maxReceiveCount", 5)),
        function_timeouts={
            logical_id: float(template["Resources"][logical_id]["Properties"].get("Timeout", 3))
            for logical_id in FUNCTIONS
        },
        dead_letter_batch_size=int(event_sources["DeadLetterFunction"].get("BatchSize", 10)),
        split_batch_size=int(event_sources["SplitFunction"].get("BatchSize", 1)),
        split_max_concurrency=int(event_sources["SplitFunction"].get("ScalingConfig", {}).get("MaximumConcurrency", 2)),
        split_visibility_timeout=int(template["Resources"]["SplitQueue"]["Properties"].get("VisibilityTimeout", 3600)),
    )
    _close_moto_gaps(stack, template, api_key)
    return stack


def _resolve(value: Any, template: dict[str, Any], parameters: dict[str, str]) -> Any:
    """A property that is a {"Ref": Parameter}: the value given, else the parameter's default."""
    if isinstance(value, dict) and set(value) == {"Ref"}:
        name = value["Ref"]
        return parameters.get(name, template.get("Parameters", {}).get(name, {}).get("Default"))
    return value


def _upload_code_placeholders(template: dict[str, Any]) -> None:
    """moto's Lambda reads each function's and layer's zip from S3; the code itself runs in this
    process (LambdaRouter), so a stand-in zip is enough."""
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("app.py", "# runs in the offline stack's process; see avatar_local.stack.lambda_router\n")
    s3 = boto3.client("s3")
    for bucket in {bucket for bucket, _ in code_artifacts(template)}:
        s3.create_bucket(Bucket=bucket, **bucket_location(s3.meta.region_name))
    for bucket, key in code_artifacts(template):
        s3.put_object(Bucket=bucket, Key=key, Body=archive.getvalue())


def _take_event_source_mappings(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Remove the SQS event source mappings (Submit's, DeadLetter's, Split's) from the template and return
    their settings by the function's logical id.

    moto would run the mapped function through Docker on every message (receiving it, and so
    counting a receive, first); the local pollers play Lambda's event source mapping instead, with
    these settings (batch size, maximum concurrency, partial batch responses).
    """
    found: dict[str, dict[str, Any]] = {}
    for logical_id, resource in list(template["Resources"].items()):
        if resource["Type"] == "AWS::Lambda::EventSourceMapping":
            del template["Resources"][logical_id]
            props: dict[str, Any] = resource["Properties"]
            function = props["FunctionName"]
            found[function["Ref"] if isinstance(function, dict) else str(function)] = props
    if "SubmitFunction" not in found:
        raise LookupError("the template has no SQS event source mapping for the Submit function")
    return found


def _close_moto_gaps(stack: DeployedStack, template: dict[str, Any], api_key: str) -> None:
    """Each step here is a documented gap between moto and AWS (shared/notes/local-aws.md)."""
    # 1. AWS::SecretsManager::Secret is skipped by moto's CloudFormation: create the secret.
    secrets = boto3.client("secretsmanager")
    stack.secret_arn = secrets.create_secret(Name="avatar-pipeline/segmind-api-key", SecretString=api_key)["ARN"]
    # 2. The bucket's EventBridge notification setting is not applied.
    s3 = boto3.client("s3")
    s3.put_bucket_notification_configuration(
        Bucket=stack.physical("InputBucket"), NotificationConfiguration={"EventBridgeConfiguration": {}}
    )
    # 3. (The SQS event source mappings were taken out before deploying: see _take_event_source_mappings.)
    lambda_client = boto3.client("lambda")
    # 4. The state machine: substitutions applied, in the backend that executes it.
    _create_state_machine(stack, template)
    # 5. The functions' environment, as deployed (names resolved by CloudFormation).
    for logical_id in FUNCTIONS:
        config = lambda_client.get_function_configuration(FunctionName=stack.physical(logical_id))
        variables = {k: str(v) for k, v in config.get("Environment", {}).get("Variables", {}).items()}
        variables["SEGMIND_API_KEY_SECRET_ARN"] = stack.secret_arn
        stack.function_environment[logical_id] = variables


def _create_state_machine(stack: DeployedStack, template: dict[str, Any]) -> None:
    """Create RenderJob through the API, definition substituted, under CloudFormation's physical name.

    Two gaps meet here: moto applies no DefinitionSubstitutions, and with execute_state_machine on,
    the API serves the interpreter's backend, which moto's CloudFormation does not write to.
    Keeping the physical name keeps every ARN CloudFormation handed out (outputs, env vars) valid.
    """
    machine = template["Resources"]["RenderJobStateMachine"]["Properties"]
    definition = _join(machine["DefinitionString"])
    lambda_client = boto3.client("lambda")
    for name, value in machine.get("DefinitionSubstitutions", {}).items():
        definition = definition.replace("${" + name + "}", resolve_substitution(value, stack, lambda_client))
    unresolved = re.findall(r"\$\{[A-Za-z0-9]+\}", definition)
    if unresolved:
        raise ValueError(f"state machine placeholders left unresolved: {unresolved}")
    arn = stack.physical("RenderJobStateMachine")
    role_name = stack.physical("RenderJobStateMachineRole")
    role_arn = boto3.client("iam").get_role(RoleName=role_name)["Role"]["Arn"]
    boto3.client("stepfunctions").create_state_machine(
        name=arn.rsplit(":", 1)[1], definition=definition, roleArn=role_arn, type="STANDARD"
    )


def _join(value: Any) -> str:
    """SAM emits the definition as {"Fn::Join": ["\\n", [lines]]}; CloudFormation joins it."""
    if isinstance(value, str):
        return value
    separator, parts = value["Fn::Join"]
    return str(separator).join(_join(part) for part in parts)


def resolve_substitution(value: Any, stack: DeployedStack, lambda_client: Any) -> str:
    """DefinitionSubstitutions values: {"Fn::GetAtt": [Logical, "Arn"]} for our functions, and the
    AWS::Partition pseudo parameter for the service integrations' ARNs."""
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        logical_id = value["Fn::GetAtt"][0]
        arn: str = lambda_client.get_function(FunctionName=stack.physical(logical_id))["Configuration"]["FunctionArn"]
        return arn
    if value == {"Ref": "AWS::Partition"}:
        return partition_of(lambda_client.meta.region_name)
    if isinstance(value, str):
        return value
    raise ValueError(f"cannot resolve DefinitionSubstitutions value {value!r}")


def bucket_location(region: str) -> dict[str, Any]:
    """CreateBucket's arguments for a bucket in `region`: outside us-east-1, S3 requires the location."""
    if region == "us-east-1":
        return {}
    return {"CreateBucketConfiguration": {"LocationConstraint": region}}


def partition_of(region: str) -> str:
    """What CloudFormation's AWS::Partition is in a region: aws, aws-cn, aws-us-gov, ..."""
    return boto3.session.Session().get_partition_for_region(region)
