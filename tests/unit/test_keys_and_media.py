"""Object keys (DESIGN.md sections 3 and 4) and recognising media by its bytes."""

from __future__ import annotations

import re

import pytest

from avatar_pipeline.keys import (
    UnsafeKey,
    archived_key,
    campaign_approval_key,
    campaign_name,
    campaign_output_folder,
    campaign_report_key,
    decode_event_key,
    default_row_video_key,
    default_video_key,
    derive_job_id,
    derive_row_job_id,
    error_report_key,
    is_campaign_file_key,
    is_job_file_key,
    resolve_media_key,
    row_input_key,
    sibling_key,
    validate_output_key,
)
from avatar_pipeline.media import looks_like_srt, sniff_audio, sniff_image, sniff_video

pytestmark = pytest.mark.unit

JOB_KEY = "inbox/campaign-a/alice-welcome.json"
EXECUTION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}$")

# --- decoding S3 event keys -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "decoded"),
    [
        ("inbox/alice+welcome.json", "inbox/alice welcome.json"),
        ("inbox/c%2B%2B.json", "inbox/c++.json"),
        ("inbox/caf%C3%A9/%E6%97%A5%E6%9C%AC.json", "inbox/café/日本.json"),
        ("inbox/100%25.json", "inbox/100%.json"),
        ("inbox/a%2Fb.json", "inbox/a/b.json"),
        ("inbox/plain.json", "inbox/plain.json"),
    ],
)
def test_decode_event_key(raw: str, decoded: str) -> None:
    """Given a key as S3 event notifications encode it
    When it is decoded
    Then '+' is a space, '%2B' a plus, and UTF-8 percent-escapes are characters."""
    assert decode_event_key(raw) == decoded


def test_decode_event_key_decodes_exactly_once() -> None:
    """Given a key whose real name contains a percent-escape ('%2B' literally, encoded as '%252B')
    When it is decoded
    Then only one layer of encoding is removed."""
    assert decode_event_key("inbox/a%252B.json") == "inbox/a%2B.json"


# --- job ids ----------------------------------------------------------------------------------------


def test_same_upload_gives_the_same_job_id() -> None:
    """Given the same bucket, key, ETag and sequencer (a redelivered event)
    When the job id is derived twice
    Then it is the same id."""
    first = derive_job_id("input", JOB_KEY, '"etag-1"', "0055AED6DCD90281E5")
    second = derive_job_id("input", JOB_KEY, '"etag-1"', "0055AED6DCD90281E5")
    assert first == second


@pytest.mark.parametrize(
    "changed",
    [
        ("other-bucket", JOB_KEY, '"etag-1"', "0055AED6DCD90281E5"),
        ("input", "inbox/campaign-a/bob.json", '"etag-1"', "0055AED6DCD90281E5"),
        ("input", JOB_KEY, '"etag-2"', "0055AED6DCD90281E5"),
        ("input", JOB_KEY, '"etag-1"', "0055AED6DCD90281E6"),
        ("input", JOB_KEY, '"etag-1"', None),
    ],
    ids=["bucket", "key", "etag", "sequencer", "no-sequencer"],
)
def test_a_different_upload_gives_a_different_job_id(changed: tuple[str, str, str, str | None]) -> None:
    """Given a different bucket, key, ETag or sequencer (a new upload)
    When the job id is derived
    Then it differs from the original's."""
    original = derive_job_id("input", JOB_KEY, '"etag-1"', "0055AED6DCD90281E5")
    assert derive_job_id(*changed) != original


@pytest.mark.parametrize(
    "key",
    [JOB_KEY, "inbox/" + "é/" * 400 + "x.json", "inbox/with space & (parens)!.json", "inbox/日本語.json"],
)
def test_job_id_is_a_valid_execution_name(key: str) -> None:
    """Given any job key, however long or exotic
    When the job id is derived
    Then it is at most 80 characters of [A-Za-z0-9-_] (a Step Functions execution name)."""
    job_id = derive_job_id("input-bucket", key, "3858f62230ac3c915f300c664312c11f-9", "0A1B2C3D4E5F")
    assert EXECUTION_NAME.match(job_id)
    assert len(job_id) <= 80


def test_job_id_fields_cannot_be_shifted_into_each_other() -> None:
    """Given two uploads whose key and ETag differ only in where a boundary falls
    When their ids are derived
    Then the ids differ."""
    assert derive_job_id("b", "inbox/a.json", "xy", None) != derive_job_id("b", "inbox/a.jsonx", "y", None)


# --- media references -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reference", "resolved"),
    [
        ("alice.png", "inbox/campaign-a/alice.png"),
        ("./alice.png", "inbox/campaign-a/alice.png"),
        ("photos/alice.png", "inbox/campaign-a/photos/alice.png"),
        ("photos/2026/alice smiling.png", "inbox/campaign-a/photos/2026/alice smiling.png"),
    ],
)
def test_media_reference_resolves_beside_the_job(reference: str, resolved: str) -> None:
    """Given a photo/audio reference relative to the job file's folder (sibling or subfolder)
    When it is resolved
    Then it names that file under inbox/."""
    assert resolve_media_key(JOB_KEY, reference) == resolved


def test_media_reference_beside_a_top_level_job() -> None:
    """Given a job directly in inbox/
    When a sibling reference is resolved
    Then it stays in inbox/."""
    assert resolve_media_key("inbox/job.json", "alice.png") == "inbox/alice.png"


@pytest.mark.parametrize(
    "reference",
    [
        "../alice.png",
        "../../etc/passwd",
        "photos/../../alice.png",
        "photos/../alice.png",
        "..",
        "/inbox/campaign-a/alice.png",
        "/alice.png",
        "alice\x00.png",
        "alice\n.png",
        "alice\r.png",
        "alice\x7f.png",
        "photos\\alice.png",
        "",
        "a" * 1025,
        "alice-welcome.json",
    ],
    ids=[
        "parent",
        "deep-parent",
        "nested-escape",
        "nested-dotdot",
        "dotdot",
        "absolute-inbox",
        "absolute",
        "nul",
        "newline",
        "carriage-return",
        "del",
        "backslash",
        "empty",
        "too-long",
        "the-job-itself",
    ],
)
def test_unsafe_media_references_are_rejected(reference: str) -> None:
    """Given a reference that climbs out of the folder, is absolute, has control characters, is not a valid
    S3 key, or names the job file itself
    When it is resolved
    Then UnsafeKey is raised."""
    with pytest.raises(UnsafeKey):
        resolve_media_key(JOB_KEY, reference)


@pytest.mark.parametrize(
    "reference",
    ["a.png", "./a.png", "x/./y/a.png", "x//a.png", "x/y/z/a.png", "...png", "..a.png", "a..png", ".hidden.png"],
)
def test_resolved_media_keys_stay_under_the_jobs_folder(reference: str) -> None:
    """Given any reference that is accepted
    When it is resolved
    Then the result stays under inbox/ and the job's own folder, without '..' segments."""
    resolved = resolve_media_key(JOB_KEY, reference)
    assert resolved.startswith("inbox/campaign-a/")
    assert ".." not in resolved.split("/")


# --- output keys ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("job_key", "extension", "video_key"),
    [
        ("inbox/a/b.json", "mp4", "videos/a/b.mp4"),
        ("inbox/a/b.json", "webm", "videos/a/b.webm"),
        ("inbox/welcome.json", "mp4", "videos/welcome.mp4"),
        ("inbox/campaign a/alice.v2.json", "mp4", "videos/campaign a/alice.v2.mp4"),
    ],
)
def test_default_video_key_mirrors_the_inbox_path(job_key: str, extension: str, video_key: str) -> None:
    """Given a job without output_key (DESIGN.md section 4: inbox/a/b.json -> videos/a/b.mp4)
    When its video key is derived
    Then the input path is mirrored under videos/ with the video's extension."""
    assert default_video_key(job_key, extension) == video_key


@pytest.mark.parametrize(
    ("video_key", "extension", "expected"),
    [
        ("videos/a/b.mp4", "srt", "videos/a/b.srt"),
        ("videos/a/b.mp4", "json", "videos/a/b.json"),
        ("videos/a/b.webm", "srt", "videos/a/b.srt"),
        ("campaign-a/alice-welcome.mp4", "json", "campaign-a/alice-welcome.json"),
        ("videos/v1.2/clip.mp4", "srt", "videos/v1.2/clip.srt"),
    ],
)
def test_sibling_key_sits_beside_the_video(video_key: str, extension: str, expected: str) -> None:
    """Given a video key
    When the captions or manifest key is derived
    Then it is the same path with the new extension."""
    assert sibling_key(video_key, extension) == expected


@pytest.mark.parametrize(
    ("input_key", "succeeded", "expected"),
    [
        ("inbox/a/b.json", True, "processed/a/b.json"),
        ("inbox/a/alice.png", True, "processed/a/alice.png"),
        ("inbox/a/b.json", False, "failed/a/b.json"),
        ("inbox/a/hello.wav", False, "failed/a/hello.wav"),
    ],
)
def test_archived_key(input_key: str, succeeded: bool, expected: str) -> None:
    """Given an input of a job in a terminal state
    When its archive key is derived
    Then it moves to processed/ (success) or failed/ (failure), keeping its path."""
    assert archived_key(input_key, succeeded) == expected


def test_error_report_key_sits_beside_the_failed_inputs() -> None:
    """Given a failed job inbox/a/b.json
    When its error report key is derived
    Then it is failed/a/b.error.json."""
    assert error_report_key("inbox/a/b.json") == "failed/a/b.error.json"


@pytest.mark.parametrize("key", ["videos/a/b.json", "a/b.json", "inboxx/b.json"])
def test_keys_outside_inbox_cannot_be_archived(key: str) -> None:
    """Given a key outside inbox/
    When an archive key is asked for
    Then UnsafeKey is raised."""
    with pytest.raises(UnsafeKey):
        archived_key(key, succeeded=True)


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("inbox/a/b.json", True),
        ("inbox/b.json", True),
        ("inbox/a.json", True),
        ("inbox/.json", False),
        ("inbox/a/b.png", False),
        ("inbox/a/b.json.tmp", False),
        ("videos/a/b.json", False),
        ("processed/a/b.json", False),
        ("b.json", False),
        ("inbox/", False),
        ("inbox/a/spring.campaign.json", False),
        ("inbox/spring.campaign.json", False),
    ],
)
def test_is_job_file_key(key: str, expected: bool) -> None:
    """Given an object key
    When it is classified
    Then only .json files under inbox/ are job files, and a campaign file is not one."""
    assert is_job_file_key(key) is expected


# --- campaigns --------------------------------------------------------------------------------------

CAMPAIGN_KEY = "inbox/shop/spring.campaign.json"


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("inbox/shop/spring.campaign.json", True),
        ("inbox/spring.campaign.json", True),
        ("inbox/a/b/c/x.campaign.json", True),
        ("inbox/.campaign.json", False),
        ("inbox/shop/.campaign.json", False),
        ("inbox/shop/spring.json", False),
        ("inbox/shop/spring.campaign.json.tmp", False),
        ("processed/shop/spring.campaign.json", False),
        ("spring.campaign.json", False),
    ],
)
def test_is_campaign_file_key(key: str, expected: bool) -> None:
    """Given an object key
    When it is classified
    Then only inbox/**/<name>.campaign.json with a non-empty name is a campaign file."""
    assert is_campaign_file_key(key) is expected


def test_campaign_outputs_live_in_one_folder_named_after_the_campaign() -> None:
    """Given a campaign file in inbox/shop/
    When its output keys are derived
    Then the reports and default row videos share campaigns/shop/spring/, and the approval sits beside it."""
    assert campaign_name(CAMPAIGN_KEY) == "spring"
    assert campaign_output_folder(CAMPAIGN_KEY) == "campaigns/shop/spring/"
    assert [campaign_report_key(CAMPAIGN_KEY, f) for f in ("json", "csv", "html")] == [
        "campaigns/shop/spring/report.json",
        "campaigns/shop/spring/report.csv",
        "campaigns/shop/spring/report.html",
    ]
    assert campaign_approval_key(CAMPAIGN_KEY) == "inbox/shop/spring.approve"
    assert default_row_video_key(CAMPAIGN_KEY, "cust-7", "mp4") == "campaigns/shop/spring/cust-7.mp4"
    assert default_row_video_key(CAMPAIGN_KEY, "7", "webm") == "campaigns/shop/spring/7.webm"
    assert campaign_output_folder("inbox/top.campaign.json") == "campaigns/top/"
    assert row_input_key(CAMPAIGN_KEY, "7") == "inbox/shop/spring.campaign.json#7"


def test_campaign_keys_refuse_what_is_not_a_campaign_file_or_an_unknown_report() -> None:
    """Given a job file's key, or a report format that does not exist
    When campaign keys are derived from it
    Then it is refused rather than given a folder."""
    with pytest.raises(UnsafeKey):
        campaign_output_folder("inbox/shop/spring.json")
    with pytest.raises(ValueError, match="report format"):
        campaign_report_key(CAMPAIGN_KEY, "pdf")


@pytest.mark.parametrize("row_id", ["a/b", "..", ".", "", " padded", "x" * 201, "tab\there", "back\\slash"])
def test_row_ids_that_are_not_one_safe_file_name_are_refused(row_id: str) -> None:
    """Given a row id that would escape the campaign folder or is not a file name
    When a default video key is derived for it
    Then UnsafeKey is raised."""
    with pytest.raises(UnsafeKey):
        default_row_video_key(CAMPAIGN_KEY, row_id, "mp4")


def test_row_job_ids_are_deterministic_per_bucket_campaign_and_row() -> None:
    """Given the same row of the same campaign file (a redelivered split, or the campaign uploaded again)
    When its job id is derived
    Then it is the same id, a valid execution name; another row, campaign or bucket gives another id."""
    first = derive_row_job_id("in", CAMPAIGN_KEY, "7")
    assert first == derive_row_job_id("in", CAMPAIGN_KEY, "7")
    assert first.startswith("row-")
    assert EXECUTION_NAME.fullmatch(first)
    others = {
        derive_row_job_id("in", CAMPAIGN_KEY, "8"),
        derive_row_job_id("in", "inbox/shop/autumn.campaign.json", "7"),
        derive_row_job_id("other", CAMPAIGN_KEY, "7"),
    }
    assert first not in others
    assert len(others) == 3


@pytest.mark.parametrize("key", ["campaign-a/alice.mp4", "a/b/c/d.webm", "alice welcome.mp4"])
def test_validate_output_key_accepts_relative_keys(key: str) -> None:
    """Given a clean relative output key
    When it is validated
    Then it is returned unchanged."""
    assert validate_output_key(key) == key


# --- media sniffing ---------------------------------------------------------------------------------

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x00" * 16
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 16
WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 " + b"\x00" * 16
WAV = b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x00" * 16
MP3_ID3 = b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"\x00" * 16
MP3_FRAME = b"\xff\xfb\x90\x64" + b"\x00" * 16
MP3_MPEG2 = b"\xff\xf3\x40\xc4" + b"\x00" * 16
OGG = b"OggS\x00\x02" + b"\x00" * 16
FLAC = b"fLaC\x00\x00\x00\x22" + b"\x00" * 16
M4A = b"\x00\x00\x00\x20ftypM4A \x00\x00\x00\x00" + b"\x00" * 16
MP4 = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00" + b"\x00" * 16
MP4_ISOM = b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00" + b"\x00" * 16
WEBM = b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01" + b"\x00" * 16
HTML = b"<!DOCTYPE html><html><head><title>Error</title></head></html>"
TEXT = b"Request abc not found\n"
JSON = b'{"error": "Request abc not found"}'
SRT = b"1\n00:00:00,000 --> 00:00:02,500\nHello, this is an avatar demo.\n\n2\n00:00:02,500 --> 00:00:04,000\nBye.\n"


@pytest.mark.parametrize(("head", "kind"), [(PNG, "png"), (JPEG, "jpeg"), (WEBP, "webp")])
def test_sniff_image(head: bytes, kind: str) -> None:
    """Given the first bytes of a PNG, JPEG or WebP
    When the image is sniffed
    Then its kind is recognised."""
    assert sniff_image(head) == kind


@pytest.mark.parametrize("head", [WAV, MP3_ID3, MP4, HTML, TEXT, b"", b"RIFF"], ids=lambda h: h[:8].hex())
def test_sniff_image_rejects_non_images(head: bytes) -> None:
    """Given bytes that are not an image (audio, video, HTML, text, nothing)
    When the image is sniffed
    Then nothing is recognised."""
    assert sniff_image(head) is None


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (WAV, "wav"),
        (MP3_ID3, "mp3"),
        (MP3_FRAME, "mp3"),
        (MP3_MPEG2, "mp3"),
        (OGG, "ogg"),
        (FLAC, "flac"),
        (M4A, "m4a"),
    ],
    ids=["wav", "mp3-id3", "mp3-frame-sync", "mp3-mpeg2", "ogg", "flac", "m4a"],
)
def test_sniff_audio(head: bytes, kind: str) -> None:
    """Given the first bytes of a WAV, MP3 (ID3 tag or bare frame sync), OGG, FLAC or M4A
    When the audio is sniffed
    Then its kind is recognised."""
    assert sniff_audio(head) == kind


@pytest.mark.parametrize("head", [PNG, JPEG, WEBP, WEBM, HTML, TEXT, JSON, b"", b"\xff"], ids=lambda h: h[:8].hex())
def test_sniff_audio_rejects_non_audio(head: bytes) -> None:
    """Given bytes that are not audio (images including JPEG's 0xFF start, WebM, HTML, text, nothing)
    When the audio is sniffed
    Then nothing is recognised."""
    assert sniff_audio(head) is None


@pytest.mark.parametrize(("head", "kind"), [(MP4, "mp4"), (MP4_ISOM, "mp4"), (WEBM, "webm")])
def test_sniff_video(head: bytes, kind: str) -> None:
    """Given the first bytes of an MP4 or a WebM
    When the video is sniffed
    Then its container is recognised."""
    assert sniff_video(head) == kind


@pytest.mark.parametrize(
    "head",
    [HTML, TEXT, JSON, PNG, JPEG, WAV, MP3_ID3, SRT, b"", b"\x00\x00\x00\x18ftyp"[:7]],
    ids=lambda h: h[:8].hex(),
)
def test_sniff_video_rejects_non_video(head: bytes) -> None:
    """Given bytes that are not a video (an HTML error page, text, JSON, images, audio, captions, nothing)
    When the video is sniffed
    Then nothing is recognised."""
    assert sniff_video(head) is None


@pytest.mark.parametrize(
    "head",
    [SRT, b"\xef\xbb\xbf" + SRT, SRT.replace(b"\n", b"\r\n"), "1\n00:00:00,000 --> 00:00:01,000\nÇa va ?\n".encode()],
    ids=["plain", "bom", "crlf", "utf8"],
)
def test_looks_like_srt(head: bytes) -> None:
    """Given SRT captions (plain, with a BOM, with CRLF, with UTF-8 text)
    When they are checked
    Then they look like SRT."""
    assert looks_like_srt(head) is True


@pytest.mark.parametrize(
    "head",
    [HTML, b"<!-- a --> <html></html>", b"  <html>-->", TEXT, JSON, MP4, b"\xff\xfe\x00-->", b""],
    ids=["html", "html-comment", "html-arrow", "text", "json", "mp4", "not-utf8", "empty"],
)
def test_not_srt(head: bytes) -> None:
    """Given HTML (even with '-->'), plain text, JSON, a video or bytes that are not UTF-8
    When they are checked
    Then they do not look like SRT."""
    assert looks_like_srt(head) is False
