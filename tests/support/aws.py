"""AWS resources in moto for the integration tier, and the environment the functions read.

The end-to-end tier deploys template.yaml itself into moto (avatar_local.stack); this tier builds
the few resources directly so each test starts from nothing in milliseconds.
"""

from __future__ import annotations

import functools
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from avatar_local.stack.lambda_router import LambdaRouter, load_handler
from avatar_local.stack.local_aws import FUNCTIONS, bucket_location
from avatar_local.stack.table_schemas import table_schema
from tests.support import TEST_REGION

REGION = TEST_REGION
PARTITION = "aws"
ACCOUNT = "123456789012"
ASL_PATH = Path(__file__).resolve().parents[2] / "statemachine" / "render_job.asl.json"
API_KEY = "test-api-key-0123456789"
# The functions the state machine invokes, by logical id (their code directories: local_aws.FUNCTIONS).
STATE_MACHINE_FUNCTIONS = ("PollFunction", "FinalizeFunction", "ReportFailureFunction")


def function_arn(name: str) -> str:
    return f"arn:{PARTITION}:lambda:{REGION}:{ACCOUNT}:function:{name}"


@dataclass
class PipelineResources:
    input_bucket: str = "avatar-input"
    output_bucket: str = "avatar-output"
    jobs_table: str = "avatar-jobs"
    state_table: str = "avatar-state"
    campaigns_table: str = "avatar-campaigns"
    topic_arn: str = ""
    notifications_queue_url: str = ""
    events_queue_url: str = ""
    submit_queue_arn: str = ""
    submit_queue_url: str = ""
    split_queue_arn: str = ""
    split_queue_url: str = ""
    secret_arn: str = ""
    state_machine_arn: str = ""
    router: LambdaRouter = field(default_factory=LambdaRouter)

    def environment(self, provider_url: str, **overrides: str) -> dict[str, str]:
        env = {
            "INPUT_BUCKET": self.input_bucket,
            "OUTPUT_BUCKET": self.output_bucket,
            "JOBS_TABLE": self.jobs_table,
            "PIPELINE_STATE_TABLE": self.state_table,
            "CAMPAIGNS_TABLE": self.campaigns_table,
            "SUBMIT_QUEUE_URL": self.submit_queue_url,
            "NOTIFICATION_TOPIC_ARN": self.topic_arn,
            "SEGMIND_API_KEY_SECRET_ARN": self.secret_arn,
            "SEGMIND_BASE_URL": provider_url,
            "STATE_MACHINE_ARN": self.state_machine_arn,
            "RENDER_DEADLINE_MINUTES": "45",
            "PRESIGN_EXPIRY_SECONDS": "3600",
            "MEDIA_WAIT_SECONDS": "300",
            "ALLOW_LOOPBACK_HTTP": "true",
        }
        env.update(overrides)
        return env

    # --- observations ------------------------------------------------------------------------------
    def notifications(self) -> list[dict[str, Any]]:
        """Every SNS message published so far: {"body": <parsed Message>, "attributes": {name: value}}."""
        sqs = boto3.client("sqs", region_name=REGION)
        messages: list[dict[str, Any]] = []
        while True:
            batch = sqs.receive_message(QueueUrl=self.notifications_queue_url, MaxNumberOfMessages=10).get(
                "Messages", []
            )
            if not batch:
                return messages
            for message in batch:
                envelope = json.loads(message["Body"])
                attributes = {k: v["Value"] for k, v in envelope.get("MessageAttributes", {}).items()}
                messages.append({"body": json.loads(envelope["Message"]), "attributes": attributes})
                sqs.delete_message(QueueUrl=self.notifications_queue_url, ReceiptHandle=message["ReceiptHandle"])

    def completion_events(self) -> list[dict[str, Any]]:
        """Every EventBridge event the pipeline put on the default bus (captured by a rule)."""
        sqs = boto3.client("sqs", region_name=REGION)
        events: list[dict[str, Any]] = []
        while batch := sqs.receive_message(QueueUrl=self.events_queue_url, MaxNumberOfMessages=10).get("Messages", []):
            for message in batch:
                events.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=self.events_queue_url, ReceiptHandle=message["ReceiptHandle"])
        return events

    def keys(self, bucket: str) -> list[str]:
        s3 = boto3.client("s3", region_name=REGION)
        return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []))

    def wait_for_execution(self, job_id: str, timeout: float = 30.0) -> dict[str, Any]:
        sfn = boto3.client("stepfunctions", region_name=REGION)
        arn = self.state_machine_arn.replace(":stateMachine:", ":execution:") + f":{job_id}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            execution = sfn.describe_execution(executionArn=arn)
            if execution["status"] != "RUNNING":
                return dict(execution)
            time.sleep(0.02)
        raise TimeoutError(f"execution {job_id} still running after {timeout} s")

    def drain_executions(self, timeout: float = 20.0) -> None:
        """Let running executions finish (or stop them), so none outlives its test into the next one."""
        sfn = boto3.client("stepfunctions", region_name=REGION)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            running = sfn.list_executions(stateMachineArn=self.state_machine_arn, statusFilter="RUNNING")["executions"]
            if not running:
                return
            time.sleep(0.02)
        for execution in sfn.list_executions(stateMachineArn=self.state_machine_arn, statusFilter="RUNNING")[
            "executions"
        ]:
            sfn.stop_execution(executionArn=execution["executionArn"])

    def history(self, job_id: str) -> list[dict[str, Any]]:
        sfn = boto3.client("stepfunctions", region_name=REGION)
        arn = self.state_machine_arn.replace(":stateMachine:", ":execution:") + f":{job_id}"
        return [dict(event) for event in sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]]


def create_resources() -> PipelineResources:
    """Inside an active mock_aws: buckets, tables, topic (+ a capture queue), secret, queue, state machine."""
    res = PipelineResources()
    s3 = boto3.client("s3", region_name=REGION)
    for bucket in (res.input_bucket, res.output_bucket):
        s3.create_bucket(Bucket=bucket, **bucket_location(REGION))
    ddb = boto3.client("dynamodb", region_name=REGION)
    for table, key in ((res.jobs_table, "job_id"), (res.state_table, "pk")):
        ddb.create_table(
            TableName=table,
            KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
    ddb.create_table(
        TableName=res.campaigns_table,
        **table_schema("CampaignsTable"),
    )
    sns = boto3.client("sns", region_name=REGION)
    sqs = boto3.client("sqs", region_name=REGION)
    res.topic_arn = sns.create_topic(Name="avatar-notifications")["TopicArn"]
    res.notifications_queue_url = sqs.create_queue(QueueName="captured-notifications")["QueueUrl"]
    capture_arn = sqs.get_queue_attributes(QueueUrl=res.notifications_queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    sns.subscribe(TopicArn=res.topic_arn, Protocol="sqs", Endpoint=capture_arn)
    res.events_queue_url = sqs.create_queue(QueueName="captured-events")["QueueUrl"]
    events_queue_arn = sqs.get_queue_attributes(QueueUrl=res.events_queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    events = boto3.client("events", region_name=REGION)
    events.put_rule(Name="capture-completions", EventPattern=json.dumps({"source": ["avatar-pipeline"]}))
    events.put_targets(Rule="capture-completions", Targets=[{"Id": "queue", "Arn": events_queue_arn}])
    res.submit_queue_url = sqs.create_queue(QueueName="SubmitQueue", Attributes={"VisibilityTimeout": "360"})[
        "QueueUrl"
    ]
    res.submit_queue_arn = sqs.get_queue_attributes(QueueUrl=res.submit_queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    res.split_queue_url = sqs.create_queue(QueueName="SplitQueue", Attributes={"VisibilityTimeout": "3600"})["QueueUrl"]
    res.split_queue_arn = sqs.get_queue_attributes(QueueUrl=res.split_queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    secrets = boto3.client("secretsmanager", region_name=REGION)
    res.secret_arn = secrets.create_secret(Name="segmind-api-key", SecretString=API_KEY)["ARN"]

    definition = ASL_PATH.read_text().replace("${Partition}", PARTITION)
    for name in STATE_MACHINE_FUNCTIONS:
        definition = definition.replace("${" + name + "Arn}", function_arn(name))
    sfn = boto3.client("stepfunctions", region_name=REGION)
    res.state_machine_arn = sfn.create_state_machine(
        name="RenderJob", definition=definition, roleArn=f"arn:aws:iam::{ACCOUNT}:role/render-job"
    )["stateMachineArn"]
    for name in STATE_MACHINE_FUNCTIONS:
        res.router.register(name, functools.partial(load_handler, FUNCTIONS[name]))
    return res
