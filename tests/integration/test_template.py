"""template.yaml: the contract the handlers and the state machine rely on, pinned.

Three layers: the template as written (what cfn-lint and a reader see), the template as SAM translates
it (offline, aws-sam-translator), and the translated template deployed into moto's CloudFormation
(what the offline stack does), including the inbox rule routing real S3 events to the submit queue.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from cfnlint.api import ManualArgs, lint, lint_file
from moto import mock_aws

from avatar_local.stack.local_aws import bucket_location
from avatar_local.stack.sam_translate import ARTIFACT_BUCKET, code_artifacts, load_cfn_yaml, translate_template
from tests.support import TEST_REGION

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = REPO_ROOT / "template.yaml"
ASL_PATH = REPO_ROOT / "statemachine" / "render_job.asl.json"

FUNCTIONS = {
    "SubmitFunction": "functions/submit/",
    "PollFunction": "functions/poll/",
    "FinalizeFunction": "functions/finalize/",
    "ReportFailureFunction": "functions/report_failure/",
    "DeadLetterFunction": "functions/dead_letter/",
    "SplitFunction": "functions/split/",
}
# Every function reads these (avatar_pipeline.settings.Settings and Powertools).
GLOBAL_ENV_VARS = {
    "POWERTOOLS_SERVICE_NAME",
    "POWERTOOLS_METRICS_NAMESPACE",
    "POWERTOOLS_LOG_LEVEL",
    "INPUT_BUCKET",
    "OUTPUT_BUCKET",
    "JOBS_TABLE",
    "NOTIFICATION_TOPIC_ARN",
    "SEGMIND_BASE_URL",
    "SEGMIND_API_KEY_SECRET_ARN",
    "RENDER_DEADLINE_MINUTES",
    "PRESIGN_EXPIRY_SECONDS",
    "MEDIA_WAIT_SECONDS",
    "JOB_RECORD_TTL_DAYS",
    "PIPELINE_STATE_TABLE",
    "CAMPAIGNS_TABLE",
    "SEGMIND_REQUESTS_PER_MINUTE",
    "POLL_FIXED_INTERVAL_SECONDS",
    "SUBMIT_RETRY_MINUTES",
    "DAILY_SPEND_LIMIT_USD",
    "PRICE_TABLE_JSON",
}
OUTPUTS = {
    "InputBucketName",
    "OutputBucketName",
    "AccessLogBucketName",
    "DataKeyArn",
    "SubmitQueueUrl",
    "SubmitQueueArn",
    "SubmitDeadLetterQueueUrl",
    "SubmitDeadLetterQueueArn",
    "StateMachineArn",
    "JobsTableName",
    "PipelineStateTableName",
    "DashboardName",
    "NotificationTopicArn",
    "ApiKeySecretArn",
    "SubmitFunctionName",
    "PollFunctionName",
    "FinalizeFunctionName",
    "ReportFailureFunctionName",
    "DeadLetterFunctionName",
    "InboxRuleName",
    "CommonLayerArn",
    "CampaignsTableName",
    "SplitQueueUrl",
    "SplitQueueArn",
    "SplitDeadLetterQueueUrl",
    "SplitFunctionName",
    "CampaignRuleName",
}
FAKE_SECRET_ARN = f"arn:aws:secretsmanager:{TEST_REGION}:123456789012:secret:segmind-api-key-AbCdEf"


@pytest.fixture(scope="module")
def aws_env() -> Iterator[None]:
    """A region for the SAM translator and fake credentials for moto; never a real account."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_DEFAULT_REGION", TEST_REGION)
        patch.setenv("AWS_ACCESS_KEY_ID", "testing")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        patch.delenv("AWS_PROFILE", raising=False)
        patch.delenv("AWS_SESSION_TOKEN", raising=False)
        yield


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_cfn_yaml(TEMPLATE_PATH)


@pytest.fixture(scope="module")
def resources(template: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = template["Resources"]
    return found


def props(resources: dict[str, Any], logical_id: str) -> dict[str, Any]:
    properties: dict[str, Any] = resources[logical_id]["Properties"]
    return properties


def allow_statements(policies: list[Any]) -> Iterator[dict[str, Any]]:
    for policy in policies:
        if isinstance(policy, dict) and "Statement" in policy:
            yield from (s for s in policy["Statement"] if s["Effect"] == "Allow")


def role_statements(resources: dict[str, Any], logical_id: str) -> Iterator[dict[str, Any]]:
    """The Allow statements of the IAM role a function or state machine runs as (its `Role`)."""
    role_id = props(resources, logical_id)["Role"]["Fn::GetAtt"][0]
    role = resources[role_id]
    assert role["Type"] == "AWS::IAM::Role"
    assert "ManagedPolicyArns" not in role["Properties"], f"{role_id} attaches managed policies"
    yield from allow_statements([p["PolicyDocument"] for p in role["Properties"]["Policies"]])


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def dangling_transitions(machine: dict[str, Any]) -> list[str]:
    """Next/Default/StartAt targets that name no state of their (sub-)machine, branches included."""
    states: dict[str, Any] = machine["States"]
    targets = [machine["StartAt"]]
    dangling: list[str] = []
    for state in states.values():
        targets += [state[k] for k in ("Next", "Default") if k in state]
        targets += [c["Next"] for c in state.get("Choices", []) + state.get("Catch", []) if "Next" in c]
        for branch in state.get("Branches", []) + [state[k] for k in ("Iterator", "ItemProcessor") if k in state]:
            dangling += dangling_transitions(branch)
    return dangling + [t for t in targets if t not in states]


# ------------------------------------------------------------------ the template as written


# Where the template must deploy as it is: the default region, Europe, two regions opened after 2019
# (stricter S3 endpoints), and one region of each other partition (aws-cn, aws-us-gov).
LINT_REGIONS = ["us-east-1", "eu-west-1", "af-south-1", "ap-southeast-3", "cn-north-1", "us-gov-west-1"]


def test_cfn_lint_reports_nothing_in_any_partition() -> None:
    matches = lint_file(TEMPLATE_PATH, config=ManualArgs(regions=LINT_REGIONS))
    assert [str(m) for m in matches] == []


def test_every_function_runs_python312_x86_with_the_common_layer(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    globals_ = template["Globals"]["Function"]
    assert globals_["Runtime"] == "python3.12"
    assert globals_["Architectures"] == ["x86_64"]
    assert globals_["Handler"] == "app.lambda_handler"
    assert globals_["Tracing"] == "Active"
    assert globals_["Layers"] == [{"Ref": "CommonLayer"}]
    for logical_id, code_uri in FUNCTIONS.items():
        function = props(resources, logical_id)
        assert resources[logical_id]["Type"] == "AWS::Serverless::Function"
        assert function["CodeUri"] == code_uri
        # Nothing overrides the globals per function.
        assert not {"Runtime", "Architectures", "Handler", "Tracing", "Layers"} & function.keys(), logical_id
        assert (REPO_ROOT / code_uri / "app.py").is_file()


def test_layer_is_built_for_the_functions_runtime(resources: dict[str, Any]) -> None:
    layer = resources["CommonLayer"]
    assert layer["Type"] == "AWS::Serverless::LayerVersion"
    assert layer["Properties"]["ContentUri"] == "layers/common/"
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.12"]
    # Built by layers/common/Makefile, for the functions' Python and architecture (pydantic-core is
    # compiled), and without boto3/botocore, which the runtime provides.
    assert layer["Metadata"]["BuildMethod"] == "makefile"
    assert layer["Properties"]["CompatibleArchitectures"] == ["x86_64"]
    build = (REPO_ROOT / "layers/common/Makefile").read_text()
    assert "build-CommonLayer:" in build
    assert "--python-version 3.12" in build
    assert "manylinux2014_x86_64" in build
    listed = [
        line.split("#")[0].strip().lower()
        for name in ("requirements.txt", "requirements-nodeps.txt")
        for line in (REPO_ROOT / "layers/common" / name).read_text().splitlines()
    ]
    assert [entry for entry in listed if entry.startswith("boto")] == []


def test_the_layer_is_named_after_its_stack(resources: dict[str, Any]) -> None:
    """Two stacks in one account and region must not publish versions of one shared layer (SAM
    names a layer after its logical id unless told otherwise)."""
    assert props(resources, "CommonLayer")["LayerName"] == {"Fn::Sub": "${AWS::StackName}-common"}


@pytest.mark.parametrize(
    ("logical_id", "timeout", "memory"),
    [
        ("SubmitFunction", 60, 512),
        ("PollFunction", 30, 256),
        ("FinalizeFunction", 900, 1024),
        ("ReportFailureFunction", 60, 256),
    ],
)
def test_function_sizes(resources: dict[str, Any], logical_id: str, timeout: int, memory: int) -> None:
    function = props(resources, logical_id)
    assert (function["Timeout"], function["MemorySize"]) == (timeout, memory)


def test_definition_substitutions_are_exactly_the_asl_placeholders(resources: dict[str, Any]) -> None:
    machine = props(resources, "RenderJobStateMachine")
    placeholders = set(re.findall(r"\$\{([A-Za-z0-9_]+)\}", ASL_PATH.read_text(encoding="utf-8")))
    assert machine["DefinitionUri"] == "statemachine/render_job.asl.json"
    assert set(machine["DefinitionSubstitutions"]) == placeholders
    assert machine["DefinitionSubstitutions"] == {
        "Partition": {"Ref": "AWS::Partition"},
        "PollFunctionArn": {"Fn::GetAtt": ["PollFunction", "Arn"]},
        "FinalizeFunctionArn": {"Fn::GetAtt": ["FinalizeFunction", "Arn"]},
        "ReportFailureFunctionArn": {"Fn::GetAtt": ["ReportFailureFunction", "Arn"]},
    }


def test_the_definition_names_no_partition_of_its_own() -> None:
    """aws-cn and GovCloud ARNs start arn:aws-cn: / arn:aws-us-gov:, so every ARN the definition
    writes itself takes the partition from the stack (${Partition}); the functions' ARNs come whole."""
    definition = ASL_PATH.read_text(encoding="utf-8")
    arns = re.findall(r'"(arn:[^"]*)"', definition)
    assert arns, "the definition names its service integrations by ARN"
    assert [arn for arn in arns if not arn.startswith("arn:${Partition}:")] == []


def test_state_machine_definition_passes_the_step_functions_schema(resources: dict[str, Any]) -> None:
    """cfn-lint never opens a DefinitionUri file, so lint the definition inlined the way CloudFormation sees it."""
    definition = ASL_PATH.read_text(encoding="utf-8")
    for name in props(resources, "RenderJobStateMachine")["DefinitionSubstitutions"]:
        value = "aws" if name == "Partition" else f"arn:aws:lambda:us-east-1:123456789012:function:{name[:-3]}"
        definition = definition.replace("${" + name + "}", value)
    wrapper = {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Resources": {
            "Machine": {
                "Type": "AWS::StepFunctions::StateMachine",
                "Properties": {
                    "RoleArn": "arn:aws:iam::123456789012:role/render-job",
                    "Definition": json.loads(definition),
                },
            }
        },
    }
    matches = lint(json.dumps(wrapper), config=ManualArgs(regions=["us-east-1"]))
    assert [str(m) for m in matches] == []
    # The schema does not check that transitions land on a state.
    assert dangling_transitions(json.loads(definition)) == []


def test_state_machine_is_standard_traced_logged_and_invokes_only_its_three_functions(
    resources: dict[str, Any],
) -> None:
    machine = props(resources, "RenderJobStateMachine")
    assert machine["Type"] == "STANDARD"
    assert machine["Tracing"] == {"Enabled": True}
    assert machine["Logging"]["Level"] == "ERROR"
    assert machine["Logging"]["IncludeExecutionData"] is False
    log_group = machine["Logging"]["Destinations"][0]["CloudWatchLogsLogGroup"]["LogGroupArn"]
    assert props(resources, log_group["Fn::GetAtt"][0])["RetentionInDays"] > 0
    # Its role invokes exactly its three functions (unqualified, or a version/alias of them) and
    # publishes nothing: Finalize and ReportFailure notify.
    statements = list(role_statements(resources, "RenderJobStateMachine"))
    invoked = [r for s in statements if "lambda:InvokeFunction" in as_list(s["Action"]) for r in as_list(s["Resource"])]
    assert invoked == [
        ref
        for name in ("PollFunction", "FinalizeFunction", "ReportFailureFunction")
        for ref in ({"Fn::GetAtt": [name, "Arn"]}, {"Fn::Sub": f"${{{name}.Arn}}:*"})
    ]
    assert not [
        a
        for s in statements
        for a in as_list(s["Action"])
        if a.startswith(("sns:", "lambda:")) and a != "lambda:InvokeFunction"
    ]


def test_every_function_gets_the_contract_environment(template: dict[str, Any], resources: dict[str, Any]) -> None:
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    assert set(variables) >= GLOBAL_ENV_VARS
    assert variables["POWERTOOLS_SERVICE_NAME"] == "avatar-pipeline"
    assert variables["POWERTOOLS_METRICS_NAMESPACE"] == "AvatarPipeline"
    assert variables["POWERTOOLS_LOG_LEVEL"] == {"Ref": "LogLevel"}
    assert variables["SEGMIND_BASE_URL"] == {"Ref": "SegmindBaseUrl"}
    assert variables["RENDER_DEADLINE_MINUTES"] == {"Ref": "RenderDeadlineMinutes"}
    assert variables["PRESIGN_EXPIRY_SECONDS"] == {"Ref": "MediaUrlExpirySeconds"}
    assert variables["MEDIA_WAIT_SECONDS"] == {"Ref": "MediaWaitSeconds"}
    assert variables["JOB_RECORD_TTL_DAYS"] == "30"
    assert variables["SEGMIND_API_KEY_SECRET_ARN"] == {
        "Fn::If": ["CreateApiKeySecret", {"Ref": "SegmindApiKeySecret"}, {"Ref": "SegmindApiKeySecretArn"}]
    }
    assert variables["SUBMIT_RETRY_MINUTES"] == {"Ref": "SubmitRetryMinutes"}
    assert variables["DAILY_SPEND_LIMIT_USD"] == {"Ref": "DailySpendLimitUsd"}
    assert variables["PRICE_TABLE_JSON"] == {"Ref": "PriceTableJson"}
    # STATE_MACHINE_ARN only on the functions that start executions: globally it would be a cycle (the
    # machine references the others).
    assert "STATE_MACHINE_ARN" not in variables
    assert props(resources, "SubmitFunction")["Environment"]["Variables"] == {
        "STATE_MACHINE_ARN": {"Ref": "RenderJobStateMachine"},
        "SUBMIT_MAX_RECEIVES": "5",
    }
    assert props(resources, "DeadLetterFunction")["Environment"]["Variables"] == {
        "STATE_MACHINE_ARN": {"Ref": "RenderJobStateMachine"},
    }
    # Only Split hands rows to the submit queue.
    assert props(resources, "SplitFunction")["Environment"]["Variables"] == {
        "SUBMIT_QUEUE_URL": {"Ref": "SubmitQueue"},
        "SPLIT_QUEUE_ARN": {"Fn::GetAtt": ["SplitQueue", "Arn"]},
        "SAMPLE_EXPIRY_ROLE_ARN": {"Fn::GetAtt": ["SampleExpiryRole", "Arn"]},
        "SAMPLE_WAIT_DAYS": "7",
    }
    for logical_id in FUNCTIONS.keys() - {"SubmitFunction", "DeadLetterFunction", "SplitFunction"}:
        assert "Environment" not in props(resources, logical_id)


def test_submit_queue_redelivers_safely_then_dead_letters(resources: dict[str, Any]) -> None:
    queue = props(resources, "SubmitQueue")
    submit_timeout = props(resources, "SubmitFunction")["Timeout"]
    assert queue["VisibilityTimeout"] >= 6 * submit_timeout
    assert queue["SqsManagedSseEnabled"] is True
    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": ["SubmitDeadLetterQueue", "Arn"]},
        "maxReceiveCount": 5,
    }
    # The Submit function knows the same number, so a job's last receive ends it instead of the DLQ.
    submit_env = props(resources, "SubmitFunction")["Environment"]["Variables"]
    assert int(submit_env["SUBMIT_MAX_RECEIVES"]) == queue["RedrivePolicy"]["maxReceiveCount"]
    dead_letters = props(resources, "SubmitDeadLetterQueue")
    assert dead_letters["MessageRetentionPeriod"] == 14 * 24 * 3600
    assert dead_letters["SqsManagedSseEnabled"] is True


def test_submit_consumes_the_queue_in_small_partial_failure_batches(resources: dict[str, Any]) -> None:
    events = props(resources, "SubmitFunction")["Events"]
    (source,) = events.values()
    assert source["Type"] == "SQS"
    assert source["Properties"] == {
        "Queue": {"Fn::GetAtt": ["SubmitQueue", "Arn"]},
        "BatchSize": 5,
        "MaximumBatchingWindowInSeconds": 1,
        "FunctionResponseTypes": ["ReportBatchItemFailures"],
        "ScalingConfig": {"MaximumConcurrency": {"Ref": "MaxConcurrentSubmits"}},
    }


@pytest.mark.parametrize("bucket", ["InputBucket", "OutputBucket"])
def test_buckets_are_private_encrypted_and_tls_only(resources: dict[str, Any], bucket: str) -> None:
    properties = props(resources, bucket)
    assert properties["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert properties["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    # SSE-KMS with the stack's own key (bucket keys on), and server access logs to the log bucket.
    (encryption,) = properties["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert encryption["ServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "aws:kms",
        "KMSMasterKeyID": {"Fn::GetAtt": ["DataKey", "Arn"]},
    }
    assert encryption["BucketKeyEnabled"] is True
    assert properties["LoggingConfiguration"]["DestinationBucketName"] == {"Ref": "AccessLogBucket"}
    rules = properties["LifecycleConfiguration"]["Rules"]
    assert {"DaysAfterInitiation": 1} in [r.get("AbortIncompleteMultipartUpload") for r in rules]

    (policy,) = [
        r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::S3::BucketPolicy" and r["Properties"]["Bucket"] == {"Ref": bucket}
    ]
    (statement,) = policy["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Deny"
    assert statement["Principal"] == "*"
    assert statement["Action"] == "s3:*"
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert {"Fn::GetAtt": [bucket, "Arn"]} in statement["Resource"]
    assert {"Fn::Sub": f"${{{bucket}.Arn}}/*"} in statement["Resource"]


def test_input_bucket_sends_events_to_eventbridge(resources: dict[str, Any]) -> None:
    notifications = props(resources, "InputBucket")["NotificationConfiguration"]
    assert notifications == {"EventBridgeConfiguration": {"EventBridgeEnabled": True}}


def test_output_bucket_keeps_overwritten_videos_for_a_month(resources: dict[str, Any]) -> None:
    properties = props(resources, "OutputBucket")
    assert properties["VersioningConfiguration"] == {"Status": "Enabled"}
    rules = properties["LifecycleConfiguration"]["Rules"]
    assert {"NoncurrentDays": 30} in [r.get("NoncurrentVersionExpiration") for r in rules]


def test_deleting_the_stack_never_meets_a_non_empty_bucket(resources: dict[str, Any]) -> None:
    """CloudFormation cannot delete a bucket that holds objects (`sam delete` would end in
    DELETE_FAILED), and every bucket here holds some: videos, an audit trail, the inputs archived in
    processed/ and failed/. So each one is retained, with the key that decrypts it."""
    buckets = {logical_id for logical_id, r in resources.items() if r["Type"] == "AWS::S3::Bucket"}
    assert buckets == {"InputBucket", "OutputBucket", "AccessLogBucket"}
    # Their policies stay with them (TLS only; log delivery into the log bucket).
    policies = {logical_id for logical_id, r in resources.items() if r["Type"] == "AWS::S3::BucketPolicy"}
    assert {props(resources, p)["Bucket"]["Ref"] for p in policies} == buckets
    for logical_id in buckets | policies | {"DataKey"}:
        assert resources[logical_id]["DeletionPolicy"] == "Retain", logical_id
        assert resources[logical_id]["UpdateReplacePolicy"] == "Retain", logical_id


def test_archived_inputs_expire_after_the_retention_parameter(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    """processed/ and failed/ (inputs and error reports) expire after ArchiveRetentionDays, unless it
    is 0; inbox/ never expires (a job waiting there is not old, it is pending)."""
    parameter = template["Parameters"]["ArchiveRetentionDays"]
    assert (parameter["Type"], parameter["MinValue"]) == ("Number", 0)
    assert template["Conditions"]["ExpireArchivedInputs"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "ArchiveRetentionDays"}, 0]}]
    }
    rules = props(resources, "InputBucket")["LifecycleConfiguration"]["Rules"]
    expiring = {}
    for rule in rules:
        if isinstance(rule, dict) and "Fn::If" in rule:
            condition, when_set, when_zero = rule["Fn::If"]
            assert (condition, when_zero) == ("ExpireArchivedInputs", {"Ref": "AWS::NoValue"})
            assert when_set["Status"] == "Enabled"
            expiring[when_set["Prefix"]] = when_set["ExpirationInDays"]
    assert expiring == {"processed/": {"Ref": "ArchiveRetentionDays"}, "failed/": {"Ref": "ArchiveRetentionDays"}}


def test_inbox_rule_selects_job_json_files_under_inbox(resources: dict[str, Any]) -> None:
    rule = props(resources, "InboxJobCreatedRule")
    assert rule["EventPattern"] == {
        "source": ["aws.s3"],
        "detail-type": ["Object Created"],
        "detail": {
            "bucket": {"name": [{"Ref": "InputBucket"}]},
            "object": {"key": [{"wildcard": "inbox/*.json"}]},
        },
    }
    assert rule["Targets"] == [{"Id": "SubmitQueue", "Arn": {"Fn::GetAtt": ["SubmitQueue", "Arn"]}}]
    (statement,) = props(resources, "SubmitQueuePolicy")["PolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Action"] == "sqs:SendMessage"
    assert statement["Condition"] == {"ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": ["InboxJobCreatedRule", "Arn"]}}}


def test_campaign_rule_sends_campaign_files_to_the_split_queue(resources: dict[str, Any]) -> None:
    rule = props(resources, "InboxCampaignCreatedRule")
    assert rule["EventPattern"]["detail"] == {
        "bucket": {"name": [{"Ref": "InputBucket"}]},
        "object": {
            "key": [
                {"wildcard": "inbox/*.campaign.json"},
                {"wildcard": "inbox/*.approve"},
                {"wildcard": "inbox/*.reject"},
            ]
        },
    }
    assert rule["Targets"] == [{"Id": "SplitQueue", "Arn": {"Fn::GetAtt": ["SplitQueue", "Arn"]}}]
    (statement,) = props(resources, "SplitQueuePolicy")["PolicyDocument"]["Statement"]
    assert statement["Condition"] == {
        "ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": ["InboxCampaignCreatedRule", "Arn"]}}
    }


def test_split_queue_outlasts_the_split_and_dead_letters(resources: dict[str, Any]) -> None:
    queue = props(resources, "SplitQueue")
    assert queue["VisibilityTimeout"] >= 6 * props(resources, "SplitFunction")["Timeout"]
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": ["SplitDeadLetterQueue", "Arn"]}
    assert props(resources, "SplitDeadLetterQueue")["MessageRetentionPeriod"] == 14 * 24 * 3600
    (source,) = props(resources, "SplitFunction")["Events"].values()
    # One campaign per invocation: the split's time limit (and its cursor) is that campaign's.
    assert source["Properties"]["BatchSize"] == 1
    assert source["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


def test_campaigns_table_keys_a_campaign_and_its_items(resources: dict[str, Any]) -> None:
    table = props(resources, "CampaignsTable")
    assert table["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["SSESpecification"] == {"SSEEnabled": True}
    assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}


def test_jobs_table_expires_records_and_recovers_to_a_point_in_time(resources: dict[str, Any]) -> None:
    table = props(resources, "JobsTable")
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["KeySchema"] == [{"AttributeName": "job_id", "KeyType": "HASH"}]
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert table["SSESpecification"] == {"SSEEnabled": True}
    (index,) = table["GlobalSecondaryIndexes"]
    assert index["IndexName"] == "status-updated_at-index"
    assert index["KeySchema"] == [
        {"AttributeName": "status", "KeyType": "HASH"},
        {"AttributeName": "updated_at", "KeyType": "RANGE"},
    ]
    assert index["Projection"] == {"ProjectionType": "ALL"}
    types = {a["AttributeName"]: a["AttributeType"] for a in table["AttributeDefinitions"]}
    assert types == {"job_id": "S", "status": "S", "updated_at": "S"}


def test_function_policies_name_every_action(resources: dict[str, Any]) -> None:
    for logical_id in FUNCTIONS:
        assert "Policies" not in props(resources, logical_id), f"{logical_id}: SAM would add managed policies"
        for statement in role_statements(resources, logical_id):
            for action in as_list(statement["Action"]):
                assert "*" not in action, f"{logical_id}: wildcard action {action}"
            # X-Ray's trace actions accept no resource; everything else is named.
            if statement["Resource"] == "*":
                assert {a.split(":")[0] for a in as_list(statement["Action"])} == {"xray"}, statement.get("Sid")


def test_only_submit_and_dead_letter_start_render_jobs(resources: dict[str, Any]) -> None:
    """Submit starts them; DeadLetter only resumes a job Segmind accepted whose execution never started."""
    starters = {
        logical_id
        for logical_id in FUNCTIONS
        for statement in role_statements(resources, logical_id)
        if "states:StartExecution" in as_list(statement["Action"])
    }
    assert starters == {"SubmitFunction", "DeadLetterFunction"}


@pytest.mark.parametrize(
    ("parameter", "value", "accepted"),
    [
        ("SegmindApiKeySecretArn", "", True),
        ("SegmindApiKeySecretArn", FAKE_SECRET_ARN, True),
        ("SegmindApiKeySecretArn", "segmind-api-key", False),
        ("SegmindBaseUrl", "https://api.segmind.com", True),
        ("SegmindBaseUrl", "http://127.0.0.1:8765", True),
        ("SegmindBaseUrl", "http://localhost", True),
        ("SegmindBaseUrl", "http://api.segmind.com", False),
        ("SegmindBaseUrl", "http://127.0.0.1.example.com", False),
        ("NotificationEmail", "", True),
        ("NotificationEmail", "ops@example.com", True),
        ("NotificationEmail", "not-an-address", False),
    ],
)
def test_parameter_patterns(template: dict[str, Any], parameter: str, value: str, accepted: bool) -> None:
    pattern = template["Parameters"][parameter]["AllowedPattern"]
    # CloudFormation matches the whole value (Java's String.matches).
    assert (re.fullmatch(pattern, value) is not None) is accepted


def test_numeric_parameters_keep_inside_the_providers_limits(template: dict[str, Any]) -> None:
    parameters = template["Parameters"]
    # Segmind keeps results for an hour: the deadline leaves time to copy the video.
    assert parameters["RenderDeadlineMinutes"]["MaxValue"] <= 55
    assert parameters["MediaUrlExpirySeconds"]["MaxValue"] <= 3600
    # SQS event sources accept a MaximumConcurrency of 2 at least.
    assert parameters["MaxConcurrentSubmits"]["MinValue"] == 2


def test_outputs(template: dict[str, Any]) -> None:
    outputs = template["Outputs"]
    assert set(outputs) == OUTPUTS
    assert not [name for name, output in outputs.items() if "Export" in output]


# ------------------------------------------------------------------ the template as SAM translates it


@pytest.fixture(scope="module")
def translated(aws_env: None) -> dict[str, Any]:
    return translate_template(TEMPLATE_PATH, {"SegmindApiKeySecretArn": FAKE_SECRET_ARN})


def of_type(template: dict[str, Any], resource_type: str) -> dict[str, Any]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == resource_type}


def test_translation_has_the_four_functions_on_the_layer(translated: dict[str, Any]) -> None:
    functions = of_type(translated, "AWS::Lambda::Function")
    assert set(functions) == set(FUNCTIONS)
    (layer_id,) = of_type(translated, "AWS::Lambda::LayerVersion")
    for function in functions.values():
        properties = function["Properties"]
        assert properties["Runtime"] == "python3.12"
        assert properties["Handler"] == "app.lambda_handler"
        assert properties["Layers"] == [{"Ref": layer_id}]
        assert properties["TracingConfig"] == {"Mode": "Active"}
        assert properties["Code"]["S3Bucket"] == ARTIFACT_BUCKET
    assert len(code_artifacts(translated)) == len(FUNCTIONS) + 1
    (layer,) = of_type(translated, "AWS::Lambda::LayerVersion").values()
    assert layer["Properties"]["LayerName"] == {"Fn::Sub": "${AWS::StackName}-common"}


def test_translation_maps_the_queue_to_submit_with_partial_batch_failures(translated: dict[str, Any]) -> None:
    mappings = {
        m["Properties"]["FunctionName"]["Ref"]: m["Properties"]
        for m in of_type(translated, "AWS::Lambda::EventSourceMapping").values()
    }
    assert set(mappings) == {"SubmitFunction", "DeadLetterFunction", "SplitFunction"}
    properties = mappings["SubmitFunction"]
    assert properties["EventSourceArn"] == {"Fn::GetAtt": ["SubmitQueue", "Arn"]}
    assert properties["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert properties["ScalingConfig"] == {"MaximumConcurrency": {"Ref": "MaxConcurrentSubmits"}}
    assert properties["BatchSize"] == 5


def test_the_dead_letter_queue_feeds_the_function_that_ends_its_jobs(translated: dict[str, Any]) -> None:
    """Whatever exhausts the submit queue's receives ends its job (a report, a notification): the
    DeadLetter function consumes the DLQ, record by record."""
    mappings = {
        m["Properties"]["FunctionName"]["Ref"]: m["Properties"]
        for m in of_type(translated, "AWS::Lambda::EventSourceMapping").values()
    }
    properties = mappings["DeadLetterFunction"]
    assert properties["EventSourceArn"] == {"Fn::GetAtt": ["SubmitDeadLetterQueue", "Arn"]}
    assert properties["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    environment = translated["Resources"]["DeadLetterFunction"]["Properties"]["Environment"]["Variables"]
    assert environment["STATE_MACHINE_ARN"] == {"Ref": "RenderJobStateMachine"}


def test_translation_inlines_the_definition_and_keeps_the_substitutions(translated: dict[str, Any]) -> None:
    properties = translated["Resources"]["RenderJobStateMachine"]["Properties"]
    assert "DefinitionS3Location" not in properties
    assert set(properties["DefinitionSubstitutions"]) == {
        "Partition",
        "PollFunctionArn",
        "FinalizeFunctionArn",
        "ReportFailureFunctionArn",
    }
    assert properties["TracingConfiguration"] == {"Enabled": True}


# ------------------------------------------------------------------ the translated template in moto


def _placeholder_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", "def lambda_handler(event, context):\n    return None\n")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def moto_stack(translated: dict[str, Any]) -> Iterator[dict[str, str]]:
    """The stack deployed into moto's CloudFormation: logical id -> physical id, plus the outputs."""
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=ARTIFACT_BUCKET, **bucket_location(TEST_REGION))
        for bucket, key in code_artifacts(translated):
            s3.put_object(Bucket=bucket, Key=key, Body=_placeholder_zip())
        cloudformation = boto3.client("cloudformation")
        cloudformation.create_stack(
            StackName="avatar-pipeline",
            TemplateBody=json.dumps(translated),
            Parameters=[{"ParameterKey": "SegmindApiKeySecretArn", "ParameterValue": FAKE_SECRET_ARN}],
            Capabilities=["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"],
        )
        (stack,) = cloudformation.describe_stacks(StackName="avatar-pipeline")["Stacks"]
        assert stack["StackStatus"] == "CREATE_COMPLETE"
        summaries = cloudformation.list_stack_resources(StackName="avatar-pipeline")["StackResourceSummaries"]
        found = {s["LogicalResourceId"]: s.get("PhysicalResourceId", "") for s in summaries}
        found.update({f"Output:{o['OutputKey']}": o["OutputValue"] for o in stack.get("Outputs", [])})
        yield found


@pytest.mark.filterwarnings("ignore:Tried to parse AWS.* not supported by moto:UserWarning")
def test_moto_stack_resolves_the_functions_environment(moto_stack: dict[str, str]) -> None:
    configuration = boto3.client("lambda").get_function_configuration(FunctionName=moto_stack["SubmitFunction"])
    variables = configuration["Environment"]["Variables"]
    assert set(variables) == GLOBAL_ENV_VARS | {"STATE_MACHINE_ARN", "SUBMIT_MAX_RECEIVES"}
    assert variables["STATE_MACHINE_ARN"] == moto_stack["RenderJobStateMachine"]
    assert variables["INPUT_BUCKET"] == moto_stack["InputBucket"]
    assert variables["SEGMIND_API_KEY_SECRET_ARN"] == FAKE_SECRET_ARN
    assert moto_stack["Output:SubmitFunctionName"] == moto_stack["SubmitFunction"]
    assert moto_stack["Output:StateMachineArn"] == moto_stack["RenderJobStateMachine"]


@pytest.mark.filterwarnings("ignore:Tried to parse AWS.* not supported by moto:UserWarning")
def test_moto_inbox_rule_queues_only_job_files(moto_stack: dict[str, str]) -> None:
    """Given the bucket's EventBridge notifications (which moto's CloudFormation does not apply),
    when files land inside and outside inbox/, then only inbox/**.json reaches the submit queue."""
    s3 = boto3.client("s3")
    bucket = moto_stack["InputBucket"]
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={"EventBridgeConfiguration": {}})
    keys = [
        "inbox/top.json",
        "inbox/campaign-a/alice.json",
        "inbox/alice.png",
        "processed/old.json",
        "inbox.json",
        "inbox/shop/spring.campaign.json",
        "processed/shop/spring.campaign.json",
        "inbox/shop/spring.approve",
    ]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=b"{}")

    sqs = boto3.client("sqs")
    queued: list[str] = []
    while messages := sqs.receive_message(QueueUrl=moto_stack["SubmitQueue"], MaxNumberOfMessages=10).get(
        "Messages", []
    ):
        for message in messages:
            queued.append(json.loads(message["Body"])["detail"]["object"]["key"])
            sqs.delete_message(QueueUrl=moto_stack["SubmitQueue"], ReceiptHandle=message["ReceiptHandle"])
    # The campaign file reaches Submit too (which ignores it by its key: keys.is_job_file_key).
    assert sorted(queued) == ["inbox/campaign-a/alice.json", "inbox/shop/spring.campaign.json", "inbox/top.json"]
    split: list[str] = []
    while messages := sqs.receive_message(QueueUrl=moto_stack["SplitQueue"], MaxNumberOfMessages=10).get(
        "Messages", []
    ):
        for message in messages:
            split.append(json.loads(message["Body"])["detail"]["object"]["key"])
            sqs.delete_message(QueueUrl=moto_stack["SplitQueue"], ReceiptHandle=message["ReceiptHandle"])
    assert sorted(split) == ["inbox/shop/spring.approve", "inbox/shop/spring.campaign.json"]


@pytest.mark.filterwarnings("ignore:Tried to parse AWS.* not supported by moto:UserWarning")
def test_moto_deletes_the_stack_and_keeps_every_bucket(moto_stack: dict[str, str], translated: dict[str, Any]) -> None:
    """Given a second stack of the template with a video delivered and its input bucket emptied (the
    archive expired), when the stack is deleted, then the deletion completes and all three buckets are
    still there, the video too. (moto does not refuse to delete a non-empty bucket as CloudFormation
    does, it quietly keeps it; so the input bucket is left empty here, which only Retain keeps.)"""
    cloudformation = boto3.client("cloudformation")
    stack_id = cloudformation.create_stack(
        StackName="avatar-pipeline-doomed",
        TemplateBody=json.dumps(translated),
        Parameters=[{"ParameterKey": "SegmindApiKeySecretArn", "ParameterValue": FAKE_SECRET_ARN}],
        Capabilities=["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"],
    )["StackId"]
    summaries = cloudformation.list_stack_resources(StackName=stack_id)["StackResourceSummaries"]
    bucket_of = {
        s["LogicalResourceId"]: s["PhysicalResourceId"] for s in summaries if s["LogicalResourceId"].endswith("Bucket")
    }
    s3 = boto3.client("s3")
    s3.put_object(Bucket=bucket_of["OutputBucket"], Key="videos/alice.mp4", Body=b"video")

    cloudformation.delete_stack(StackName=stack_id)

    (stack,) = cloudformation.describe_stacks(StackName=stack_id)["Stacks"]
    assert stack["StackStatus"] == "DELETE_COMPLETE"
    assert set(bucket_of) == {"InputBucket", "OutputBucket", "AccessLogBucket"}
    existing = {b["Name"] for b in s3.list_buckets()["Buckets"]}
    assert set(bucket_of.values()) <= existing
    assert s3.head_object(Bucket=bucket_of["OutputBucket"], Key="videos/alice.mp4")["ContentLength"] == 5
