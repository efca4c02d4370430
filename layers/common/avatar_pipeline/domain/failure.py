"""Ending a job as FAILED: error report, inputs to failed/, job record, one notification."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from avatar_pipeline.clock import isoformat
from avatar_pipeline.domain.context import JobRef
from avatar_pipeline.domain.inbox import archive_inputs
from avatar_pipeline.domain.notify import publish_once
from avatar_pipeline.errors import ADVICE, ErrorCode, error_code_for
from avatar_pipeline.keys import error_report_key, output_stem
from avatar_pipeline.observability import job_failed, logger
from avatar_pipeline.records import ErrorReport, JobStatus, Notification
from avatar_pipeline.state import JobOutcome, RenderState

if TYPE_CHECKING:
    from avatar_pipeline.runtime import Dependencies


def fail_job(ref: JobRef, code: ErrorCode, message: str, deps: Dependencies) -> JobOutcome:
    now = deps.clock.now()
    settings = deps.settings
    archived = archive_inputs(ref, False, deps.storage, deps.media_users, now)
    if ref.video_key is not None and deps.output_claims is not None:
        # A failed job's output path is free again: the usual fix is to upload the job file again.
        deps.output_claims.release(ref.job_id, settings.output_bucket, output_stem(ref.video_key))
    report_key = error_report_key(ref.job_key)
    report = ErrorReport(
        job_id=ref.job_id,
        error_code=code.value,
        error_message=message,
        what_to_do=ADVICE[code],
        job_key=ref.job_key,
        moved_inputs=archived.moved,
        superseded_inputs=archived.superseded,
        kept_inputs=archived.kept,
        request_id=ref.request_id,
        failed_at=now,
        metadata=ref.metadata,
    )
    deps.storage.put_json(ref.input_bucket, report_key, report)
    previous = deps.jobs.get(ref.job_id)
    record = ref.terminal_record(
        JobStatus.FAILED, now, settings.job_record_ttl_days, code.value, message, previous=previous
    )
    deps.jobs.save_terminal(record)
    notification = Notification(
        job_id=ref.job_id,
        status="FAILED",
        model=ref.model,
        input={
            "bucket": ref.input_bucket,
            "job_key": ref.job_key,
            "archived_keys": archived.moved,
            "superseded_keys": archived.superseded,
            "kept_keys": archived.kept,
            "error_report_key": report_key,
        },
        error_code=code.value,
        error_message=message,
        timings={"received_at": isoformat(ref.received_at), "failed_at": isoformat(now)},
        metadata=ref.metadata,
    )
    notified = publish_once(notification, deps)
    logger.warning("job failed", extra={"error_code": code.value, "error_message": message})
    job_failed(ref.model, code.value)
    return JobOutcome(
        job_id=ref.job_id,
        status="FAILED",
        error_code=code.value,
        error_message=message,
        output_keys=[],
        notified=notified,
    )


def describe_cause(cause: str | None) -> str:
    """Step Functions hands a Lambda error's Cause over as JSON text; keep only the message."""
    if not cause:
        return "no details were given"
    try:
        parsed = json.loads(cause)
    except ValueError:
        return cause
    if isinstance(parsed, dict) and isinstance(parsed.get("errorMessage"), str):
        return str(parsed["errorMessage"])
    return cause


def report_failure(state: RenderState, deps: Dependencies) -> JobOutcome:
    """The state machine's failure branch: whatever failed ($.error), end the job cleanly."""
    error_name = state.error.error if state.error else "Unknown"
    message = describe_cause(state.error.cause if state.error else None)
    code = error_code_for(error_name)
    return fail_job(JobRef.from_render_job(state.job), code, message, deps)
