"""Composition root: builds the adapters once per process from the validated settings, and hands
each use case the bundle of ports it takes (domain/ports.py).

Handlers call `dependencies()`; tests and the offline stack call `reset()` after changing the
environment, and may `use_clock()` to run time faster than the wall clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, TypedDict

import boto3
import httpx
from botocore.config import Config

from avatar_pipeline.adapters.campaign_outbox import CampaignAnnouncer, SqsRowQueue
from avatar_pipeline.adapters.campaigns_table import CampaignsTable
from avatar_pipeline.adapters.events import CompletionEvents
from avatar_pipeline.adapters.executions import ExecutionStarter
from avatar_pipeline.adapters.jobs_table import JobsTable
from avatar_pipeline.adapters.media_users import MediaUsers
from avatar_pipeline.adapters.notifier import SnsNotifier
from avatar_pipeline.adapters.output_claims import OutputClaims
from avatar_pipeline.adapters.queue import RetryScheduler
from avatar_pipeline.adapters.render_stats import RenderStatsTable
from avatar_pipeline.adapters.request_budget import RequestBudget
from avatar_pipeline.adapters.sample_deadlines import SchedulerDeadlines
from avatar_pipeline.adapters.secrets import ApiKeySource
from avatar_pipeline.adapters.spend_ledger import SpendLedger
from avatar_pipeline.adapters.storage import S3Storage
from avatar_pipeline.adapters.transfer import DownloadPolicy, StreamingCopier
from avatar_pipeline.clock import Clock, SystemClock
from avatar_pipeline.domain.poll_policy import PollSchedule, poll_schedule
from avatar_pipeline.domain.ports import (
    CampaignPorts,
    ClosingPorts,
    DeadLetterPorts,
    FinalizePorts,
    PollPorts,
    SplitPorts,
    SubmitPorts,
)
from avatar_pipeline.provider.client import SegmindClient, default_timeout
from avatar_pipeline.settings import Settings, get_settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


# The presigned photo/audio URLs Segmind fetches are signed by this client, Host included:
# - SigV4: boto3 may still default to SigV2 in older regions, which S3 refuses for SSE-KMS objects
#   (and for buckets created since mid-2020).
# - The bucket's regional virtual host, <bucket>.s3.<region>.amazonaws.com. boto3's default is the
#   global host, <bucket>.s3.amazonaws.com, which for a bucket outside us-east-1 answers with a 307
#   redirect to the regional host for up to a day after the bucket is created (the fetch then fails
#   SignatureDoesNotMatch: the Host it was signed for is gone), and with 400 in regions launched after
#   March 2019. us-east-1 too, so one rule holds everywhere. The stack's bucket names never contain
#   dots, which a virtual host under HTTPS would not accept.
# With an endpoint URL on an IP address (the offline stack's moto server), botocore keeps the bucket
# in the path whatever the addressing style, so the URL still reaches that server.
S3_CLIENT_CONFIG = Config(
    signature_version="s3v4",
    s3={"addressing_style": "virtual", "us_east_1_regional_endpoint": "regional"},
)


class _ClosingFields(TypedDict):
    settings: Settings
    clock: Clock
    storage: S3Storage
    jobs: JobsTable
    notifier: SnsNotifier
    events: CompletionEvents
    media_users: MediaUsers | None
    output_claims: OutputClaims | None
    ledger: SpendLedger | None
    campaign: CampaignPorts | None


@dataclass
class Dependencies:
    settings: Settings
    clock: Clock

    @cached_property
    def _s3_client(self) -> S3Client:
        return boto3.client("s3", config=S3_CLIENT_CONFIG)

    @cached_property
    def storage(self) -> S3Storage:
        return S3Storage(self._s3_client)

    @cached_property
    def jobs(self) -> JobsTable:
        return JobsTable(boto3.resource("dynamodb").Table(self.settings.jobs_table))

    @cached_property
    def notifier(self) -> SnsNotifier:
        return SnsNotifier(boto3.client("sns"), self.settings.notification_topic_arn)

    @cached_property
    def events(self) -> CompletionEvents:
        return CompletionEvents(boto3.client("events"), self.settings.event_bus_name)

    @cached_property
    def executions(self) -> ExecutionStarter:
        if not self.settings.state_machine_arn:
            raise RuntimeError("STATE_MACHINE_ARN is not set for this function")
        return ExecutionStarter(boto3.client("stepfunctions"), self.settings.state_machine_arn)

    @cached_property
    def poll_schedule(self) -> PollSchedule:
        return poll_schedule(self.settings.poll_fixed_interval_seconds)

    @cached_property
    def render_stats(self) -> RenderStatsTable | None:
        table = self.settings.pipeline_state_table
        return RenderStatsTable(table) if table else None

    @cached_property
    def request_budget(self) -> RequestBudget | None:
        table = self.settings.pipeline_state_table
        return RequestBudget(table, self.settings.segmind_requests_per_minute) if table else None

    @cached_property
    def media_users(self) -> MediaUsers | None:
        table = self.settings.pipeline_state_table
        return MediaUsers(table) if table else None

    @cached_property
    def output_claims(self) -> OutputClaims | None:
        table = self.settings.pipeline_state_table
        return OutputClaims(table) if table else None

    @cached_property
    def ledger(self) -> SpendLedger | None:
        table = self.settings.pipeline_state_table
        return SpendLedger(table) if table else None

    @cached_property
    def campaigns(self) -> CampaignsTable:
        if not self.settings.campaigns_table:
            raise RuntimeError("CAMPAIGNS_TABLE is not set for this function")
        return CampaignsTable(boto3.resource("dynamodb").Table(self.settings.campaigns_table))

    @cached_property
    def campaign_announcer(self) -> CampaignAnnouncer:
        return CampaignAnnouncer(
            boto3.client("sns"),
            self.settings.notification_topic_arn,
            boto3.client("events"),
            self.settings.event_bus_name,
        )

    @cached_property
    def row_queue(self) -> SqsRowQueue:
        if not self.settings.submit_queue_url:
            raise RuntimeError("SUBMIT_QUEUE_URL is not set for this function")
        return SqsRowQueue(boto3.client("sqs"), self.settings.submit_queue_url)

    @cached_property
    def sample_deadlines(self) -> SchedulerDeadlines | None:
        settings = self.settings
        if not (settings.split_queue_arn and settings.sample_expiry_role_arn):
            return None
        return SchedulerDeadlines(boto3.client("scheduler"), settings.split_queue_arn, settings.sample_expiry_role_arn)

    @cached_property
    def retries(self) -> RetryScheduler:
        return RetryScheduler(boto3.client("sqs"))

    @cached_property
    def provider(self) -> SegmindClient:
        api_key = ApiKeySource(self.settings.segmind_api_key_secret_arn, self.settings.secret_max_age_seconds)
        timeout = default_timeout(self.settings.provider_connect_timeout_s, self.settings.provider_read_timeout_s)
        return SegmindClient(self.settings.segmind_base_url, api_key, timeout=timeout)

    @cached_property
    def copier(self) -> StreamingCopier:
        policy = DownloadPolicy(
            max_bytes=self.settings.max_output_bytes,
            allow_loopback_http=self.settings.allow_loopback_http,
            host_allowlist=self.settings.output_host_allowlist,
        )
        read = self.settings.download_read_timeout_s
        http = httpx.Client(timeout=httpx.Timeout(connect=10.0, read=read, write=read, pool=10.0))
        return StreamingCopier(self._s3_client, http, policy)

    # --- what each use case takes ---------------------------------------------------------------
    @cached_property
    def closing_ports(self) -> ClosingPorts:
        return ClosingPorts(**self._closing())

    @cached_property
    def submit_ports(self) -> SubmitPorts:
        return SubmitPorts(
            **self._closing(),
            executions=self.executions,
            schedule=self.poll_schedule,
            render_stats=self.render_stats,
            provider=self.provider,
            budget=self.request_budget,
        )

    @cached_property
    def dead_letter_ports(self) -> DeadLetterPorts:
        return DeadLetterPorts(
            **self._closing(), executions=self.executions, schedule=self.poll_schedule, render_stats=self.render_stats
        )

    @cached_property
    def poll_ports(self) -> PollPorts:
        return PollPorts(
            clock=self.clock,
            provider=self.provider,
            jobs=self.jobs,
            schedule=self.poll_schedule,
            budget=self.request_budget,
            render_stats=self.render_stats,
        )

    @cached_property
    def finalize_ports(self) -> FinalizePorts:
        return FinalizePorts(**self._closing(), provider=self.provider, copier=self.copier, budget=self.request_budget)

    @cached_property
    def campaign_ports(self) -> CampaignPorts:
        return CampaignPorts(
            settings=self.settings,
            clock=self.clock,
            storage=self.storage,
            campaigns=self.campaigns,
            announcer=self.campaign_announcer,
        )

    @cached_property
    def split_ports(self) -> SplitPorts:
        campaign = self.campaign_ports
        return SplitPorts(
            settings=campaign.settings,
            clock=campaign.clock,
            storage=campaign.storage,
            campaigns=campaign.campaigns,
            announcer=campaign.announcer,
            rows=self.row_queue,
            deadlines=self.sample_deadlines,
        )

    def _closing(self) -> _ClosingFields:
        return {
            "settings": self.settings,
            "clock": self.clock,
            "storage": self.storage,
            "jobs": self.jobs,
            "notifier": self.notifier,
            "events": self.events,
            "media_users": self.media_users,
            "output_claims": self.output_claims,
            "ledger": self.ledger,
            "campaign": self.campaign_ports if self.settings.campaigns_table else None,
        }


_clock: Clock = SystemClock()
_dependencies: Dependencies | None = None


def dependencies() -> Dependencies:
    global _dependencies
    if _dependencies is None:
        _dependencies = Dependencies(settings=get_settings(), clock=_clock)
    return _dependencies


def use_clock(clock: Clock) -> None:
    """Replace the clock (the offline stack scales time); rebuilds dependencies on next use."""
    global _clock
    _clock = clock
    reset()


def reset() -> None:
    """Forget settings and clients, e.g. after the environment changed (tests, offline stack)."""
    global _dependencies
    _dependencies = None
    get_settings.cache_clear()
