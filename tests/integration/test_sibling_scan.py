"""Shared media (domain/inbox.py, adapters/media_users.py): a photo leaves inbox/ with the last job
that uses it, in its folder or in folders above it, at a cost per job that does not grow with the
number of jobs sharing it.

Jobs register the media they name when Submit first reads them; a finishing job releases its media
and moves one only when no registered job uses it any more and no job file still waiting in inbox/
(in the media's folder or above) names it. Those waiting job files are read once per version (ETag)
per execution environment.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import boto3
import pytest
from moto import mock_aws

from avatar_pipeline.adapters.media_users import MediaUsers
from avatar_pipeline.adapters.storage import S3Storage
from avatar_pipeline.domain import inbox
from avatar_pipeline.domain.context import JobRef
from avatar_pipeline.domain.inbox import archive_inputs
from avatar_pipeline.domain.ports import ClosingPorts, ObjectInfo
from tests.support.fakes import World

pytestmark = pytest.mark.integration

BUCKET = "avatar-input"
STATE_TABLE = "pipeline-state"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


class CountingStorage(S3Storage):
    def __init__(self) -> None:
        super().__init__(boto3.client("s3", region_name="us-east-1"))
        self.reads: list[str] = []
        self.listings: list[str] = []

    def read(self, bucket: str, key: str, max_bytes: int, if_match: str | None = None) -> bytes:
        self.reads.append(key)
        return super().read(bucket, key, max_bytes, if_match)

    def iter_folder(self, bucket: str, prefix: str) -> Iterator[ObjectInfo]:
        self.listings.append(prefix)
        return super().iter_folder(bucket, prefix)


@pytest.fixture
def storage() -> Iterator[CountingStorage]:
    with mock_aws():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=BUCKET)
        boto3.client("dynamodb", region_name="us-east-1").create_table(
            TableName=STATE_TABLE,
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
        inbox._MEDIA_NAMED.clear()
        yield CountingStorage()
        inbox._MEDIA_NAMED.clear()


@pytest.fixture
def users(storage: CountingStorage) -> MediaUsers:
    return MediaUsers(STATE_TABLE, boto3.client("dynamodb", region_name="us-east-1"))


def put_job(key: str, photo: str, script: str = "Hello.") -> None:
    s3 = boto3.client("s3", region_name="us-east-1")
    document = {"model": "heygen-avatar-iv", "photo": photo, "script": script, "voice_id": "Coral"}
    s3.put_object(Bucket=BUCKET, Key=key, Body=json.dumps(document).encode())


def put_photo(key: str) -> None:
    boto3.client("s3", region_name="us-east-1").put_object(Bucket=BUCKET, Key=key, Body=b"\x89PNG fake")


def ref(job_key: str, photo_key: str) -> JobRef:
    return JobRef(
        job_id="job-" + job_key.replace("/", "-"),
        input_bucket=BUCKET,
        job_key=job_key,
        received_at=NOW,
        media_keys=(photo_key,),
    )


def finish(storage: CountingStorage, job: JobRef, users: MediaUsers | None = None) -> inbox.ArchivedInputs:
    """Archive the job's inputs as its ending would (only the storage and the media users are used)."""
    world = World()
    ports = ClosingPorts(
        settings=world.settings,
        clock=world.clock,
        storage=storage,
        jobs=world.jobs,
        notifier=world.notifier,
        events=world.events,
        media_users=users,
    )
    return archive_inputs(job, True, ports, NOW)


def keys() -> set[str]:
    listed = boto3.client("s3", region_name="us-east-1").list_objects_v2(Bucket=BUCKET).get("Contents", [])
    return {str(obj["Key"]) for obj in listed}


def test_each_waiting_job_file_is_read_once_however_many_jobs_finish_beside_it(storage: CountingStorage) -> None:
    """Given five job files in one folder, each with its own photo, none registered
    When they finish one after the other
    Then the job files still waiting are read 4 times in all (by the first), not 4 + 3 + 2 + 1, and
    every photo moves."""
    for number in range(5):
        put_job(f"inbox/batch/job-{number}.json", f"photo-{number}.png")
        put_photo(f"inbox/batch/photo-{number}.png")

    for number in range(5):
        finish(storage, ref(f"inbox/batch/job-{number}.json", f"inbox/batch/photo-{number}.png"))

    assert sorted(storage.reads) == [f"inbox/batch/job-{n}.json" for n in range(1, 5)]
    assert not any(key.startswith("inbox/") for key in keys())


def test_a_job_file_uploaded_again_is_read_again_and_the_photo_kept(storage: CountingStorage) -> None:
    """Given a waiting job file already read (it names its own photo), then uploaded again naming the shared one
    When a job using the shared photo finishes
    Then the new version is read, and the shared photo is copied to processed/ and stays in inbox/."""
    put_job("inbox/batch/first.json", "shared.png")
    put_job("inbox/batch/second.json", "own.png")
    put_job("inbox/batch/third.json", "third.png")
    for photo in ("shared.png", "own.png", "third.png"):
        put_photo(f"inbox/batch/{photo}")
    finish(storage, ref("inbox/batch/third.json", "inbox/batch/third.png"))  # reads first and second as they are
    put_job("inbox/batch/second.json", "shared.png", script="Now with the shared photo.")

    archived = finish(storage, ref("inbox/batch/first.json", "inbox/batch/shared.png"))

    assert storage.reads.count("inbox/batch/second.json") == 2
    assert "inbox/batch/shared.png" in keys()
    assert "processed/batch/shared.png" in keys()
    assert archived.kept == {"inbox/batch/shared.png": "processed/batch/shared.png"}
    assert "inbox/batch/shared.png" not in archived.moved


def test_a_photo_named_from_a_folder_above_stays_for_the_job_not_yet_received(storage: CountingStorage) -> None:
    """Given inbox/proj/intro.json naming shared/alice.png and inbox/proj/shared/outro.json naming
    alice.png (the same object), and only outro received so far
    When outro ends first
    Then the photo stays in inbox/ for intro (a copy goes with outro), and leaves when intro ends."""
    put_job("inbox/proj/intro.json", "shared/alice.png")
    put_job("inbox/proj/shared/outro.json", "alice.png")
    put_photo("inbox/proj/shared/alice.png")

    outro = finish(storage, ref("inbox/proj/shared/outro.json", "inbox/proj/shared/alice.png"))
    assert "inbox/proj/shared/alice.png" in keys()
    assert outro.kept == {"inbox/proj/shared/alice.png": "processed/proj/shared/alice.png"}

    intro = finish(storage, ref("inbox/proj/intro.json", "inbox/proj/shared/alice.png"))
    assert intro.moved == {
        "inbox/proj/intro.json": "processed/proj/intro.json",
        "inbox/proj/shared/alice.png": "processed/proj/shared/alice.png",
    }
    assert not any(key.startswith("inbox/") for key in keys())


def test_registered_users_share_a_photo_at_a_cost_that_does_not_grow_with_them(
    storage: CountingStorage, users: MediaUsers
) -> None:
    """Given 40 registered jobs in two folders sharing one photo (each job file leaves inbox/ as its
    job finishes)
    When they finish one after the other
    Then only the last one looks around (one listing per folder from the photo's up to inbox/), no
    job file is read, and the photo leaves inbox/ with the last of them."""
    photo = "inbox/team/faces/alice.png"
    put_photo(photo)
    jobs = [ref(f"inbox/team/{'faces/' if n % 2 else ''}clip-{n:02d}.json", photo) for n in range(40)]
    for job in jobs:
        put_job(job.job_key, "faces/alice.png" if job.job_key.count("/") == 2 else "alice.png")
        users.register(job.job_id, BUCKET, [photo], NOW)

    results = [finish(storage, job, users) for job in jobs]

    assert [bool(r.kept) for r in results] == [True] * 39 + [False]
    assert results[-1].moved[photo] == "processed/team/faces/alice.png"
    assert storage.reads == []
    assert storage.listings == ["inbox/team/faces/", "inbox/team/", "inbox/"]
    assert users.release("job-never-registered", BUCKET, photo, NOW) == 0


def test_registering_and_releasing_twice_counts_once(storage: CountingStorage, users: MediaUsers) -> None:
    """Given a job registered twice (a duplicate delivery) beside another
    When it releases twice (a retried failure branch)
    Then the count goes 2 -> 1 and stays there: the other job still holds the photo."""
    users.register("job-a", BUCKET, ["inbox/p.png"], NOW)
    users.register("job-a", BUCKET, ["inbox/p.png"], NOW)
    users.register("job-b", BUCKET, ["inbox/p.png"], NOW)
    assert users.release("job-a", BUCKET, "inbox/p.png", NOW) == 1
    assert users.release("job-a", BUCKET, "inbox/p.png", NOW) == 1
    assert users.release("job-b", BUCKET, "inbox/p.png", NOW) == 0
