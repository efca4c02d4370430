"""The soak's invariant checker (bench/soak_check.py) on planted histories: a clean history passes,
and a planted violation of each invariant is flagged as that invariant."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from avatar_local.emulator import RequestLogEntry
from avatar_local.stack.crashes import CrashRecord
from avatar_pipeline.records import JobRecord, JobStatus
from bench.soak_check import (
    History,
    ProviderJob,
    StoredObject,
    check,
    documented_error_codes,
    job_histories,
    summarise,
)
from bench.soak_jobs import SoakJob, SoakPlan, build_plan

pytestmark = pytest.mark.unit

T0 = datetime(2026, 1, 1, tzinfo=UTC)
IV = "heygen-avatar-iv"
GOOD = SoakJob(
    number=1,
    key="inbox/t/g1/job.json",
    kind="iv_photo",
    model=IV,
    body=b"{}",
    media={"photo": "inbox/t/g1/face.png"},
    identity="Title 1",
    title="Title 1",
)
BAD = SoakJob(
    number=2,
    key="inbox/t/g2/job.json",
    kind="bad:invalid_json",
    model=IV,
    body=b"{",
    identity="Title 2",
    title="Title 2",
    bad_case="invalid_json",
    expected_code="INVALID_JOB",
)
PLAN = SoakPlan(seed=1, jobs=[GOOD, BAD], media=[], late=[])
VIDEO, MANIFEST = "videos/t/g1/job.mp4", "videos/t/g1/job.json"


def record(job_id: str, key: str, status: JobStatus, **fields: object) -> JobRecord:
    values: dict[str, object] = {
        "job_id": job_id,
        "status": status,
        "input_bucket": "in",
        "job_key": key,
        "received_at": T0,
        "updated_at": T0 + timedelta(minutes=5),
        "completed_at": T0 + timedelta(minutes=5),
        "expires_at": 0,
        **fields,
    }
    return JobRecord.model_validate(values)


def json_object(key: str, document: dict[str, object]) -> StoredObject:
    body = json.dumps(document).encode()
    return StoredObject(key=key, size=len(body), etag="e", body=body)


def request(endpoint: str, identity: str, fault: str | None = None, status: int | None = 200) -> RequestLogEntry:
    return RequestLogEntry(
        at=0.0, method="GET", path="/", endpoint=endpoint, request_id="r1", video_title=identity,
        status=status, fault=fault, duration_seconds=0.01, identity=identity,
    )  # fmt: skip


def clean() -> History:
    """Job 1 rendered and delivered; job 2 (bad input) failed fast with its report."""
    return History(
        seed=1,
        records=[
            record("job-1", GOOD.key, JobStatus.SUCCEEDED, request_id="r1", output_keys=[VIDEO, MANIFEST]),
            record("job-2", BAD.key, JobStatus.FAILED, error_code="INVALID_JOB", error_message="not JSON"),
        ],
        notifications=[
            {"job_id": "job-1", "status": "SUCCEEDED", "input": {"job_key": GOOD.key}},
            {"job_id": "job-2", "status": "FAILED", "input": {"job_key": BAD.key}},
        ],
        input_objects={
            "processed/t/g1/job.json": StoredObject("processed/t/g1/job.json", 10, "e1"),
            "processed/t/g1/face.png": StoredObject("processed/t/g1/face.png", 10, "e2"),
            "failed/t/g2/job.json": StoredObject("failed/t/g2/job.json", 1, "e3"),
            "failed/t/g2/job.error.json": json_object(
                "failed/t/g2/job.error.json", {"job_id": "job-2", "error_code": "INVALID_JOB"}
            ),
        },
        output_objects={
            VIDEO: StoredObject(VIDEO, 100, "v", sha256="abc"),
            MANIFEST: json_object(MANIFEST, {"job_id": "job-1", "video": {"size": 100, "sha256": "abc"}}),
        },
        open_uploads=[],
        provider_jobs=[
            ProviderJob(
                "r1", IV, "Title 1", {"image_url": "inbox/t/g1/face.png"}, "COMPLETED", None, {"mp4": (100, "abc")}
            )
        ],
        requests=[request("submit", "Title 1"), request("status", "Title 1"), request("result", "Title 1")],
        error_codes={"INVALID_JOB", "INTERNAL", "PROVIDER_FAILED", "RESULT_EXPIRED"},
    )


def fail_good_job(history: History, message: str = "Segmind result: HTTP 500") -> None:
    """Job 1 ends FAILED INTERNAL instead, consistently everywhere but for its cause."""
    history.records[0] = record("job-1", GOOD.key, JobStatus.FAILED, request_id="r1", error_code="INTERNAL",
                                error_message=message)  # fmt: skip
    history.notifications[0] = {"job_id": "job-1", "status": "FAILED", "input": {"job_key": GOOD.key}}
    history.output_objects.clear()
    history.input_objects["failed/t/g1/job.error.json"] = json_object(
        "failed/t/g1/job.error.json", {"job_id": "job-1", "error_code": "INTERNAL"}
    )


def plant_other_manifest(history: History) -> None:
    history.output_objects[MANIFEST] = json_object(
        MANIFEST, {"job_id": "job-2", "video": {"size": 100, "sha256": "abc"}}
    )


PLANTED: dict[str, tuple[Callable[[History], object], set[int]]] = {
    "1: a job with no record": (lambda h: h.records.pop(1), {1}),
    "1: a job still rendering": (
        lambda h: h.records.__setitem__(1, record("job-2", BAD.key, JobStatus.RENDERING)),
        {1, 3},
    ),
    "2: a second accepted submit": (
        lambda h: h.provider_jobs.append(
            ProviderJob("r2", IV, "Title 1", {"image_url": "inbox/t/g1/face.png"}, "COMPLETED", None, {})
        ),
        {2},
    ),
    "2: bad input reached the provider": (
        lambda h: h.provider_jobs.append(ProviderJob("r3", IV, "Title 2", {}, "QUEUED", None, {})),
        {2},
    ),
    "3: two notifications": (lambda h: h.notifications.append(dict(h.notifications[0])), {3}),
    "3: no notification": (lambda h: h.notifications.pop(1), {3}),
    "4: the video is not what the provider served": (
        lambda h: h.provider_jobs.__setitem__(
            0,
            ProviderJob(
                "r1", IV, "Title 1", {"image_url": "inbox/t/g1/face.png"}, "COMPLETED", None, {"mp4": (100, "def")}
            ),
        ),
        {4},
    ),
    "4: the manifest describes other bytes": (
        lambda h: h.output_objects.__setitem__(
            MANIFEST, json_object(MANIFEST, {"job_id": "job-1", "video": {"size": 7}})
        ),
        {4},
    ),
    "5: the manifest is another job's": (plant_other_manifest, {5}),
    "6: an input left in inbox/": (
        lambda h: h.input_objects.__setitem__("inbox/t/g1/face.png", StoredObject("inbox/t/g1/face.png", 10, "e2")),
        {6},
    ),
    "7: an open multipart upload": (
        lambda h: h.open_uploads.append({"bucket": "out", "key": VIDEO, "upload_id": "u-1"}),
        {7},
    ),
    "8: no error report": (lambda h: h.input_objects.pop("failed/t/g2/job.error.json"), {8}),
    "8: an undocumented code": (
        lambda h: h.input_objects.__setitem__(
            "failed/t/g2/job.error.json",
            json_object("failed/t/g2/job.error.json", {"job_id": "job-2", "error_code": "OOPS"}),
        ),
        {8},
    ),
    "9: a good job failed by a transient fault": (fail_good_job, {9}),
    "9: bad input with the wrong code": (
        lambda h: h.records.__setitem__(
            1, record("job-2", BAD.key, JobStatus.FAILED, error_code="INTERNAL", error_message="?")
        ),
        {8, 9},
    ),
}


def test_a_clean_history_passes() -> None:
    assert check(PLAN, clean()) == []
    assert all(row["count"] == 0 for row in summarise([]).values())


@pytest.mark.parametrize("case", list(PLANTED))
def test_a_planted_violation_is_flagged_as_its_invariant(case: str) -> None:
    plant, expected = PLANTED[case]
    history = clean()
    plant(history)

    violations = check(PLAN, history)

    assert {v.invariant for v in violations} == expected, violations
    planted = int(case.split(":")[0])
    assert summarise(violations)[next(k for k in summarise([]) if k.startswith(f"{planted} "))]["count"] >= 1


def test_a_failure_the_run_caused_is_explained() -> None:
    """An ambiguous submit (its answer never came) may have been billed: INTERNAL is by design; so is
    a Submit that died mid-submit. The same failure without its cause is not."""
    ambiguous, crashed, uncaused = clean(), clean(), clean()
    fail_good_job(ambiguous, "submit to Segmind got no answer (ReadTimeout); it may have been accepted")
    ambiguous.requests.append(request("submit", "Title 1", fault="read_timeout", status=None))
    uncertain = "a previous submit attempt stopped before its outcome was recorded; it may have been accepted"
    fail_good_job(crashed, uncertain)
    crashed.crashes.append(CrashRecord("submit", "after:segmind.submit", 3, (GOOD.key,), (), 0.0))
    fail_good_job(uncaused, uncertain)

    assert check(PLAN, ambiguous) == []
    assert check(PLAN, crashed) == []
    assert [v.invariant for v in check(PLAN, uncaused)] == [9]


def test_submits_are_attributed_by_what_the_provider_was_given_not_by_title_alone() -> None:
    """A submit with job 1's title but another photo is not job 1's: it is reported as nobody's."""
    history = clean()
    history.provider_jobs.append(
        ProviderJob("r9", IV, "Title 1", {"image_url": "inbox/x/other.png"}, "QUEUED", None, {})
    )

    violations = check(PLAN, history)

    assert [(v.invariant, v.job_key) for v in violations] == [(2, None)]


def test_a_violation_comes_with_the_job_s_history() -> None:
    history = clean()
    fail_good_job(history)

    [item, _] = job_histories(PLAN, history)

    assert item["record"]["error_code"] == "INTERNAL"
    assert [r["endpoint"] for r in item["provider_requests"]] == ["submit", "status", "result"]
    assert item["notifications"][0]["status"] == "FAILED"
    assert "failed/t/g1/job.error.json" in item["input_keys"]


def test_the_error_codes_come_from_the_docs_table() -> None:
    codes = documented_error_codes()
    assert {"INVALID_JOB", "MISSING_MEDIA", "PROVIDER_FAILED", "INTERNAL"} <= codes
    assert all(code.isupper() for code in codes)


def test_a_seed_reproduces_the_jobs_byte_for_byte() -> None:
    first, again, other = build_plan(5, 60), build_plan(5, 60), build_plan(6, 60)

    assert [(j.key, j.body) for j in first.jobs] == [(j.key, j.body) for j in again.jobs]
    assert [(u.key, u.body, u.delay_seconds) for u in first.media + first.late] == [
        (u.key, u.body, u.delay_seconds) for u in again.media + again.late
    ]
    assert [j.body for j in first.jobs] != [j.body for j in other.jobs]
    counts = first.counts()
    assert counts["jobs"] == 60
    assert (counts["bad_input"], counts["late_media"]) == (6, 3)
    assert counts["cross_folder_photo"] >= 2
    assert counts["output_key_conflict"] >= 2
    assert len({job.identity for job in first.jobs}) == 60


def test_a_photo_gone_with_a_sibling_that_ended_before_the_job_file_went_up_is_explained() -> None:
    """A shared photo leaves with the last job using it: a job file uploaded after that job ended
    finds nothing (no job named the photo when it left). One uploaded before must still find it."""
    sibling = SoakJob(
        number=3, key="inbox/t/g1/take-2.json", kind="iv_photo", model=IV, body=b"{}",
        media={"photo": "inbox/t/g1/face.png"}, identity="Title 3", title="Title 3",
    )  # fmt: skip
    plan = SoakPlan(seed=1, jobs=[GOOD, BAD, sibling], media=[], late=[])

    def history(job_file_up: datetime) -> History:
        base = clean()
        fail_good_job(base, "inbox/t/g1/face.png was not found beside the job file (waited 600 s)")
        base.records[0] = base.records[0].model_copy(update={"error_code": "MISSING_MEDIA"})
        base.records.append(record("job-3", sibling.key, JobStatus.SUCCEEDED, completed_at=T0 + timedelta(minutes=2)))
        base.uploaded_at[GOOD.key] = job_file_up
        return base

    late_upload = [v for v in check(plan, history(T0 + timedelta(minutes=3))) if v.invariant == 9]
    early_upload = [v for v in check(plan, history(T0 + timedelta(minutes=1))) if v.invariant == 9]

    assert late_upload == []
    assert [v.job_key for v in early_upload] == [GOOD.key]


def test_a_submit_refused_every_time_until_the_window_closed_is_explained() -> None:
    """PROVIDER_UNAVAILABLE is the documented end of a run of refusals: explained when every submit the
    provider saw for the job was an injected refusal, not when one got through unfaulted."""

    def history(faults: list[str | None]) -> History:
        base = clean()
        fail_good_job(base, "Segmind did not accept the submit in 33 minutes of trying")
        base.records[0] = base.records[0].model_copy(update={"error_code": "PROVIDER_UNAVAILABLE"})
        base.requests = [request("submit", "Title 1", fault=fault, status=502 if fault else 200) for fault in faults]
        return base

    refused = [v for v in check(PLAN, history(["http_502", "http_502", "http_500"])) if v.invariant == 9]
    one_through = [v for v in check(PLAN, history(["http_502", None])) if v.invariant == 9]

    assert refused == []
    assert [v.job_key for v in one_through] == [GOOD.key]
