"""Each submit names its job to the emulator: how the offline stack counts a job's accepted submits.

Nothing a submit carries identifies its job: campaign rows share a title, a photo and often a script,
and a submit whose answer was lost leaves no request id on record. So, in the offline stack only, the
POST carries the id of the job that is posting in a header the emulator records with the job it
creates (CLIENT_JOB_HEADER, JobStats.client_job_id). The domain names that job just before its POST,
in the same thread: JobsTable.mark_posting ("from here a death may leave the job billed").
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import Any
from unittest import mock

from avatar_local.emulator.server import CLIENT_JOB_HEADER
from avatar_pipeline.adapters.jobs_table import JobsTable
from avatar_pipeline.provider.client import SegmindClient
from avatar_pipeline.provider.wire import SubmitAccepted

_POSTING: ContextVar[str | None] = ContextVar("avatar_local_posting_job", default=None)


@contextmanager
def submits_tagged_with_job_ids() -> Iterator[None]:
    mark_posting = JobsTable.mark_posting
    submit = SegmindClient.submit
    headers = SegmindClient._headers  # the one place a request's headers are made

    def marking(self: JobsTable, job_id: str, now: datetime) -> None:
        mark_posting(self, job_id, now)
        _POSTING.set(job_id)

    def submitting(self: SegmindClient, model: str, payload: dict[str, Any]) -> SubmitAccepted:
        try:
            return submit(self, model, payload)
        finally:
            _POSTING.set(None)

    def tagged(self: SegmindClient) -> dict[str, str]:
        job_id = _POSTING.get()
        return headers(self) if job_id is None else {**headers(self), CLIENT_JOB_HEADER: job_id}

    with ExitStack() as patches:
        patches.enter_context(mock.patch.object(JobsTable, "mark_posting", marking))
        patches.enter_context(mock.patch.object(SegmindClient, "submit", submitting))
        patches.enter_context(mock.patch.object(SegmindClient, "_headers", tagged))
        yield
