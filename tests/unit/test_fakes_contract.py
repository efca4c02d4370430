"""The fakes keep the adapters' promises: the same assertions run against each fake
(tests/support/fakes.py) and the adapter it stands in for, on moto. A fake that drifts from its
adapter fails here, not in a unit test that then proves nothing."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from decimal import Decimal

import boto3
import pytest
from moto import mock_aws

from avatar_local.stack.local_aws import bucket_location
from avatar_local.stack.s3_conditions import copy_source_if_match_enforced
from avatar_pipeline.adapters.jobs_table import JobsTable
from avatar_pipeline.adapters.media_users import MediaUsers
from avatar_pipeline.adapters.output_claims import OutputClaims
from avatar_pipeline.adapters.spend_ledger import SpendLedger
from avatar_pipeline.adapters.storage import S3Storage
from avatar_pipeline.domain.context import Ending, JobRef
from avatar_pipeline.domain.ports import JobStore, ObjectReplaced, ObjectTooLarge, Storage
from avatar_pipeline.domain.ports import MediaUsers as MediaUsersPort
from avatar_pipeline.domain.ports import OutputClaims as OutputClaimsPort
from avatar_pipeline.domain.ports import SpendLedger as SpendLedgerPort
from avatar_pipeline.records import CampaignRowRef, JobStatus
from tests.support import TEST_REGION
from tests.support.fakes import T0, FakeJobStore, FakeMediaUsers, FakeOutputClaims, FakeSpendLedger, FakeStorage

pytestmark = pytest.mark.unit

BUCKET = "contract-bucket"


@pytest.fixture(scope="module")
def moto_account() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {
            "AWS_ACCESS_KEY_ID": "t",
            "AWS_SECRET_ACCESS_KEY": "t",
            "AWS_DEFAULT_REGION": TEST_REGION,
        }.items():
            patch.setenv(name, value)
        # moto ignores CopySourceIfMatch; S3 does not (the offline stack closes that gap the same way).
        with mock_aws(), copy_source_if_match_enforced():
            boto3.client("s3").create_bucket(Bucket=BUCKET, **bucket_location(TEST_REGION))
            dynamodb = boto3.client("dynamodb")
            for table, key in (("jobs", "job_id"), ("state", "pk")):
                dynamodb.create_table(
                    TableName=table,
                    KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
                    AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
                    BillingMode="PAY_PER_REQUEST",
                )
            yield


_counter = iter(range(1_000_000))


def unique(prefix: str) -> str:
    return f"{prefix}-{next(_counter)}"


# --- storage -------------------------------------------------------------------------------------------------


def put_real(key: str, body: bytes) -> str:
    return str(boto3.client("s3").put_object(Bucket=BUCKET, Key=key, Body=body)["ETag"]).strip('"')


@pytest.fixture(params=["fake", "s3"])
def storage(request: pytest.FixtureRequest, moto_account: None) -> tuple[Storage, Callable[[str, bytes], str]]:
    if request.param == "fake":
        fake = FakeStorage()
        return fake, lambda key, body: fake.put(BUCKET, key, body)
    return S3Storage(boto3.client("s3")), put_real


def test_storage_reads_only_the_object_asked_for(storage: tuple[Storage, Callable[[str, bytes], str]]) -> None:
    store, put = storage
    folder = unique("inbox/f")
    first = put(f"{folder}/a.json", b"first")
    put(f"{folder}/a.json", b"second")

    with pytest.raises(ObjectReplaced):
        store.read(BUCKET, f"{folder}/a.json", 100, if_match=first)
    with pytest.raises(ObjectTooLarge):
        store.read(BUCKET, f"{folder}/a.json", 3)
    assert store.read(BUCKET, f"{folder}/a.json", 100) == b"second"


def test_storage_moves_only_the_object_asked_for(storage: tuple[Storage, Callable[[str, bytes], str]]) -> None:
    store, put = storage
    folder = unique("inbox/m")
    old = put(f"{folder}/p.png", b"old")
    new = put(f"{folder}/p.png", b"new")

    with pytest.raises(ObjectReplaced):
        store.move(BUCKET, f"{folder}/p.png", f"{folder}/moved.png", if_match=old)
    assert store.head(BUCKET, f"{folder}/moved.png") is None
    assert store.move(BUCKET, f"{folder}/p.png", f"{folder}/moved.png", if_match=new) is True
    assert store.head(BUCKET, f"{folder}/p.png") is None
    assert store.move(BUCKET, f"{folder}/p.png", f"{folder}/moved.png", if_match=new) is False


def test_storage_lists_a_folder_without_its_subfolders(storage: tuple[Storage, Callable[[str, bytes], str]]) -> None:
    store, put = storage
    folder = unique("inbox/l")
    for key in ("a.json", "b.png", "sub/c.json"):
        put(f"{folder}/{key}", b"x")

    assert sorted(info.key for info in store.iter_folder(BUCKET, f"{folder}/")) == [
        f"{folder}/a.json",
        f"{folder}/b.png",
    ]


# --- the jobs table ----------------------------------------------------------------------------------------------


@pytest.fixture(params=["fake", "dynamodb"])
def jobs(request: pytest.FixtureRequest, moto_account: None) -> JobStore:
    if request.param == "fake":
        return FakeJobStore()
    return JobsTable(boto3.resource("dynamodb").Table("jobs"))


def new_ref() -> JobRef:
    return JobRef(
        job_id=unique("job"), input_bucket=BUCKET, job_key="inbox/a.json", received_at=T0, model="heygen-avatar-v"
    )


def test_only_one_worker_claims_a_job_and_a_released_claim_can_be_taken_again(jobs: JobStore) -> None:
    ref = new_ref()
    claim = ref.claim_record(T0, timedelta(seconds=120), "msg-1", 30)

    assert jobs.claim_submission(claim) is True
    assert jobs.claim_submission(claim) is False
    jobs.release_submission(ref.job_id)
    assert jobs.get(ref.job_id) is None
    assert jobs.claim_submission(claim) is True


def test_a_submitted_job_moves_on_and_its_claim_is_never_released(jobs: JobStore) -> None:
    ref = new_ref()
    jobs.claim_submission(ref.claim_record(T0, timedelta(seconds=120), "msg-1", 30))
    jobs.mark_submitted(ref.job_id, "request-1", T0, "{}")
    jobs.release_submission(ref.job_id)
    jobs.mark_rendering(ref.job_id, "arn:execution", T0)
    jobs.record_poll(ref.job_id, "PROCESSING", 3, T0)

    record = jobs.get(ref.job_id)
    assert record is not None
    assert (record.status, record.request_id, record.status_calls) == (JobStatus.RENDERING, "request-1", 3)


def failed(message: str) -> Ending:
    return Ending(JobStatus.FAILED, Decimal("0"), "none", error_code="INVALID_JOB", error_message=message)


def test_one_notification_claim_per_job_and_an_ending_once_notified_stays(jobs: JobStore) -> None:
    ref = new_ref()
    jobs.save_terminal(ref.terminal_record(failed("first"), T0, 30, None))

    assert jobs.claim_notification(ref.job_id, T0, T0 + timedelta(seconds=30)) == "claimed"
    assert jobs.claim_notification(ref.job_id, T0, T0 + timedelta(seconds=30)) == "busy"
    jobs.confirm_notification(ref.job_id, "FAILED")
    assert jobs.claim_notification(ref.job_id, T0, T0 + timedelta(seconds=30)) == "sent"
    jobs.save_terminal(ref.terminal_record(failed("second"), T0, 30, None))
    record = jobs.get(ref.job_id)
    assert record is not None
    assert (record.error_message, record.notified_status) == ("first", "FAILED")


def test_a_notification_lease_left_by_a_dead_publisher_can_be_taken_once_it_expires(jobs: JobStore) -> None:
    ref = new_ref()
    jobs.save_terminal(ref.terminal_record(failed("first"), T0, 30, None))
    assert jobs.claim_notification(ref.job_id, T0, T0 + timedelta(seconds=30)) == "claimed"

    assert jobs.claim_notification(ref.job_id, T0 + timedelta(seconds=29), T0 + timedelta(seconds=59)) == "busy"
    assert jobs.claim_notification(ref.job_id, T0 + timedelta(seconds=31), T0 + timedelta(seconds=61)) == "claimed"
    jobs.release_notification(ref.job_id)
    assert jobs.claim_notification(ref.job_id, T0, T0 + timedelta(seconds=30)) == "claimed"


def test_a_job_that_succeeded_never_turns_failed(jobs: JobStore) -> None:
    ref = new_ref()
    jobs.save_terminal(ref.terminal_record(Ending(JobStatus.SUCCEEDED, Decimal("2.20"), "estimate"), T0, 30, None))
    jobs.save_terminal(ref.terminal_record(failed("late"), T0, 30, None))

    record = jobs.get(ref.job_id)
    assert record is not None
    assert record.status is JobStatus.SUCCEEDED


def test_a_campaign_rows_failed_job_is_claimed_again_only_by_a_later_run(jobs: JobStore) -> None:
    """A resume renders a row that failed before under the same job id: its claim replaces the FAILED
    record of the earlier run, once; the same run, or a job that succeeded, is never claimed again."""
    run_1 = CampaignRowRef(campaign_id="c", campaign_key="inbox/a.campaign.json", run_id="run-1", row_id="r1")
    run_2 = run_1.model_copy(update={"run_id": "run-2"})
    ref = new_ref()
    first = JobRef(**{**ref.__dict__, "campaign_row": run_1})
    jobs.save_terminal(first.terminal_record(failed("blocked"), T0, 30, None))
    claim = first.claim_record(T0, timedelta(seconds=120), "msg-1", 30)
    assert jobs.claim_submission(claim) is False

    resumed = JobRef(**{**ref.__dict__, "campaign_row": run_2})
    again = resumed.claim_record(T0, timedelta(seconds=120), "msg-2", 30)
    assert jobs.claim_submission(again) is True
    assert jobs.claim_submission(again) is False
    record = jobs.get(ref.job_id)
    assert record is not None
    assert (record.status, record.campaign_row) == (JobStatus.SUBMITTING, run_2)


# --- shared state ----------------------------------------------------------------------------------------------------


@pytest.fixture(params=["fake", "dynamodb"])
def media_users(request: pytest.FixtureRequest, moto_account: None) -> MediaUsersPort:
    return FakeMediaUsers() if request.param == "fake" else MediaUsers("state", boto3.client("dynamodb"))


def test_media_users_count_each_job_once(media_users: MediaUsersPort) -> None:
    key = unique("inbox/p") + ".png"
    media_users.register("job-a", BUCKET, [key], T0)
    media_users.register("job-a", BUCKET, [key], T0)
    media_users.register("job-b", BUCKET, [key], T0)

    assert media_users.release("job-a", BUCKET, key, T0) == 1
    assert media_users.release("job-a", BUCKET, key, T0) == 1
    assert media_users.release("job-b", BUCKET, key, T0) == 0
    assert media_users.release("job-c", BUCKET, key, T0) == 0


@pytest.fixture(params=["fake", "dynamodb"])
def claims(request: pytest.FixtureRequest, moto_account: None) -> OutputClaimsPort:
    return FakeOutputClaims() if request.param == "fake" else OutputClaims("state", boto3.client("dynamodb"))


def test_an_output_path_has_one_holder_until_it_is_released_or_taken_over(claims: OutputClaimsPort) -> None:
    stem = unique("videos/x")
    assert claims.claim("job-a", BUCKET, stem) is None
    assert claims.claim("job-a", BUCKET, stem) is None
    assert claims.claim("job-b", BUCKET, stem) == "job-a"
    assert claims.take_over("job-b", BUCKET, stem, from_job="job-c") is False
    assert claims.take_over("job-b", BUCKET, stem, from_job="job-a") is True
    claims.release("job-a", BUCKET, stem)  # not the holder any more: nothing happens
    assert claims.claim("job-c", BUCKET, stem) == "job-b"
    claims.release("job-b", BUCKET, stem)
    assert claims.claim("job-c", BUCKET, stem) is None


def test_a_job_s_reservation_is_taken_back_once(jobs: JobStore) -> None:
    ref = new_ref()
    jobs.claim_submission(ref.claim_record(T0, timedelta(seconds=120), "msg-1", 30))
    jobs.mark_reserved(ref.job_id, Decimal("2.20"), "2026-12-01")

    assert jobs.take_back_reservation(ref.job_id) == (Decimal("2.20"), "2026-12-01")
    assert jobs.take_back_reservation(ref.job_id) is None


def test_a_job_s_cost_is_settled_once(jobs: JobStore) -> None:
    ref = new_ref()
    jobs.claim_submission(ref.claim_record(T0, timedelta(seconds=120), "msg-1", 30))

    assert jobs.mark_cost_settled(ref.job_id) is True
    assert jobs.mark_cost_settled(ref.job_id) is False
    assert jobs.mark_cost_settled("job-unknown") is False


@pytest.fixture(params=["fake", "dynamodb"])
def ledger(request: pytest.FixtureRequest, moto_account: None) -> SpendLedgerPort:
    return FakeSpendLedger() if request.param == "fake" else SpendLedger("state", boto3.client("dynamodb"))


def test_the_ledger_refuses_what_would_pass_the_ceiling_and_takes_what_fits(ledger: SpendLedgerPort) -> None:
    day = unique("2026-12")  # a day of its own in the shared table
    assert ledger.reserve(day, Decimal("2.20"), Decimal("5.00")) == Decimal("2.20")
    assert ledger.reserve(day, Decimal("2.20"), Decimal("5.00")) == Decimal("4.40")
    assert ledger.reserve(day, Decimal("2.20"), Decimal("5.00")) is None
    assert ledger.reserve(day, Decimal("0.60"), Decimal("5.00")) == Decimal("5.00")
    ledger.adjust(day, Decimal("-2.20"))
    assert ledger.total(day) == Decimal("2.80")
    assert ledger.reserve(day, Decimal("9.99"), None) == Decimal("12.79")
