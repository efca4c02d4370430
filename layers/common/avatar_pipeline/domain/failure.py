"""Ending a job as FAILED: from Submit (bad input, a refusal), or from the state machine's failure branch."""

from __future__ import annotations

import json

from avatar_pipeline.domain.closing import Failed, close_job
from avatar_pipeline.domain.context import JobRef
from avatar_pipeline.domain.ports import ClosingPorts
from avatar_pipeline.errors import ErrorCode, error_code_for
from avatar_pipeline.state import JobOutcome, RenderState


def fail_job(ref: JobRef, code: ErrorCode, message: str, ports: ClosingPorts) -> JobOutcome:
    """Error report and inputs to failed/, terminal record, one notification."""
    return close_job(ref, Failed(code, message), ports)


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
    return fail_job(JobRef.from_render_job(state.job), error_code_for(error_name), message, ports)
