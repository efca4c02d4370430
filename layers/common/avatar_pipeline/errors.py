"""Typed errors and the one place that maps them to the error codes of DESIGN.md section 5.

Transient errors propagate so SQS redelivery and the state machine's Retry handle them; the ASL
matches them by class name, so class names are part of the contract with
statemachine/render_job.asl.json. Permanent errors carry an ErrorCode and end the job with a report.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum


class ErrorCode(StrEnum):
    INVALID_JOB = "INVALID_JOB"
    MISSING_MEDIA = "MISSING_MEDIA"
    UNSUPPORTED_MEDIA = "UNSUPPORTED_MEDIA"
    MEDIA_TOO_LARGE = "MEDIA_TOO_LARGE"
    PROVIDER_REJECTED = "PROVIDER_REJECTED"
    PROVIDER_AUTH = "PROVIDER_AUTH"
    INSUFFICIENT_CREDITS = "INSUFFICIENT_CREDITS"
    PROVIDER_FAILED = "PROVIDER_FAILED"
    RESULT_EXPIRED = "RESULT_EXPIRED"
    RENDER_TIMEOUT = "RENDER_TIMEOUT"
    OUTPUT_INVALID = "OUTPUT_INVALID"
    OUTPUT_CONFLICT = "OUTPUT_CONFLICT"
    PROVIDER_UNAVAILABLE = "PROVIDER_UNAVAILABLE"
    RESULT_UNAVAILABLE = "RESULT_UNAVAILABLE"
    SPEND_LIMIT = "SPEND_LIMIT"
    NOT_APPROVED = "NOT_APPROVED"
    INTERNAL = "INTERNAL"


class PipelineError(Exception):
    """Base of every error the pipeline raises on purpose."""

    code: ErrorCode = ErrorCode.INTERNAL
    retryable: bool = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# --- permanent: the job ends with a report -------------------------------------------------------


class InvalidJob(PipelineError):
    code = ErrorCode.INVALID_JOB


class MissingMedia(PipelineError):
    code = ErrorCode.MISSING_MEDIA


class UnsupportedMedia(PipelineError):
    code = ErrorCode.UNSUPPORTED_MEDIA


class MediaTooLarge(PipelineError):
    code = ErrorCode.MEDIA_TOO_LARGE


class ProviderRejected(PipelineError):
    code = ErrorCode.PROVIDER_REJECTED


class ProviderAuthError(PipelineError):
    code = ErrorCode.PROVIDER_AUTH


class InsufficientCredits(PipelineError):
    code = ErrorCode.INSUFFICIENT_CREDITS


class ProviderJobFailed(PipelineError):
    code = ErrorCode.PROVIDER_FAILED


class ResultExpired(PipelineError):
    code = ErrorCode.RESULT_EXPIRED


class RenderTimeout(PipelineError):
    code = ErrorCode.RENDER_TIMEOUT


class OutputInvalid(PipelineError):
    code = ErrorCode.OUTPUT_INVALID


class OutputConflict(PipelineError):
    """Another job holds the output key (its video, captions or manifest): never submitted."""

    code = ErrorCode.OUTPUT_CONFLICT


class SubmitNeverAccepted(PipelineError):
    """Segmind kept refusing the submit (429/5xx) or could not be reached, for longer than the
    pipeline retries it: the job was never accepted, so nothing was billed."""

    code = ErrorCode.PROVIDER_UNAVAILABLE


class ResultUnavailable(PipelineError):
    """The render COMPLETED (and was billed) but its result could not be fetched before Segmind's
    retention ended."""

    code = ErrorCode.RESULT_UNAVAILABLE


class SpendLimitReached(PipelineError):
    """The job's price would take its UTC day (or its campaign) past a spend ceiling: never submitted."""

    code = ErrorCode.SPEND_LIMIT


class InvalidCampaign(PipelineError):
    """The campaign file itself is unusable (unreadable, its rows file missing or malformed, its template
    names a column the rows lack): the campaign fails as a whole, nothing submitted. Not an InvalidJob,
    so a handler of one bad row's InvalidJob never swallows it."""

    code = ErrorCode.INVALID_JOB


class CampaignNotApproved(PipelineError):
    """A person rejected the campaign's sample (or never approved it in time): the row is not rendered."""

    code = ErrorCode.NOT_APPROVED


class SubmissionUncertain(PipelineError):
    """A submit attempt may have reached the provider but its answer was never recorded.

    Re-posting could bill the user twice, so the job fails with a report instead.
    """

    code = ErrorCode.INTERNAL


# --- transient: retried by SQS or by the state machine's Retry -----------------------------------


class TransientError(PipelineError):
    retryable = True


class ProviderThrottled(TransientError):
    def __init__(self, message: str, reset_at: datetime | None = None) -> None:
        super().__init__(message)
        self.reset_at = reset_at


class ProviderUnavailable(TransientError):
    """HTTP 5xx from the provider."""


class ProviderTimeout(TransientError):
    """The provider did not answer in time (on a read, not on a submit: see ProviderSubmitAmbiguous)."""


class ProviderConnectionError(TransientError):
    """The request provably never reached the provider (connect failed, refused)."""


class ProviderBadResponse(TransientError):
    """A body we could not parse, or a 2xx without the fields the API promises."""


class MediaNotYetAvailable(TransientError):
    """A photo or audio file named by the job has not arrived yet; retried until MEDIA_WAIT_SECONDS."""

    def __init__(self, message: str, retry_after_seconds: int = 15) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class SubmissionInProgress(TransientError):
    """Another worker holds the submit lease for this job; retried later by SQS."""


class NotificationInProgress(TransientError):
    """Another run of the job's ending holds the notification's lease (or died holding it): later."""


class OutputTransferError(TransientError):
    """Downloading the result or writing it to S3 failed in a way worth retrying."""


class ProviderSubmitAmbiguous(PipelineError):
    """The submit POST was sent but no answer arrived: it may or may not have been accepted.

    Never retried blindly (a second POST is a second bill); the job fails with a clear report.
    """

    code = ErrorCode.INTERNAL


# What a person does about each code: goes into the error report and docs/error-codes.md.
ADVICE: dict[ErrorCode, str] = {
    ErrorCode.INVALID_JOB: "Fix the job file as the message says and upload it to inbox/ again.",
    ErrorCode.MISSING_MEDIA: (
        "Upload the photo/audio beside the job file (or fix its name), then upload the job file again."
    ),
    ErrorCode.UNSUPPORTED_MEDIA: "Use a PNG, JPEG or WebP photo and a WAV, MP3, M4A, OGG or FLAC audio file.",
    ErrorCode.MEDIA_TOO_LARGE: "Use a smaller photo or audio file (see MAX_PHOTO_BYTES / MAX_AUDIO_BYTES).",
    ErrorCode.PROVIDER_REJECTED: "Segmind rejected the parameters; fix them as its message says and resubmit.",
    ErrorCode.PROVIDER_AUTH: "Check the Segmind API key in Secrets Manager (it stops every job), then resubmit.",
    ErrorCode.INSUFFICIENT_CREDITS: "Top up Segmind credits or raise the team spend limit, then resubmit.",
    ErrorCode.PROVIDER_FAILED: "Segmind could not render this job (content blocks included); change it and resubmit.",
    ErrorCode.RESULT_EXPIRED: "Segmind dropped the result (kept 1 hour after submission); resubmit the job.",
    ErrorCode.RENDER_TIMEOUT: "The render missed its deadline; resubmit, or raise RenderDeadlineMinutes.",
    ErrorCode.OUTPUT_INVALID: "The result was not a usable video (or came from a disallowed host); resubmit.",
    ErrorCode.OUTPUT_CONFLICT: (
        "Another job writes (or wrote) this output key. Give this job another output_key, or delete the "
        "other job's video and manifest from the output bucket first, then upload the job file again."
    ),
    ErrorCode.PROVIDER_UNAVAILABLE: (
        "Segmind kept refusing or failing the submit; the job was never accepted and nothing was billed. "
        "Upload the job file again once Segmind is healthy (see its status page)."
    ),
    ErrorCode.RESULT_UNAVAILABLE: (
        "The render finished and was billed, but its result could not be fetched before Segmind dropped it "
        "(1 hour after submission). Look for it in your Segmind dashboard's generation history before "
        "resubmitting, to avoid paying twice."
    ),
    ErrorCode.SPEND_LIMIT: (
        "Nothing was submitted or billed. Upload the job file again after the day resets (00:00 UTC), or "
        "raise the stack parameter DailySpendLimitUsd."
    ),
    ErrorCode.NOT_APPROVED: (
        "Nothing was submitted or billed for this row: the campaign's sample was rejected (or not approved in "
        "time). Fix the template or rows, then upload the campaign file again; rows that succeeded are kept."
    ),
    ErrorCode.INTERNAL: (
        "Check the job's logs; if the message says the submit may have been accepted, check your "
        "Segmind dashboard before resubmitting, to avoid paying twice."
    ),
}

_ERRORS_BY_NAME: dict[str, type[PipelineError]] = {}


def _register(cls: type[PipelineError]) -> None:
    _ERRORS_BY_NAME[cls.__name__] = cls
    for sub in cls.__subclasses__():
        _register(sub)


_register(PipelineError)

# Errors the ASL or Lambda itself may name, which are not our classes.
_FOREIGN_ERROR_CODES: dict[str, ErrorCode] = {
    "States.Timeout": ErrorCode.RENDER_TIMEOUT,
}


def error_code_for(error_name: str) -> ErrorCode:
    """Map an error's class name (as Step Functions reports it in a Catch) to its error code."""
    if error_name in _FOREIGN_ERROR_CODES:
        return _FOREIGN_ERROR_CODES[error_name]
    cls = _ERRORS_BY_NAME.get(error_name)
    return cls.code if cls is not None else ErrorCode.INTERNAL


def transient_error_names() -> list[str]:
    """Class names of every transient error, as the ASL's Retry blocks list them."""
    return sorted(name for name, cls in _ERRORS_BY_NAME.items() if cls.retryable and cls is not TransientError)
