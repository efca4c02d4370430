"""Ending a job as FAILED: from Submit (bad input, a refusal), or from the state machine's failure branch."""

from __future__ import annotations

import json

from avatar_pipeline.domain.closing import Failed, close_job
from avatar_pipeline.domain.context import JobRef
from avatar_pipeline.domain.ports import ClosingPorts
from avatar_pipeline.domain.pricing import provider_cost
from avatar_pipeline.errors import ErrorCode, error_code_for
from avatar_pipeline.state import JobOutcome, RenderState


def fail_job(ref: JobRef, code: ErrorCode, message: str, ports: ClosingPorts, maybe_billed: bool = False) -> JobOutcome:
    """Error report and inputs to failed/, terminal record, one notification. `maybe_billed`: the POST
    may have reached Segmind though no answer says so (its cost then counts)."""
    return close_job(ref, Failed(code, message, maybe_billed=maybe_billed), ports)


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


def report_failure(state: RenderState, ports: ClosingPorts) -> JobOutcome:
    """The state machine's failure branch: whatever failed ($.error), end the job cleanly."""
    error_name = state.error.error if state.error else "Unknown"
    message = describe_cause(state.error.cause if state.error else None)
    failed = Failed(error_code_for(error_name), message, provider_cost=provider_cost(state.poll.provider_metrics))
    return close_job(JobRef.from_render_job(state.job), failed, ports)
