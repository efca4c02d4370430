"""The last stop: a job event that failed every one of its deliveries to Submit ends its job.

The submit queue hands an event to the dead-letter queue after its last receive. Bad input, media
that never arrives and a provider that keeps refusing submits all end their jobs before that; what
arrives here is what nobody expected (a crash on every delivery, AWS failing for minutes). The
message stays evidence for the DLQ alarm, but the job must not stay SUBMITTING forever: it ends
FAILED with a report and one notification, unless it already ended or its render is under way.
"""

from __future__ import annotations

from avatar_pipeline.domain.context import InboxObject, JobRef
from avatar_pipeline.domain.failure import fail_job
from avatar_pipeline.domain.inbox import media_named_in, model_named_in
from avatar_pipeline.domain.ports import DeadLetterPorts, ObjectMissing, ObjectTooLarge, plain_etag
from avatar_pipeline.domain.submit import Requeue, SubmitResult, continue_existing
from avatar_pipeline.errors import ErrorCode
from avatar_pipeline.keys import derive_job_id, is_job_file_key
from avatar_pipeline.observability import logger


def end_dead_lettered_job(obj: InboxObject, ports: DeadLetterPorts) -> SubmitResult:
    if obj.bucket != ports.settings.input_bucket or not is_job_file_key(obj.key):
        logger.error("a dead-lettered event names no job file", extra={"bucket": obj.bucket, "key": obj.key})
        return SubmitResult.IGNORED
    job_id = derive_job_id(obj.bucket, obj.key, obj.version_id or obj.etag, obj.sequencer)
    logger.set_correlation_id(job_id)
    record = ports.jobs.get(job_id)
    if record is not None:
        # Known job: the same rules as a redelivery (never POST again; resume a submitted one; a
        # claim whose worker died after its POST began ends as possibly accepted).
        result = continue_existing(record, obj, ports)
        if not isinstance(result, Requeue):
            return result
        # Its worker died before the POST and the claim is gone: no more tries here, it ends below.
    head = ports.storage.head(obj.bucket, obj.key)
    if head is None or (obj.etag and head.etag != plain_etag(obj.etag)):
        logger.info("the dead-lettered job file was removed or replaced; nothing to end")
        return SubmitResult.IGNORED
    try:
        raw = ports.storage.read(obj.bucket, obj.key, ports.settings.max_job_file_bytes, if_match=head.etag)
    except (ObjectMissing, ObjectTooLarge):
        raw = b""
    ref = JobRef.from_upload(
        obj, job_id, head.etag or None, model=model_named_in(raw), media_keys=media_named_in(obj.key, raw)
    )
    # No job record means no claim, so no POST was ever made (a claim is written before the POST and
    # removed only when the POST provably never reached Segmind).
    fail_job(
        ref,
        ErrorCode.INTERNAL,
        f"Submit failed on every delivery of this job's event ({obj.receive_count} attempts; its logs carry "
        f"the job id {job_id}). The job was never submitted to Segmind, so nothing was billed",
        ports,
    )
    return SubmitResult.REJECTED
