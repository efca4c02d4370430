"""The soak's invariants, checked over the whole history of a run (bench/bench_soak.py collects it).

Pure: a `History` (the jobs table, both buckets, the emulator's jobs and request log, the captured
notifications, the crashes injected) and the `SoakPlan` in, violations out, so each check can be
tested on a planted history (tests/unit/test_soak_check.py).

1. every job terminal (SUCCEEDED/FAILED);
2. at most one accepted (billed) provider submit per job, none for bad input; accepted submits are
   attributed by what the emulator recorded (the job's identity: its title or prompt, else its
   audio's key; plus the model and the keys of the media it was given), never by title alone;
3. exactly one notification per job;
4. every video's sha256 and size equal its manifest's and the bytes the provider served;
5. no manifest describing another job's video (its job_id is the job whose record owns the key);
6. no input left in inbox/ by a terminal job (a newer upload aside);
7. no open multipart upload in either bucket;
8. every FAILED job has its error report (failed/<path>.error.json) with a code listed in
   docs/error-codes.md, the same as its record's;
9. no unexplained failure: a bad job fails with its code; a good job fails only for a cause the run
   gave it (an injected `failed` -> PROVIDER_FAILED, an injected `early_expiry` -> RESULT_EXPIRED,
   an ambiguous submit or a Submit crash mid-submit -> INTERNAL, a run of refused submits outlasting
   the retry window -> PROVIDER_UNAVAILABLE, a shared photo gone with a sibling that ended before the
   job file went up -> MISSING_MEDIA). A transient fault, a crash or a sibling job must never end a
   good job.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from avatar_local.emulator import RequestLogEntry
from avatar_local.stack.crashes import CrashRecord
from avatar_pipeline.records import TERMINAL_STATUSES, JobRecord, JobStatus
from bench.soak_jobs import SoakJob, SoakPlan

ERROR_CODES_DOC = Path(__file__).resolve().parents[1] / "docs" / "error-codes.md"
VIDEO_EXTENSIONS = (".mp4", ".webm")
# A submit whose answer never arrived (or arrived unreadable) may have been billed: INTERNAL, by design.
AMBIGUOUS_SUBMIT_FAULTS = frozenset({"read_timeout", "connection_reset", "malformed_body"})
# domain/dead_letter.py's report for a job whose event failed every delivery to Submit.
DEAD_LETTER_MESSAGE = "Submit failed on every delivery"
SUBMIT_UNCERTAIN_MESSAGE = "previous submit attempt stopped before its outcome was recorded"
AMBIGUOUS_SUBMIT_MESSAGE = "may have been accepted"  # the pipeline's words for a submit without a usable answer
INVARIANTS: dict[int, str] = {
    1: "every job terminal",
    2: "at most one accepted submit per job, none for bad input",
    3: "exactly one notification per job",
    4: "video bytes = manifest = provider",
    5: "no manifest describing another job's video",
    6: "no input left in inbox/ by a terminal job",
    7: "no open multipart upload",
    8: "every failed job has a valid error report",
    9: "no unexplained failure",
}


def documented_error_codes(path: Path = ERROR_CODES_DOC) -> set[str]:
    """The codes in the table of docs/error-codes.md (its first column, in backticks)."""
    return set(re.findall(r"^\|\s*`([A-Z_]+)`\s*\|", path.read_text(encoding="utf-8"), flags=re.MULTILINE))


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    etag: str
    sha256: str | None = None
    body: bytes | None = None  # kept for JSON documents (manifests, error reports)

    def json(self) -> dict[str, Any] | None:
        if self.body is None:
            return None
        try:
            document = json.loads(self.body)
        except ValueError:
            return None
        return document if isinstance(document, dict) else None


@dataclass(frozen=True)
class ProviderJob:
    """What the emulator kept of one accepted submit."""

    request_id: str
    model: str
    identity: str | None
    media_keys: dict[str, str]
    status: str
    error: str | None
    outputs: dict[str, tuple[int, str]]  # extension -> (size, sha256) of the file it served


@dataclass
class History:
    seed: int
    records: list[JobRecord]
    notifications: list[dict[str, Any]]  # SNS message bodies
    input_objects: dict[str, StoredObject]
    output_objects: dict[str, StoredObject]
    open_uploads: list[dict[str, str]]  # {"bucket", "key", "upload_id"}
    provider_jobs: list[ProviderJob]
    requests: list[RequestLogEntry]
    crashes: list[CrashRecord] = field(default_factory=list)
    deliveries: dict[str, int] = field(default_factory=dict)  # job key -> times its event was delivered
    dead_letters: list[str] = field(default_factory=list)  # job keys whose event ended in the DLQ
    # When each job file and late medium went up: key -> virtual time.
    uploaded_at: dict[str, datetime] = field(default_factory=dict)
    error_codes: set[str] = field(default_factory=set)
    # Jobs that did not end: their execution's status and last events (job id -> ...).
    unfinished_executions: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class Violation:
    invariant: int
    job_key: str | None
    job_id: str | None
    detail: str

    @property
    def name(self) -> str:
        return INVARIANTS[self.invariant]


class _Index:
    """The history looked up by job."""

    def __init__(self, plan: SoakPlan, history: History) -> None:
        self.plan, self.history = plan, history
        self.records: dict[str, JobRecord] = {}
        for record in sorted(history.records, key=lambda r: r.received_at):
            self.records[record.job_key] = record
        self.by_id = {record.job_id: record for record in history.records}
        self.notifications: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for message in history.notifications:
            key = (message.get("input") or {}).get("job_key")
            self.notifications[str(key)].append(message)
        self.submits: dict[str, list[ProviderJob]] = {job.key: [] for job in plan.jobs}
        self.unattributed: list[ProviderJob] = []
        for provider_job in history.provider_jobs:
            owners = [job for job in plan.jobs if submitted_by(job, provider_job)]
            for owner in owners:
                self.submits[owner.key].append(provider_job)
            if len(owners) != 1:
                self.unattributed.append(provider_job)
        self.provider_by_id = {p.request_id: p for p in history.provider_jobs}

    def requests_for(self, job: SoakJob) -> list[RequestLogEntry]:
        ids = {p.request_id for p in self.submits.get(job.key, [])}
        return [
            entry
            for entry in self.history.requests
            if (job.identity is not None and entry.identity == job.identity) or (entry.request_id in ids)
        ]


def submitted_by(job: SoakJob, provider_job: ProviderJob) -> bool:
    """Whether an accepted submit is this job's: same model, same identity (title, prompt or audio key)
    and the very media keys the job names."""
    return (
        job.identity is not None
        and provider_job.identity == job.identity
        and provider_job.model == job.model
        and provider_job.media_keys == job.provider_media
    )


def check(plan: SoakPlan, history: History) -> list[Violation]:
    index = _Index(plan, history)
    violations: list[Violation] = []
    for job in plan.jobs:
        record = index.records.get(job.key)
        violations += _terminal(job, record, history)
        violations += _submits(job, record, index)
        violations += _notifications(job, record, index)
        if record is not None and record.status == JobStatus.SUCCEEDED:
            violations += _video(job, record, index)
        violations += _inbox(job, record, index)
        if record is not None and record.status == JobStatus.FAILED:
            violations += _error_report(job, record, history)
        violations += _explained(job, record, index)
    violations += _unattributed(index)
    violations += _manifests(index)
    violations += _open_uploads(index)
    return violations


# --- 1 ---------------------------------------------------------------------------------------------


def _terminal(job: SoakJob, record: JobRecord | None, history: History) -> list[Violation]:
    if record is None:
        where = " (its event is in the DLQ)" if job.key in history.dead_letters else ""
        return [Violation(1, job.key, None, f"no job record at all{where}")]
    if record.status not in TERMINAL_STATUSES:
        where = " (its event is in the DLQ)" if job.key in history.dead_letters else ""
        return [Violation(1, job.key, record.job_id, f"ended {record.status.value}{where}")]
    return []


# --- 2 ---------------------------------------------------------------------------------------------


def _submits(job: SoakJob, record: JobRecord | None, index: _Index) -> list[Violation]:
    accepted = index.submits[job.key]
    job_id = record.job_id if record else None
    ids = [p.request_id for p in accepted]
    if job.bad and accepted:
        return [Violation(2, job.key, job_id, f"bad input ({job.bad_case}) reached the provider: {ids}")]
    found: list[Violation] = []
    if len(accepted) > 1:
        found.append(Violation(2, job.key, job_id, f"{len(accepted)} accepted submits: {ids}"))
    if record is not None and record.request_id and record.request_id not in ids:
        found.append(Violation(2, job.key, job_id, f"its record's request {record.request_id} is not its submit"))
    return found


def _unattributed(index: _Index) -> list[Violation]:
    return [
        Violation(2, None, None, f"accepted submit {p.request_id} ({p.identity!r}) matches no single job")
        for p in index.unattributed
    ]


# --- 3 ---------------------------------------------------------------------------------------------


# A publisher that dies between SNS accepting the notification and its record of it (the call after
# Publish: the confirming UpdateItem) leaves a lease that a later run takes over and publishes again:
# the one way to a second notification (domain/notify.py), so only such a crash explains one.
REPUBLISH_CRASH_POINTS = ("after:sns.Publish", "before:dynamodb.UpdateItem")


def _notifications(job: SoakJob, record: JobRecord | None, index: _Index) -> list[Violation]:
    sent = index.notifications.get(job.key, [])
    job_id = record.job_id if record else None
    republished = len(sent) == 2 and any(
        crash.point in REPUBLISH_CRASH_POINTS and (job.key in crash.job_keys or job_id in crash.job_ids)
        for crash in index.history.crashes
    )
    if len(sent) != 1 and not republished:
        statuses = [n.get("status") for n in sent]
        return [Violation(3, job.key, job_id, f"{len(sent)} notifications {statuses}")]
    message = sent[0]
    if record is not None and (message.get("job_id") != record.job_id or message.get("status") != record.status.value):
        return [
            Violation(
                3,
                job.key,
                job_id,
                f"the notification says {message.get('job_id')} {message.get('status')}, "
                f"the record {record.job_id} {record.status.value}",
            )
        ]
    return []


# --- 4 ---------------------------------------------------------------------------------------------


def video_key_of(record: JobRecord) -> str | None:
    return next((key for key in record.output_keys if key.endswith(VIDEO_EXTENSIONS)), None)


def manifest_key_of(record: JobRecord) -> str | None:
    return next((key for key in record.output_keys if key.endswith(".json")), None)


def _video(job: SoakJob, record: JobRecord, index: _Index) -> list[Violation]:
    def violation(detail: str) -> list[Violation]:
        return [Violation(4, job.key, record.job_id, detail)]

    video_key, manifest_key = video_key_of(record), manifest_key_of(record)
    if video_key is None or manifest_key is None:
        return violation(f"SUCCEEDED without a video and a manifest among {record.output_keys}")
    stored = index.history.output_objects.get(video_key)
    manifest_object = index.history.output_objects.get(manifest_key)
    manifest = manifest_object.json() if manifest_object else None
    if stored is None:
        return violation(f"its video {video_key} is not in the output bucket")
    if manifest is None:
        return violation(f"its manifest {manifest_key} is missing or unreadable")
    described = manifest.get("video") or {}
    if (described.get("sha256"), described.get("size")) != (stored.sha256, stored.size):
        return violation(
            f"{video_key} is {stored.size} bytes sha256 {_short(stored.sha256)}; its manifest says "
            f"{described.get('size')} bytes sha256 {_short(described.get('sha256'))} (job {manifest.get('job_id')})"
        )
    provider = index.provider_by_id.get(record.request_id or "")
    extension = video_key.rsplit(".", 1)[-1]
    served = provider.outputs.get(extension) if provider else None
    if served is None:
        return violation(f"the provider has no {extension} for request {record.request_id}")
    if served != (stored.size, stored.sha256):
        return violation(
            f"{video_key} is {stored.size} bytes sha256 {_short(stored.sha256)}; the provider served "
            f"{served[0]} bytes sha256 {_short(served[1])} for request {record.request_id}"
        )
    return []


def _short(digest: object) -> str:
    return str(digest)[:12] if digest else str(digest)


# --- 5 ---------------------------------------------------------------------------------------------


def _manifests(index: _Index) -> list[Violation]:
    owners: dict[str, list[JobRecord]] = defaultdict(list)
    for record in index.records.values():
        if record.status == JobStatus.SUCCEEDED:
            for key in record.output_keys:
                owners[key].append(record)
    found: list[Violation] = []
    for key, stored in sorted(index.history.output_objects.items()):
        document = stored.json() if key.endswith(".json") else None
        if not document or "job_id" not in document or "video" not in document:
            continue
        described = str(document["job_id"])
        if not owners.get(key):
            described_record = index.by_id.get(described)
            status = described_record.status.value if described_record else "no record"
            job_key = described_record.job_key if described_record else None
            found.append(Violation(5, job_key, described, f"manifest {key} for a job that is {status}"))
        for owner in owners.get(key, []):
            if owner.job_id != described:
                other = index.by_id.get(described)
                found.append(
                    Violation(
                        5,
                        owner.job_key,
                        owner.job_id,
                        f"its manifest {key} describes job {described} ({other.job_key if other else '?'})",
                    )
                )
    return found


# --- 6 ---------------------------------------------------------------------------------------------


def _inbox(job: SoakJob, record: JobRecord | None, index: _Index) -> list[Violation]:
    if record is None or record.status not in TERMINAL_STATUSES:
        return []
    ended = record.completed_at or record.updated_at
    left: list[str] = []
    for key in [job.key, *job.media.values()]:
        if key not in index.history.input_objects:
            continue
        uploaded = index.history.uploaded_at.get(key)
        if uploaded is not None and uploaded > ended:
            continue  # a newer upload than the job saw
        if any(_still_needs(other, key, index) for other in index.plan.jobs if other.key != job.key):
            continue
        left.append(key)
    return [Violation(6, job.key, record.job_id, f"left in inbox/: {left}")] if left else []


def _still_needs(job: SoakJob, key: str, index: _Index) -> bool:
    """Another job names this key and has not ended: it may keep it."""
    if key not in job.media.values():
        return False
    record = index.records.get(job.key)
    return record is None or record.status not in TERMINAL_STATUSES


# --- 7 ---------------------------------------------------------------------------------------------


def expected_video_keys(job: SoakJob) -> tuple[str, ...]:
    """Where the job's video goes: its output_key, else the input path mirrored under videos/."""
    if job.output_key is not None:
        return (job.output_key,)
    stem = "videos/" + job.key.removeprefix("inbox/").removesuffix(".json")
    return (f"{stem}.mp4", f"{stem}.webm")


def _open_uploads(index: _Index) -> list[Violation]:
    owners: dict[str, list[SoakJob]] = defaultdict(list)
    for job in index.plan.jobs:
        for key in expected_video_keys(job):
            owners[key].append(job)
    found: list[Violation] = []
    for upload in index.history.open_uploads:
        jobs = owners.get(upload["key"], [])
        detail = f"open multipart upload of {upload['bucket']}/{upload['key']} ({upload['upload_id'][:16]})"
        if len(jobs) > 1:
            detail += f"; the key is shared by {[job.key for job in jobs]}"
        owner = jobs[0] if len(jobs) == 1 else None
        record = index.records.get(owner.key) if owner else None
        found.append(Violation(7, owner.key if owner else None, record.job_id if record else None, detail))
    return found


# --- 8 ---------------------------------------------------------------------------------------------


def error_report_key(job_key: str) -> str:
    return "failed/" + job_key.removeprefix("inbox/").removesuffix(".json") + ".error.json"


def _error_report(job: SoakJob, record: JobRecord, history: History) -> list[Violation]:
    key = error_report_key(job.key)
    stored = history.input_objects.get(key)
    report = stored.json() if stored else None
    if report is None:
        return [Violation(8, job.key, record.job_id, f"no readable error report at {key}")]
    code = report.get("error_code")
    problems = []
    if code not in history.error_codes:
        problems.append(f"code {code!r} is not in docs/error-codes.md")
    if code != record.error_code:
        problems.append(f"code {code!r} differs from the record's {record.error_code!r}")
    if report.get("job_id") != record.job_id:
        problems.append(f"it names job {report.get('job_id')}")
    return [Violation(8, job.key, record.job_id, f"{key}: {'; '.join(problems)}")] if problems else []


# --- 9 ---------------------------------------------------------------------------------------------


def _explained(job: SoakJob, record: JobRecord | None, index: _Index) -> list[Violation]:
    if record is None or record.status not in TERMINAL_STATUSES:
        return []  # invariant 1 covers it
    code = record.error_code if record.status == JobStatus.FAILED else None
    if job.bad:
        if code != job.expected_code:
            detail = (
                f"bad input ({job.bad_case}) ended {record.status.value} {code}, expected FAILED {job.expected_code}"
            )
            return [Violation(9, job.key, record.job_id, detail)]
        return []
    if code is None:
        return []
    cause = failure_cause(job, record, index)
    if cause is not None:
        return []
    return [Violation(9, job.key, record.job_id, f"a good job FAILED {code}: {record.error_message}")]


def failure_cause(job: SoakJob, record: JobRecord, index: _Index) -> str | None:
    """What the run did to this job that explains its failure, or None."""
    code = record.error_code
    requests = index.requests_for(job)
    faults = Counter((entry.endpoint, entry.fault) for entry in requests if entry.fault)
    if code == "PROVIDER_FAILED" and any(fault == "failed" for _, fault in faults):
        return "an injected failed render"
    if code == "RESULT_EXPIRED" and any(fault == "early_expiry" for _, fault in faults):
        return "an injected early expiry"
    if code == "OUTPUT_CONFLICT" and "output_conflict" in job.tags:
        # Planned: its twin gives the same output_key; one of the two gets the path (invariant 5 holds
        # the other to it).
        return "a planned output-key conflict"
    if code == "PROVIDER_UNAVAILABLE":
        # Documented: refused submits are retried for SubmitRetryMinutes, then the job fails unbilled.
        # Only a run of injected refusals (every submit the provider saw for it) explains it here.
        submits = [entry for entry in requests if entry.endpoint == "submit"]
        if submits and all(entry.fault for entry in submits):
            return f"every submit refused by an injected fault ({len(submits)} in a row)"
    if code == "MISSING_MEDIA" and _media_left_before_upload(job, index):
        return "its shared photo left with a sibling that ended before this job file went up (a slow drop)"
    if code == "INTERNAL":
        return _internal_cause(job, record, index, requests)
    return None


def _internal_cause(job: SoakJob, record: JobRecord, index: _Index, requests: list[RequestLogEntry]) -> str | None:
    message = record.error_message or ""
    if DEAD_LETTER_MESSAGE in message:
        # Submit died on every delivery (a crash kills the whole batch): the DeadLetter function ended it.
        crashed = any(crash.function == "submit" and job.key in crash.job_keys for crash in index.history.crashes)
        return "Submit crashed on every delivery (the DeadLetter function ended it)" if crashed else None
    if SUBMIT_UNCERTAIN_MESSAGE in message:
        # The worker that claimed the job died before recording the outcome: a crash must explain it.
        crashed = any(crash.function == "submit" and job.key in crash.job_keys for crash in index.history.crashes)
        return "a Submit crash mid-submit" if crashed else None
    ambiguous = [
        entry
        for entry in requests
        if entry.endpoint == "submit" and (entry.fault in AMBIGUOUS_SUBMIT_FAULTS or entry.status is None)
    ]
    if ambiguous:
        return f"an ambiguous submit ({ambiguous[0].fault or 'no answer'})"
    if AMBIGUOUS_SUBMIT_MESSAGE in message:
        # The client saw no (readable) answer although none was injected: a loaded machine's late
        # answer is as ambiguous to the pipeline as a lost one.
        return "an ambiguous submit (the client gave up waiting)"
    return None


def _media_left_before_upload(job: SoakJob, index: _Index) -> bool:
    """A photo leaves inbox/ with the last job using it; a job file that names it but went up after
    that job ended finds nothing, by design (no job named the photo when it left). On a loaded
    machine the drop of hundreds of job files takes long enough for a fast sibling to end first."""
    uploaded = index.history.uploaded_at.get(job.key)
    if uploaded is None:
        return False
    for sibling in index.plan.jobs:
        shared = set(sibling.media.values()) & set(job.media.values())
        record = index.records.get(sibling.key)
        if sibling.key == job.key or not shared or record is None or record.completed_at is None:
            continue
        if record.completed_at < uploaded:
            return True
    return False


# --- reporting -------------------------------------------------------------------------------------


def job_histories(plan: SoakPlan, history: History, jobs: list[SoakJob] | None = None) -> list[dict[str, Any]]:
    """Everything the run knows about each job (default: every job of the plan)."""
    index = _Index(plan, history)
    return [job_history(job, plan, history, index) for job in (plan.jobs if jobs is None else jobs)]


def job_history(job: SoakJob, plan: SoakPlan, history: History, index: _Index | None = None) -> dict[str, Any]:
    """Everything the run knows about one job, for a person reading a violation."""
    index = index or _Index(plan, history)
    record = index.records.get(job.key)
    stem = job.key.removeprefix("inbox/").removesuffix(".json")
    record_view = record.model_dump(mode="json", exclude={"render_job_json"}) if record else None
    crashes = [
        asdict(crash)
        for crash in history.crashes
        if job.key in crash.job_keys or (record is not None and record.job_id in crash.job_ids)
    ]
    cause = failure_cause(job, record, index) if record is not None and record.error_code else None
    return {
        "seed": plan.seed,
        "failure_cause": cause,
        "job": {
            "key": job.key,
            "kind": job.kind,
            "identity": job.identity,
            "media": job.media,
            "late": job.late_keys,
            "output_key": job.output_key,
            "tags": job.tags,
        },
        "record": record_view,
        "notifications": index.notifications.get(job.key, []),
        "provider_submits": [asdict(p) for p in index.submits.get(job.key, [])],
        "provider_requests": [
            {
                "at": entry.at,
                "endpoint": entry.endpoint,
                "status": entry.status,
                "fault": entry.fault,
                "request_id": entry.request_id,
                "seconds": entry.duration_seconds,
            }
            for entry in sorted(index.requests_for(job), key=lambda e: e.at)
        ],
        "crashes": crashes,
        "execution": history.unfinished_executions.get(record.job_id) if record is not None else None,
        "deliveries": history.deliveries.get(job.key),
        "in_dlq": job.key in history.dead_letters,
        "input_keys": sorted(
            key
            for key in history.input_objects
            if stem in key or any(m.removeprefix("inbox/") in key for m in job.media.values())
        ),
        "output_keys": sorted(
            key
            for key in history.output_objects
            if (record is not None and key in record.output_keys)
            or (job.output_key is not None and key.startswith(job.output_key.rsplit(".", 1)[0]))
        ),
    }


def failure_causes(plan: SoakPlan, history: History) -> dict[str, int]:
    """Failed jobs by code and by what explains them (bad input, a cause the run gave the job, or
    "unexplained": invariant 9). A Submit crash mid-submit is told apart by whether the provider
    accepted anything: a crash before the POST fails the job INTERNAL too (the pipeline cannot tell)."""
    index = _Index(plan, history)
    causes: Counter[str] = Counter()
    for job in plan.jobs:
        record = index.records.get(job.key)
        if record is None or record.status != JobStatus.FAILED:
            continue
        if job.bad:
            cause = "bad input"
        else:
            cause = failure_cause(job, record, index) or "unexplained"
            if cause == "a Submit crash mid-submit":
                posted = "after" if index.submits.get(job.key) else "before"
                cause = f"a Submit crash mid-submit ({posted} the POST)"
        causes[f"{record.error_code}: {cause}"] += 1
    return dict(sorted(causes.items()))


def summarise(violations: list[Violation]) -> dict[str, Any]:
    """{"<n> <name>": {"count": k, "jobs": [...]}} for every invariant, zero counts included."""
    table: dict[str, Any] = {}
    for number, name in INVARIANTS.items():
        hits = [v for v in violations if v.invariant == number]
        table[f"{number} {name}"] = {
            "count": len(hits),
            "jobs": sorted({v.job_key or v.job_id or "?" for v in hits}),
        }
    return table
