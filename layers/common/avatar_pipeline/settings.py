"""Every environment variable the functions read, validated once.

Nothing else in the package reads os.environ. The template sets these (template.yaml Globals);
the offline stack sets the same names from the stack it deployed into moto.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from decimal import Decimal
from functools import lru_cache
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from avatar_pipeline.domain.pricing import PriceTable, price_table

_LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
# The template's DailySpendLimitUsd default: about 45 Avatar IV renders a day, so a loop that re-drops
# files, or a leaked upload credential, stops within a day's small bill; raise it for volume.
DEFAULT_DAILY_SPEND_LIMIT_USD = Decimal("100")
# After the provider's answer: the job record, StartExecution and its record (with the SDK's retries).
SUBMIT_BOOKKEEPING_SECONDS = 10.0


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    input_bucket: str = Field(alias="INPUT_BUCKET", min_length=3)
    output_bucket: str = Field(alias="OUTPUT_BUCKET", min_length=3)
    jobs_table: str = Field(alias="JOBS_TABLE", min_length=1)
    notification_topic_arn: str = Field(alias="NOTIFICATION_TOPIC_ARN", pattern=r"^arn:aws[a-z-]*:sns:")
    segmind_api_key_secret_arn: str = Field(alias="SEGMIND_API_KEY_SECRET_ARN", min_length=1)
    segmind_base_url: str = Field(alias="SEGMIND_BASE_URL", default="https://api.segmind.com")
    # Only the Submit function needs it (a global reference would be a dependency cycle in the template).
    state_machine_arn: str | None = Field(alias="STATE_MACHINE_ARN", default=None)
    render_deadline_minutes: int = Field(alias="RENDER_DEADLINE_MINUTES", default=45, ge=1, le=55)
    presign_expiry_seconds: int = Field(alias="PRESIGN_EXPIRY_SECONDS", default=3600, ge=60, le=3600)
    media_wait_seconds: int = Field(alias="MEDIA_WAIT_SECONDS", default=300, ge=0, le=3600)
    # How long a submit claim stays valid: longer than the Submit function's timeout (60 s), so an
    # expired claim means its worker is gone; shorter than the queue's visibility timeout (360 s).
    submit_lease_seconds: int = Field(alias="SUBMIT_LEASE_SECONDS", default=120, ge=1)
    # The SubmitQueue's redrive maxReceiveCount: the last receive must end the job, not the DLQ.
    submit_max_receives: int = Field(alias="SUBMIT_MAX_RECEIVES", default=5, ge=1, le=1000)
    # How long a publisher holds a job's notification before another run of its ending may take it over
    # (domain/notify.py): far longer than publishing takes, shorter than the retries that wait for it.
    notify_lease_seconds: int = Field(alias="NOTIFY_LEASE_SECONDS", default=30, ge=1, le=900)
    # How long a submit that Segmind keeps refusing (429/5xx) or that cannot reach it is retried,
    # counted from the first refusal in a row; then the job fails PROVIDER_UNAVAILABLE (never billed).
    submit_retry_minutes: int = Field(alias="SUBMIT_RETRY_MINUTES", default=30, ge=1, le=1440)
    job_record_ttl_days: int = Field(alias="JOB_RECORD_TTL_DAYS", default=30, ge=1, le=3650)
    max_job_file_bytes: int = Field(alias="MAX_JOB_FILE_BYTES", default=64 * 1024, ge=1024)
    max_photo_bytes: int = Field(alias="MAX_PHOTO_BYTES", default=20 * 1024 * 1024, ge=1024)
    max_audio_bytes: int = Field(alias="MAX_AUDIO_BYTES", default=100 * 1024 * 1024, ge=1024)
    max_output_bytes: int = Field(alias="MAX_OUTPUT_BYTES", default=5 * 1024**3, ge=1024)
    provider_connect_timeout_s: float = Field(alias="PROVIDER_CONNECT_TIMEOUT_S", default=5.0, gt=0)
    provider_read_timeout_s: float = Field(alias="PROVIDER_READ_TIMEOUT_S", default=20.0, gt=0)
    download_read_timeout_s: float = Field(alias="DOWNLOAD_READ_TIMEOUT_S", default=60.0, gt=0)
    # Hosts the result may be downloaded from; empty = any public https host.
    output_host_allowlist: tuple[str, ...] = Field(alias="OUTPUT_HOST_ALLOWLIST", default=())
    # Plain http to a loopback host, for the offline emulator only.
    allow_loopback_http: bool = Field(alias="ALLOW_LOOPBACK_HTTP", default=False)
    # Small shared state (key `pk`): the Segmind request budget and learned render times.
    # Unset: no budget, no learning (the policy's prior).
    pipeline_state_table: str | None = Field(alias="PIPELINE_STATE_TABLE", default=None, min_length=1)
    # Requests per minute the Segmind key allows (free 5, pro 50); every function shares them.
    segmind_requests_per_minute: int = Field(alias="SEGMIND_REQUESTS_PER_MINUTE", default=50, ge=2)
    # 0: the adaptive poll schedule (domain/poll_policy.py). N > 0: check every N seconds, as Segmind's
    # SDK does; for comparison runs (bench/bench_throughput.py) or render times the model does not fit.
    poll_fixed_interval_seconds: int = Field(alias="POLL_FIXED_INTERVAL_SECONDS", default=0, ge=0, le=300)
    # A ceiling on what a UTC day may spend on renders, held before each submit (domain/spend.py); 0: none.
    daily_spend_limit_usd: Decimal = Field(alias="DAILY_SPEND_LIMIT_USD", default=DEFAULT_DAILY_SPEND_LIMIT_USD, ge=0)
    # The price table (domain/pricing.py's shape) instead of the built-in one; empty: the built-in one.
    price_table_json: str | None = Field(alias="PRICE_TABLE_JSON", default=None)
    # The bus completion events go to ("Avatar Video Succeeded" / "Avatar Video Failed").
    event_bus_name: str = Field(alias="EVENT_BUS_NAME", default="default", min_length=1)
    # Campaigns (campaigns/): their records, rows and media (pk campaign id, sk campaign|row#|media#).
    # Unset: campaign files are not split and rows report to no campaign.
    campaigns_table: str | None = Field(alias="CAMPAIGNS_TABLE", default=None, min_length=1)
    # Where the Split function hands a campaign's rows: the submit queue (only Split has it).
    submit_queue_url: str | None = Field(alias="SUBMIT_QUEUE_URL", default=None, min_length=1)
    # The sample gate's bound (campaigns/approval.py): a one-time schedule puts a SampleExpiry on the
    # split queue (SPLIT_QUEUE_ARN) as SAMPLE_EXPIRY_ROLE_ARN this many days after the split.
    split_queue_arn: str | None = Field(alias="SPLIT_QUEUE_ARN", default=None, min_length=1)
    sample_expiry_role_arn: str | None = Field(alias="SAMPLE_EXPIRY_ROLE_ARN", default=None, min_length=1)
    sample_wait_days: int = Field(alias="SAMPLE_WAIT_DAYS", default=7, ge=1, le=90)
    secret_max_age_seconds: int = Field(alias="SECRET_MAX_AGE_SECONDS", default=300, ge=0)

    @property
    def submit_retry_seconds(self) -> int:
        return self.submit_retry_minutes * 60

    @property
    def submit_worst_case_seconds(self) -> float:
        """The longest a submit can take once its POST starts: connecting, sending the small body and
        waiting for the answer, then recording it and starting the execution. A record starts its POST
        only with this much of the invocation left (Lambda would otherwise kill it mid-POST, leaving a
        job that may be billed but is not recorded)."""
        return 2 * self.provider_connect_timeout_s + self.provider_read_timeout_s + SUBMIT_BOOKKEEPING_SECONDS

    @property
    def daily_ceiling(self) -> Decimal | None:
        """The day's ceiling, None when there is none (DAILY_SPEND_LIMIT_USD 0)."""
        return self.daily_spend_limit_usd or None

    @property
    def prices(self) -> PriceTable:
        return price_table(self.price_table_json)

    @field_validator("price_table_json")
    @classmethod
    def _a_price_table(cls, value: str | None) -> str | None:
        if value and value.strip():
            price_table(value)  # refuses a malformed table now, not at the first job
            return value
        return None

    @field_validator("output_host_allowlist", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(h.strip().lower() for h in value.split(",") if h.strip())
        return value

    @field_validator("segmind_base_url")
    @classmethod
    def _https_or_loopback(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme == "https" and parts.hostname:
            return value.rstrip("/")
        if parts.scheme == "http" and parts.hostname in _LOOPBACK_HOSTS:
            return value.rstrip("/")
        raise ValueError("SEGMIND_BASE_URL must be https:// (plain http only for a loopback emulator)")

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Settings:
        return cls.model_validate({k: v for k, v in environ.items() if k in _ALIASES})


_ALIASES = {f.alias for f in Settings.model_fields.values() if f.alias}


def is_loopback_host(host: str | None) -> bool:
    return host in _LOOPBACK_HOSTS


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read on first use (never at import)."""
    return Settings.from_environ(os.environ)
