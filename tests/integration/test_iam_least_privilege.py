"""Least privilege, pinned: every role grants exactly what its function's code calls, on what it touches.

The grants are read from the template as SAM translates it (what CloudFormation deploys), and compared
with an explicit table of the AWS actions each function's code makes, derived by reading
avatar_pipeline/adapters/*.py and domain/*.py (call sites cited per row). A scan of the package's
source keeps the table honest: a new boto3 call fails here until it is mapped to its IAM action and
granted to the function that makes it.

Beyond the code's own calls a role needs what the Lambda platform does with it (log delivery, X-Ray,
the SQS event source mapping) and the KMS use that S3, SNS and Secrets Manager make on its behalf;
those rows are listed apart and derived from the same table where they can be.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore
import botocore.session
import pytest

from avatar_local.stack.sam_translate import load_cfn_yaml, translate_template
from tests.support import TEST_REGION

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = REPO_ROOT / "template.yaml"
PACKAGE = REPO_ROOT / "layers" / "common" / "avatar_pipeline"
CHECKOV = REPO_ROOT / ".venv-checkov" / "bin" / "checkov"

API_KEY_SECRET = {"Fn::If": ["CreateApiKeySecret", {"Ref": "SegmindApiKeySecret"}, {"Ref": "SegmindApiKeySecretArn"}]}
# Resource types whose Ref is an ARN (for the others, Ref is a name and cannot stand in a policy).
REF_IS_ARN = {"AWS::SNS::Topic", "AWS::StepFunctions::StateMachine", "AWS::SecretsManager::Secret"}

# ------------------------------------------------------------------ what each function's code calls
# action -> the resources it is granted on, as labels: "InputBucket" is the bucket's ARN, "InputBucket/*"
# its objects, "ApiKeySecret" the secret the stack creates or is given, "event-bus/default" the
# account's default event bus (EVENT_BUS_NAME's default; the template sets no other).
CODE_ACTIONS: dict[str, dict[str, set[str]]] = {
    "SubmitFunction": {
        # storage.py S3Storage.head (head_object), .read / .read_prefix (get_object, ranged),
        # .presign_get (generate_presigned_url "get_object": Segmind's GET is authorised as this role),
        # .copy (copy_object reads the source) - domain/submit.py submit_job, _check_media, _post_once,
        # and domain/inbox.py archive_inputs / _media_named_by when a rejected job moves to failed/;
        # storage.py .head of an earlier job's manifest in the output bucket - _claim_is_stale.
        "s3:GetObject": {"InputBucket/*", "OutputBucket/*"},
        # storage.py .put_json (the error report, domain/failure.py fail_job) and .copy (the target);
        # .put_file (a campaign's report, campaigns/complete.py write_report).
        "s3:PutObject": {"InputBucket/*", "OutputBucket/campaigns/*"},
        # storage.py .move (delete_object after the copy) - domain/inbox.py archive_inputs.
        "s3:DeleteObject": {"InputBucket/*"},
        # storage.py .copy: CopyObject carries the source's tags (tagging directive COPY by default).
        "s3:GetObjectTagging": {"InputBucket/*"},
        "s3:PutObjectTagging": {"InputBucket/*"},
        # storage.py .iter_folder (list_objects_v2) - domain/inbox.py _named_by_unreceived_job_files. Also
        # makes a missing object answer 404 rather than 403 (S3Storage.head relies on that).
        "s3:ListBucket": {"InputBucket"},
        # jobs_table.py JobsTable.get (get_item) - submit_job, _post_once, fail_job;
        # render_stats.py RenderStatsTable.get - domain/submit.py _start_execution (the first wait);
        # output_claims.py .holder - domain/intake.py _claim_output.
        "dynamodb:GetItem": {"JobsTable", "PipelineStateTable", "CampaignsTable"},
        # jobs_table.py .claim_submission and .save_terminal (put_item) - _post_once, fail_job;
        # output_claims.py .claim / .take_over - domain/intake.py _claim_output.
        "dynamodb:PutItem": {"JobsTable", "PipelineStateTable"},
        # jobs_table.py .mark_submitted, .mark_rendering, .claim_notification, .release_notification;
        # request_budget.py RequestBudget.try_acquire - domain/submit.py _wait_for_submit_token;
        # media_users.py .register / .release (the set of users) - intake, and fail_job's archive.
        "dynamodb:UpdateItem": {"JobsTable", "PipelineStateTable", "CampaignsTable"},
        # campaigns/complete.py end_row, from domain/closing.py (a campaign row's job ends): campaigns_table.py
        # .end_row (transact_write_items: Update items), .get, .claim_report_refresh / .claim_completion /
        # .confirm_completion (update_item), .rows (query of the index rows_in_order) / .media (query);
        # write_report (put_file) in the output bucket's campaigns/ folder.
        "dynamodb:Query": {"CampaignsTable", "CampaignsTable/index/rows_in_order"},
        # jobs_table.py .release_submission (delete_item) - _post_once after a POST that never left;
        # output_claims.py .release - fail_job.
        "dynamodb:DeleteItem": {"JobsTable", "PipelineStateTable"},
        # executions.py ExecutionStarter.start (start_execution) - domain/submit.py _start_execution.
        "states:StartExecution": {"RenderJobStateMachine"},
        # notifier.py SnsNotifier.publish - domain/notify.py publish_once, from fail_job.
        "sns:Publish": {"NotificationTopic"},
        # events.py CompletionEvents.publish (put_events) - domain/notify.py publish_once.
        "events:PutEvents": {"event-bus/default"},
        # queue.py RetryScheduler.retry_in / ._queue_url - functions/submit/app.py record_handler.
        "sqs:ChangeMessageVisibility": {"SubmitQueue"},
        "sqs:GetQueueUrl": {"SubmitQueue"},
        # queue.py RetryScheduler.requeue (send_message with a delay) - a rate-limited submit.
        "sqs:SendMessage": {"SubmitQueue"},
        # secrets.py ApiKeySource (Powertools parameters.get_secret) - the provider client's x-api-key.
        "secretsmanager:GetSecretValue": {"ApiKeySecret"},
    },
    "DeadLetterFunction": {
        # domain/dead_letter.py: storage.py .head / .read (the job file), and fail_job's archive_inputs
        # and report (copy, move with an ETag-conditional delete, put_json, iter_folder).
        "s3:GetObject": {"InputBucket/*"},
        "s3:PutObject": {"InputBucket/*", "OutputBucket/campaigns/*"},
        "s3:DeleteObject": {"InputBucket/*"},
        "s3:GetObjectTagging": {"InputBucket/*"},
        "s3:PutObjectTagging": {"InputBucket/*"},
        "s3:ListBucket": {"InputBucket"},
        # jobs_table.py .get, .save_terminal, .mark_rendering, .claim/release_notification;
        # render_stats.py .get (continue_existing -> _start_execution); media_users.py .release;
        # output_claims.py .release - fail_job.
        "dynamodb:GetItem": {"JobsTable", "PipelineStateTable", "CampaignsTable"},
        "dynamodb:PutItem": {"JobsTable"},
        "dynamodb:UpdateItem": {"JobsTable", "PipelineStateTable", "CampaignsTable"},
        "dynamodb:DeleteItem": {"PipelineStateTable"},
        # campaigns/complete.py end_row, from domain/closing.py (a campaign row's job ends): campaigns_table.py
        # .end_row (transact_write_items: Update items), .get, .claim_report_refresh / .claim_completion /
        # .confirm_completion (update_item), .rows (query of the index rows_in_order) / .media (query);
        # write_report (put_file) in the output bucket's campaigns/ folder.
        "dynamodb:Query": {"CampaignsTable", "CampaignsTable/index/rows_in_order"},
        # executions.py ExecutionStarter.start - a job Segmind accepted whose execution never started.
        "states:StartExecution": {"RenderJobStateMachine"},
        "sns:Publish": {"NotificationTopic"},
        "events:PutEvents": {"event-bus/default"},
        # queue.py RetryScheduler.retry_in - functions/dead_letter/app.py (a message that is no job event).
        "sqs:ChangeMessageVisibility": {"SubmitDeadLetterQueue"},
        "sqs:GetQueueUrl": {"SubmitDeadLetterQueue"},
    },
    "PollFunction": {
        # jobs_table.py .record_poll (update_item) - domain/poll.py check_status; request_budget.py
        # try_acquire and render_stats.py .record (conditional update) - the same.
        "dynamodb:UpdateItem": {"JobsTable", "PipelineStateTable"},
        # render_stats.py .get and .record (put_item for a class seen the first time).
        "dynamodb:GetItem": {"PipelineStateTable"},
        "dynamodb:PutItem": {"PipelineStateTable"},
        # secrets.py ApiKeySource - provider/client.py SegmindClient.status.
        "secretsmanager:GetSecretValue": {"ApiKeySecret"},
    },
    "FinalizeFunction": {
        # domain/inbox.py archive_inputs: storage.py .read (sibling job files), .copy, .move (a
        # delete_object with IfMatch, the ETag the job saw, needs s3:GetObject as well); storage.py .read
        # of the job's manifest - domain/finalize.py _delivered_before.
        "s3:GetObject": {"InputBucket/*", "OutputBucket/*"},
        # storage.py .copy target (inputs to processed/); transfer.py _PartWriter put_object,
        # create_multipart_upload, upload_part, complete_multipart_upload (the video and captions);
        # storage.py .put_json (the manifest) - domain/finalize.py finalize_job.
        "s3:PutObject": {"InputBucket/*", "OutputBucket/*"},
        # transfer.py _PartWriter.abort (abort_multipart_upload) when a streaming copy fails, and
        # StreamingCopier._abort_stale_uploads (list_multipart_uploads) for a copy killed mid-way.
        "s3:AbortMultipartUpload": {"OutputBucket/*"},
        "s3:ListBucketMultipartUploads": {"OutputBucket"},
        "s3:DeleteObject": {"InputBucket/*"},
        "s3:GetObjectTagging": {"InputBucket/*"},
        "s3:PutObjectTagging": {"InputBucket/*"},
        # storage.py .iter_folder - domain/inbox.py _named_by_unreceived_job_files.
        "s3:ListBucket": {"InputBucket"},
        # jobs_table.py .get, .save_terminal (put_item), .claim/release_notification (update_item).
        "dynamodb:GetItem": {"JobsTable", "CampaignsTable"},
        "dynamodb:PutItem": {"JobsTable"},
        # request_budget.py try_acquire - domain/finalize.py (a token before fetching the result);
        # media_users.py .release - domain/inbox.py archive_inputs.
        "dynamodb:UpdateItem": {"JobsTable", "PipelineStateTable", "CampaignsTable"},
        # campaigns/complete.py end_row, from domain/closing.py (a campaign row's job ends): see SubmitFunction.
        "dynamodb:Query": {"CampaignsTable", "CampaignsTable/index/rows_in_order"},
        # notifier.py SnsNotifier.publish, events.py CompletionEvents.publish - domain/notify.py publish_once.
        "sns:Publish": {"NotificationTopic"},
        "events:PutEvents": {"event-bus/default"},
        # secrets.py ApiKeySource - provider/client.py SegmindClient.result.
        "secretsmanager:GetSecretValue": {"ApiKeySecret"},
    },
    "SplitFunction": {
        # campaigns/split.py: storage.py .head / .read (the campaign file), .open_stream (the rows file),
        # .read_prefix (sniffing media); campaigns/complete.py _archive / fail_campaign: .move (copy with
        # tags, ETag-conditional delete), .put_json (an invalid campaign's error report).
        "s3:GetObject": {"InputBucket/*"},
        "s3:PutObject": {"InputBucket/*", "OutputBucket/campaigns/*"},
        "s3:DeleteObject": {"InputBucket/*"},
        "s3:GetObjectTagging": {"InputBucket/*"},
        "s3:PutObjectTagging": {"InputBucket/*"},
        # A missing rows file or photo answers 404 rather than 403 (S3Storage.head relies on that).
        "s3:ListBucket": {"InputBucket"},
        # campaigns_table.py: .get (get_item), .start_run (put_item), .finish_split / .claim_completion /
        # .confirm_completion (update_item), .enter_row (transact_write_items: Put + Update), .add_media
        # (batch_writer), .rows (query of the index rows_in_order) / .media (query).
        "dynamodb:GetItem": {"CampaignsTable"},
        "dynamodb:PutItem": {"CampaignsTable"},
        "dynamodb:UpdateItem": {"CampaignsTable"},
        "dynamodb:Query": {"CampaignsTable", "CampaignsTable/index/rows_in_order"},
        "dynamodb:BatchWriteItem": {"CampaignsTable"},
        # campaign_outbox.py SqsRowQueue.send (send_message_batch) - rows to the submit queue; queue.py
        # RetryScheduler.requeue (send_message, ._queue_url) - the split's cursor back on its own queue.
        "sqs:SendMessage": {"SubmitQueue", "SplitQueue"},
        "sqs:GetQueueUrl": {"SplitQueue"},
        # sample_deadlines.py SchedulerDeadlines.set (create_schedule, which passes SampleExpiryRole) -
        # split.py _bound_the_sample.
        "scheduler:CreateSchedule": {"schedule/default/*"},
        "iam:PassRole": {"SampleExpiryRole"},
        # campaign_outbox.py CampaignAnnouncer.publish - complete.py try_complete, fail_campaign.
        "sns:Publish": {"NotificationTopic"},
        "events:PutEvents": {"event-bus/default"},
    },
    "ReportFailureFunction": {
        # domain/failure.py fail_job: archive_inputs (read, copy, move, list), put_json (the report).
        # GetObject also authorises move's conditional delete_object (IfMatch).
        "s3:GetObject": {"InputBucket/*"},
        "s3:PutObject": {"InputBucket/*", "OutputBucket/campaigns/*"},
        "s3:DeleteObject": {"InputBucket/*"},
        "s3:GetObjectTagging": {"InputBucket/*"},
        "s3:PutObjectTagging": {"InputBucket/*"},
        "s3:ListBucket": {"InputBucket"},
        # jobs_table.py .get, .save_terminal (put_item), .claim/release_notification (update_item);
        # media_users.py .release (update_item) and output_claims.py .release (delete_item) - fail_job.
        "dynamodb:GetItem": {"JobsTable", "CampaignsTable"},
        "dynamodb:PutItem": {"JobsTable"},
        "dynamodb:UpdateItem": {"JobsTable", "PipelineStateTable", "CampaignsTable"},
        # campaigns/complete.py end_row, from domain/closing.py (a campaign row's job ends): see SubmitFunction.
        "dynamodb:Query": {"CampaignsTable", "CampaignsTable/index/rows_in_order"},
        "dynamodb:DeleteItem": {"PipelineStateTable"},
        # notifier.py SnsNotifier.publish, events.py CompletionEvents.publish - domain/notify.py
        # publish_once. No provider call, no secret.
        "sns:Publish": {"NotificationTopic"},
        "events:PutEvents": {"event-bus/default"},
    },
}

LOG_GROUPS = {
    "SubmitFunction": "SubmitFunctionLogGroup",
    "PollFunction": "PollFunctionLogGroup",
    "FinalizeFunction": "FinalizeFunctionLogGroup",
    "ReportFailureFunction": "ReportFailureFunctionLogGroup",
    "DeadLetterFunction": "DeadLetterFunctionLogGroup",
    "SplitFunction": "SplitFunctionLogGroup",
}
# What the Lambda service does with a role, whatever the code: write the function's own log group
# (created by the template, so no CreateLogGroup), and send X-Ray segments (Tracing: Active).
TRACE_ACTIONS = {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}
# An SQS event source mapping polls its queue with the function's role.
EVENT_SOURCE_ACTIONS = {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"}
EVENT_SOURCES = {
    "SubmitFunction": "SubmitQueue",
    "DeadLetterFunction": "SubmitDeadLetterQueue",
    "SplitFunction": "SplitQueue",
}
# Stores encrypted with the stack's DataKey, and the service that uses the key for the caller.
KEY_USERS = {"InputBucket": "s3", "OutputBucket": "s3", "NotificationTopic": "sns", "ApiKeySecret": "secretsmanager"}
WRITES = {"s3:PutObject", "sns:Publish"}

STATE_MACHINE_TRACE_ACTIONS = {
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "xray:GetSamplingRules",
    "xray:GetSamplingTargets",
}
# Step Functions' documented policy for delivering execution logs to CloudWatch Logs.
LOG_DELIVERY_ACTIONS = {
    "logs:CreateLogDelivery",
    "logs:GetLogDelivery",
    "logs:UpdateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:DescribeResourcePolicies",
    "logs:DescribeLogGroups",
}
# The only actions granted on "*": they support no resource-level permissions (Service Authorization
# Reference: X-Ray's trace and sampling actions, CloudWatch Logs' log-delivery and resource-policy actions).
STAR_ONLY_ACTIONS = STATE_MACHINE_TRACE_ACTIONS | LOG_DELIVERY_ACTIONS

# ------------------------------------------------------------------ boto3 operations -> IAM actions
# Every AWS call the package makes on a client attribute (self._s3, self._table, ...), with the IAM
# actions it needs. The scan below fails on a call that is not listed (or listed but no longer made).
CLIENT_ATTRIBUTES = {
    "_s3": "s3",
    "_sfn": "states",
    "_sns": "sns",
    "_sqs": "sqs",
    "_table": "dynamodb",
    "_events": "events",
    "_dynamodb": "dynamodb",
    "_scheduler": "scheduler",
}
OPERATIONS: dict[tuple[str, str], set[str]] = {
    ("s3", "head_object"): {"s3:GetObject"},
    ("s3", "get_object"): {"s3:GetObject"},
    ("s3", "list_objects_v2"): {"s3:ListBucket"},
    ("s3", "generate_presigned_url"): {"s3:GetObject"},  # only ever "get_object" URLs
    ("s3", "put_object"): {"s3:PutObject"},
    ("s3", "copy_object"): {"s3:GetObject", "s3:PutObject", "s3:GetObjectTagging", "s3:PutObjectTagging"},
    ("s3", "delete_object"): {"s3:DeleteObject"},
    ("s3", "create_multipart_upload"): {"s3:PutObject"},
    ("s3", "upload_part"): {"s3:PutObject"},
    ("s3", "complete_multipart_upload"): {"s3:PutObject"},
    ("s3", "abort_multipart_upload"): {"s3:AbortMultipartUpload"},
    ("s3", "list_multipart_uploads"): {"s3:ListBucketMultipartUploads"},
    ("states", "start_execution"): {"states:StartExecution"},
    ("sns", "publish"): {"sns:Publish"},
    ("events", "put_events"): {"events:PutEvents"},
    ("sqs", "send_message"): {"sqs:SendMessage"},
    ("sqs", "send_message_batch"): {"sqs:SendMessage"},
    ("scheduler", "create_schedule"): {"scheduler:CreateSchedule", "iam:PassRole"},
    ("sqs", "change_message_visibility"): {"sqs:ChangeMessageVisibility"},
    ("sqs", "get_queue_url"): {"sqs:GetQueueUrl"},
    ("dynamodb", "get_item"): {"dynamodb:GetItem"},
    ("dynamodb", "put_item"): {"dynamodb:PutItem"},
    ("dynamodb", "update_item"): {"dynamodb:UpdateItem"},
    ("dynamodb", "delete_item"): {"dynamodb:DeleteItem"},
    ("dynamodb", "query"): {"dynamodb:Query"},
    # IAM has no TransactWriteItems action: each item is authorised as its own Put/Update.
    ("dynamodb", "transact_write_items"): {"dynamodb:PutItem", "dynamodb:UpdateItem"},
}
# Calls made inside libraries the package hands a name to.
LIBRARY_CALLS = {
    # secrets.py: aws_lambda_powertools.utilities.parameters.get_secret -> GetSecretValue.
    "get_secret": {"secretsmanager:GetSecretValue"},
    # campaigns_table.py: Table.batch_writer -> BatchWriteItem.
    "batch_writer": {"dynamodb:BatchWriteItem"},
}
KNOWN_SERVICES = {"s3", "sns", "sqs", "dynamodb", "stepfunctions", "events", "scheduler"}


# ------------------------------------------------------------------ reading the translated template


@pytest.fixture(scope="module")
def translated() -> Iterator[dict[str, Any]]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_DEFAULT_REGION", TEST_REGION)
        yield translate_template(TEMPLATE_PATH, {})


@pytest.fixture(scope="module")
def resources(translated: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = translated["Resources"]
    return found


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def label(expression: Any, resources: dict[str, Any]) -> str:
    """A policy Resource as a label (see CODE_ACTIONS); anything not naming a resource fails."""
    if expression == "*":
        return "*"
    if expression == API_KEY_SECRET:
        return "ApiKeySecret"
    if isinstance(expression, dict) and len(expression) == 1:
        ((function, argument),) = expression.items()
        if function == "Fn::GetAtt" and argument[1] == "Arn":
            return str(argument[0])
        if function == "Ref" and resources.get(argument, {}).get("Type") in REF_IS_ARN:
            return str(argument)
        if function == "Fn::Sub" and isinstance(argument, str):
            match = re.fullmatch(r"\$\{(\w+)\.Arn\}(/\*|:\*|/[\w-]+/\*|/index/\w+)", argument)
            if match:
                return match[1] + match[2]
            match = re.fullmatch(
                r"arn:\$\{AWS::Partition\}:(?:events|scheduler):\$\{AWS::Region\}:\$\{AWS::AccountId\}:"
                r"(event-bus/[\w.-]+|schedule/[\w.-]+/\*)",
                argument,
            )
            if match:
                return match[1]
    raise AssertionError(f"resource {expression!r} names no resource of the stack by reference")


def role_of(resources: dict[str, Any], logical_id: str) -> dict[str, Any]:
    properties = resources[logical_id]["Properties"]
    role_arn = properties.get("Role") or properties["RoleArn"]  # Lambda: Role; Step Functions: RoleArn
    assert set(role_arn) == {"Fn::GetAtt"}, f"{logical_id} must run as a role of this template"
    role: dict[str, Any] = resources[role_arn["Fn::GetAtt"][0]]
    assert role["Type"] == "AWS::IAM::Role"
    return role


def statements_of(role: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for policy in role["Properties"].get("Policies", []) for s in policy["PolicyDocument"]["Statement"]]


def grants(resources: dict[str, Any], logical_id: str) -> dict[str, set[str]]:
    """action -> resource labels, over every statement of the role (all must be plain Allows)."""
    granted: dict[str, set[str]] = {}
    for statement in statements_of(role_of(resources, logical_id)):
        assert statement["Effect"] == "Allow"
        assert not {"NotAction", "NotResource", "NotPrincipal"} & statement.keys()
        labels = {label(r, resources) for r in as_list(statement["Resource"])}
        for action in as_list(statement["Action"]):
            granted.setdefault(action, set()).update(labels)
    return granted


def expected_grants(function: str) -> dict[str, set[str]]:
    """The code's table plus what the platform and the services' KMS use need for this function."""
    code = CODE_ACTIONS[function]
    expected = {action: set(labels) for action, labels in code.items()}
    for action in ("logs:CreateLogStream", "logs:PutLogEvents"):
        expected[action] = {LOG_GROUPS[function]}
    for action in TRACE_ACTIONS:
        expected[action] = {"*"}
    if function in EVENT_SOURCES:
        for action in EVENT_SOURCE_ACTIONS:
            expected[action] = {EVENT_SOURCES[function]}
    touched = {target.split("/")[0] for labels in code.values() for target in labels}
    if touched & KEY_USERS.keys():
        # S3, SNS and Secrets Manager call KMS as the caller: Decrypt to read (multipart uploads too),
        # GenerateDataKey to write.
        expected["kms:Decrypt"] = {"DataKey"}
        if WRITES & code.keys():
            expected["kms:GenerateDataKey"] = {"DataKey"}
    return expected


def via_services(function: str) -> set[str]:
    touched = {target.split("/")[0] for labels in CODE_ACTIONS[function].values() for target in labels}
    return {f"{KEY_USERS[t]}.${{AWS::Region}}.${{AWS::URLSuffix}}" for t in touched & KEY_USERS.keys()}


# ------------------------------------------------------------------ the functions' roles


@pytest.mark.parametrize("function", sorted(CODE_ACTIONS))
def test_role_grants_exactly_what_the_function_uses(resources: dict[str, Any], function: str) -> None:
    """Given the function's role as CloudFormation gets it, then every action is one its code (or the
    platform on its behalf) uses, every such action is granted, each on exactly the resources used."""
    granted = grants(resources, function)
    expected = expected_grants(function)
    assert sorted(granted.keys() - expected.keys()) == [], "granted but never used"
    assert sorted(expected.keys() - granted.keys()) == [], "used but not granted"
    assert {a: r for a, r in granted.items() if r != expected[a]} == {}, "granted on other resources"


@pytest.mark.parametrize("function", sorted(CODE_ACTIONS))
def test_no_wildcards_and_no_managed_policies(resources: dict[str, Any], function: str) -> None:
    role = role_of(resources, function)
    assert "ManagedPolicyArns" not in role["Properties"]
    for action, labels in grants(resources, function).items():
        assert "*" not in action, f"{function}: wildcard action {action}"
        if "*" in labels:
            assert action in STAR_ONLY_ACTIONS, f"{function}: {action} on every resource"
    (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust == {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}


@pytest.mark.parametrize("function", sorted(CODE_ACTIONS))
def test_key_use_is_limited_to_the_services_the_function_calls(resources: dict[str, Any], function: str) -> None:
    """kms:Decrypt/GenerateDataKey only through S3, SNS or Secrets Manager, and only those it calls."""
    (statement,) = [
        s
        for s in statements_of(role_of(resources, function))
        if any(a.startswith("kms:") for a in as_list(s["Action"]))
    ]
    via = as_list(statement["Condition"]["StringEquals"]["kms:ViaService"])
    assert {v["Fn::Sub"] for v in via} == via_services(function)
    assert set(statement["Condition"]) == {"StringEquals"}


def test_only_the_functions_and_the_state_machine_have_roles(resources: dict[str, Any]) -> None:
    """SAM generates no role of its own (it would attach AWSLambdaBasicExecutionRole and friends)."""
    roles = {k for k, v in resources.items() if v["Type"] == "AWS::IAM::Role"}
    assert roles == {f"{name}Role" for name in (*CODE_ACTIONS, "RenderJobStateMachine", "SampleExpiry")}
    for resource in resources.values():
        assert resource["Type"] not in ("AWS::IAM::ManagedPolicy", "AWS::IAM::Policy", "AWS::IAM::User")
    functions = {k for k, v in resources.items() if v["Type"] == "AWS::Lambda::Function"}
    assert functions == CODE_ACTIONS.keys()


# ------------------------------------------------------------------ the state machine's role


def test_state_machine_invokes_only_its_functions_and_publishes_nothing(resources: dict[str, Any]) -> None:
    role = role_of(resources, "RenderJobStateMachine")
    assert "ManagedPolicyArns" not in role["Properties"]
    granted = grants(resources, "RenderJobStateMachine")
    functions = ("PollFunction", "FinalizeFunction", "ReportFailureFunction")
    assert granted == {
        # The unqualified ARNs the definition names, and their versions/aliases; nothing else.
        "lambda:InvokeFunction": {f"{name}{suffix}" for name in functions for suffix in ("", ":*")},
        **{action: {"*"} for action in STATE_MACHINE_TRACE_ACTIONS | LOG_DELIVERY_ACTIONS},
    }
    (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "states.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
    definition = json.dumps(resources["RenderJobStateMachine"]["Properties"])
    assert "sns:publish" not in definition.lower()


def test_the_sample_expiry_role_only_puts_on_the_split_queue_for_the_scheduler(resources: dict[str, Any]) -> None:
    role = resources["SampleExpiryRole"]
    assert "ManagedPolicyArns" not in role["Properties"]
    (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "scheduler.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
    (statement,) = statements_of(role)
    assert (statement["Action"], label(statement["Resource"], resources)) == ("sqs:SendMessage", "SplitQueue")
    (pass_role,) = [s for s in statements_of(role_of(resources, "SplitFunction")) if s["Action"] == "iam:PassRole"]
    assert pass_role["Condition"] == {"StringEquals": {"iam:PassedToService": "scheduler.amazonaws.com"}}


# ------------------------------------------------------------------ the table against the code


def _services_created() -> set[str]:
    """The services the package makes boto3 clients or resources for."""
    created: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        source = path.read_text(encoding="utf-8")
        created |= set(re.findall(r"boto3\.(?:client|resource)\(\s*[\"']([a-z0-9-]+)[\"']", source))
    return created


def _operation_names(services: set[str]) -> set[str]:
    """Every operation of those services, as boto3 method names (put_events, get_item, ...)."""
    session = botocore.session.get_session()
    return {
        botocore.xform_name(operation)
        for service in services
        for operation in session.get_service_model(service).operation_names
    } | {"generate_presigned_url"}


def _package_calls() -> dict[tuple[str, str], list[str]]:
    """(service, operation) -> call sites, for AWS operations called on an attribute (self._s3.get_object).

    A call of an operation name on an attribute that is not a known client attribute is reported
    as ("?_attribute", operation), so a client kept under a new name cannot slip past."""
    operations = _operation_names(_services_created())
    calls: dict[tuple[str, str], list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            target, method = node.func.value, node.func.attr
            if not (isinstance(target, ast.Attribute) and target.attr.startswith("_") and method in operations):
                continue
            service = CLIENT_ATTRIBUTES.get(target.attr, f"?{target.attr}")
            calls.setdefault((service, method), []).append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    return calls


def _names_used() -> set[str]:
    names: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Name):
                names.add(node.id)
            elif isinstance(node, ast.Attribute):
                names.add(node.attr)
    return names


def test_every_aws_call_in_the_package_is_mapped_to_its_iam_action() -> None:
    calls = _package_calls()
    unmapped = {
        f"{service}.{operation}": sites
        for (service, operation), sites in calls.items()
        if (service, operation) not in OPERATIONS
    }
    assert unmapped == {}, "map each new call to the IAM actions it needs (OPERATIONS) and grant it"
    assert sorted(set(OPERATIONS) - set(calls)) == [], "OPERATIONS lists calls the package no longer makes"
    assert set(LIBRARY_CALLS) <= _names_used()


def test_the_package_talks_only_to_the_services_the_roles_cover() -> None:
    assert _services_created() <= KNOWN_SERVICES


def test_the_table_is_what_the_code_calls() -> None:
    """Every action the package's calls need is in some function's row, and every row is such an action."""
    from_code = set().union(*OPERATIONS.values(), *LIBRARY_CALLS.values())
    in_table = {action for table in CODE_ACTIONS.values() for action in table}
    assert in_table == from_code


# ------------------------------------------------------------------ the key the grants rely on


def test_data_key_rotates_outlives_the_stack_and_names_no_wildcard_principal() -> None:
    template = load_cfn_yaml(TEMPLATE_PATH)
    key = template["Resources"]["DataKey"]
    assert key["Type"] == "AWS::KMS::Key"
    assert key["DeletionPolicy"] == key["UpdateReplacePolicy"] == "Retain"  # the output bucket is retained
    properties = key["Properties"]
    assert properties["EnableKeyRotation"] is True
    statements = {s["Sid"]: s for s in properties["KeyPolicy"]["Statement"]}
    assert all(s["Effect"] == "Allow" and s["Principal"] != "*" for s in statements.values())
    assert statements["AccountManagesTheKeyThroughIam"]["Principal"] == {
        "AWS": {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}
    }
    services = {
        sid: s["Principal"]["Service"]["Fn::Sub"].split(".")[0]
        for sid, s in statements.items()
        if "Service" in s["Principal"]
    }
    # Only CloudWatch Logs: alarms publish to AlarmTopicArn (the operator's topic, not this key's) and no
    # rule targets the notification topic, so neither CloudWatch nor EventBridge gets the key.
    assert set(statements) == {"AccountManagesTheKeyThroughIam", "CloudWatchLogsEncryptsThisStacksLogGroups"}
    assert sorted(services.values()) == ["logs"]
    # CloudWatch Logs may use the key for this stack's log groups only.
    logs = next(s for sid, s in statements.items() if services.get(sid) == "logs")
    contexts = logs["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"]
    assert [c["Fn::Sub"].split(":log-group:")[1] for c in contexts] == [
        "/aws/lambda/${AWS::StackName}/*",
        "/aws/vendedlogs/states/${AWS::StackName}-RenderJob",
    ]
    for statement in statements.values():
        if "Service" in statement["Principal"]:
            assert not [a for a in as_list(statement["Action"]) if "*" in a]


def test_state_machine_logs_need_no_key_grant_for_the_log_delivery_service() -> None:
    """Step Functions delivers its execution log through CloudWatch Logs' vended-log delivery
    (delivery.logs.amazonaws.com). Into a log group, that service needs the group's resource policy
    (set up through the role's logs:PutResourcePolicy), not the key: CloudWatch Logs encrypts what it
    ingests with the group's key (the logs.<region> grant above). The delivery service would need the
    key only if the state machine's own data were encrypted with it (EncryptionConfiguration), so the
    two are pinned together (docs/aws-notes.md)."""
    resources = load_cfn_yaml(TEMPLATE_PATH)["Resources"]
    machine = resources["RenderJobStateMachine"]["Properties"]
    assert "EncryptionConfiguration" not in machine
    log_group = machine["Logging"]["Destinations"][0]["CloudWatchLogsLogGroup"]["LogGroupArn"]["Fn::GetAtt"][0]
    assert resources[log_group]["Properties"]["KmsKeyId"] == {"Fn::GetAtt": ["DataKey", "Arn"]}
    principals = json.dumps(resources["DataKey"]["Properties"]["KeyPolicy"])
    assert "delivery.logs" not in principals


def test_stores_the_roles_touch_are_encrypted_with_the_data_key() -> None:
    resources = load_cfn_yaml(TEMPLATE_PATH)["Resources"]
    data_key = {"Fn::GetAtt": ["DataKey", "Arn"]}
    assert resources["NotificationTopic"]["Properties"]["KmsMasterKeyId"] == data_key
    assert resources["SegmindApiKeySecret"]["Properties"]["KmsKeyId"] == data_key
    for bucket in ("InputBucket", "OutputBucket"):
        (rule,) = resources[bucket]["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert rule["ServerSideEncryptionByDefault"]["KMSMasterKeyID"] == data_key
    log_groups = [r for r in resources.values() if r["Type"] == "AWS::Logs::LogGroup"]
    assert len(log_groups) == 7
    assert all(r["Properties"]["KmsKeyId"] == data_key for r in log_groups)
    # The documented exceptions: SQS managed SSE for the queues, the AWS managed key for the tables.
    for queue in ("SubmitQueue", "SubmitDeadLetterQueue", "SplitQueue", "SplitDeadLetterQueue"):
        assert resources[queue]["Properties"]["SqsManagedSseEnabled"] is True
    for table in ("JobsTable", "PipelineStateTable", "CampaignsTable"):
        assert resources[table]["Properties"]["SSESpecification"] == {"SSEEnabled": True}


# ------------------------------------------------------------------ the checkov gate's suppressions


def _checkov_skips(template: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for logical_id, resource in template["Resources"].items():
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
            yield logical_id, skip


def test_every_checkov_suppression_says_why() -> None:
    skips = list(_checkov_skips(load_cfn_yaml(TEMPLATE_PATH)))
    assert skips
    for logical_id, skip in skips:
        assert set(skip) == {"id", "comment"}, logical_id
        assert re.fullmatch(r"CKV2?_AWS_\d+", skip["id"]), logical_id
        assert len(skip["comment"].split()) >= 6, f"{logical_id} {skip['id']}: say why in a sentence"


@pytest.mark.skipif(not CHECKOV.exists(), reason="checkov lives in .venv-checkov (make security-check installs it)")
def test_checkov_passes_on_the_translated_template_too(translated: dict[str, Any], tmp_path: Path) -> None:
    """template.yaml is what `make` scans; the translated template adds what SAM generates (the Lambda
    functions, the event source mapping, the state machine), with the same suppressions carried over."""
    rendered = tmp_path / "translated.json"
    rendered.write_text(json.dumps(translated), encoding="utf-8")
    checkov = shutil.which(str(CHECKOV)) or str(CHECKOV)
    done = subprocess.run(  # noqa: S603 - our own venv's checkov, no shell
        [checkov, "-f", str(rendered), "--framework", "cloudformation", "--skip-download", "--quiet", "--compact"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-4000:]
    assert re.search(r"Passed checks: [1-9]\d*, Failed checks: 0, Skipped checks: \d+\s*$", done.stdout, re.M), (
        done.stdout[-2000:] + done.stderr[-2000:]
    )
