"""The sibling scan behind shared photos (domain/inbox.py): a photo several job files in a folder
name leaves with the last of them, so each finishing job reads its siblings. Read once per version
(ETag) per execution environment, not once per finishing job: a folder of N job files would
otherwise cost N x N reads."""

from __future__ import annotations

import json
from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws

from avatar_pipeline.adapters.storage import S3Storage
from avatar_pipeline.domain import inbox
from avatar_pipeline.domain.inbox import archive_inputs

pytestmark = pytest.mark.integration

BUCKET = "avatar-input"


class CountingStorage(S3Storage):
    def __init__(self) -> None:
        super().__init__(boto3.client("s3", region_name="us-east-1"))
        self.reads: list[str] = []

    def read(self, bucket: str, key: str, max_bytes: int, if_match: str | None = None) -> bytes:
        self.reads.append(key)
        return super().read(bucket, key, max_bytes, if_match)


@pytest.fixture
def storage() -> Iterator[CountingStorage]:
    with mock_aws():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=BUCKET)
        inbox._SIBLING_REFERENCES.clear()
        yield CountingStorage()
        inbox._SIBLING_REFERENCES.clear()


def put_job(name: str, photo: str, script: str = "Hello.") -> None:
    s3 = boto3.client("s3", region_name="us-east-1")
    document = {"model": "heygen-avatar-iv", "photo": photo, "script": script, "voice_id": "Coral"}
    s3.put_object(Bucket=BUCKET, Key=f"inbox/batch/{name}.json", Body=json.dumps(document).encode())
    s3.put_object(Bucket=BUCKET, Key=f"inbox/batch/{photo}", Body=b"\x89PNG fake")


def finish(storage: CountingStorage, name: str, photo: str) -> dict[str, str]:
    archived = archive_inputs(storage, BUCKET, f"inbox/batch/{name}.json", [f"inbox/batch/{photo}"], succeeded=True)
    return archived.moved


def keys() -> set[str]:
    listed = boto3.client("s3", region_name="us-east-1").list_objects_v2(Bucket=BUCKET).get("Contents", [])
    return {str(obj["Key"]) for obj in listed}


def test_each_sibling_is_read_once_however_many_jobs_finish_beside_it(storage: CountingStorage) -> None:
    """Given five job files in one folder, each with its own photo
    When they finish one after the other
    Then the siblings are read 4 times in all (by the first), not 4 + 3 + 2 + 1, and every photo moves."""
    for number in range(5):
        put_job(f"job-{number}", f"photo-{number}.png")

    for number in range(5):
        finish(storage, f"job-{number}", f"photo-{number}.png")

    assert sorted(storage.reads) == [f"inbox/batch/job-{n}.json" for n in range(1, 5)]
    assert not any(key.startswith("inbox/") for key in keys())


def test_a_sibling_uploaded_again_is_read_again_and_its_photo_kept(storage: CountingStorage) -> None:
    """Given a sibling already read (it names its own photo), then uploaded again naming the shared one
    When a job using the shared photo finishes
    Then the new version is read, and the shared photo is copied to processed/ and stays in inbox/."""
    put_job("first", "shared.png")
    put_job("second", "own.png")
    put_job("third", "third.png")
    finish(storage, "third", "third.png")  # reads first and second as they are now
    put_job("second", "shared.png", script="Now with the shared photo.")

    moved = finish(storage, "first", "shared.png")

    assert storage.reads.count("inbox/batch/second.json") == 2
    assert "inbox/batch/shared.png" in keys()
    assert "processed/batch/shared.png" in keys()
    assert moved["inbox/batch/shared.png"] == "processed/batch/shared.png"
