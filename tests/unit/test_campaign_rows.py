"""A campaign's rows (DESIGN.md section 7): read as a stream, each turned into a job or a row failure."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pytest

from avatar_pipeline.campaigns.rows import (
    RowFailure,
    RowJob,
    RowSource,
    campaign_rows,
    csv_source,
    inline_source,
    jsonl_source,
)
from avatar_pipeline.campaigns.spec import CampaignSpec, parse_campaign_file
from avatar_pipeline.errors import ErrorCode, InvalidCampaign, MissingMedia, UnsupportedMedia
from avatar_pipeline.keys import derive_row_job_id

pytestmark = pytest.mark.unit

CAMPAIGN_KEY = "inbox/shop/spring.campaign.json"
BUCKET = "input-bucket"
TEMPLATE = {
    "model": "heygen-avatar-iv",
    "photo": "{{photo}}",
    "video_title": "Hello {{name}}",
    "script": "Hello {{name}}, {{greeting}}",
    "voice_id": "Coral",
}


def spec(**changes: Any) -> CampaignSpec:
    document: dict[str, Any] = {"rows": "people.csv", "template": dict(TEMPLATE)}
    document.update(changes)
    return parse_campaign_file(json.dumps(document).encode())


def csv_text(text: str) -> RowSource:
    return csv_source(io.StringIO(text, newline=""), "people.csv")


def rows(source: RowSource, campaign: CampaignSpec | None = None, check: Any = None) -> list[RowJob | RowFailure]:
    return list(campaign_rows(campaign or spec(), CAMPAIGN_KEY, BUCKET, source, check))


def jobs(results: list[RowJob | RowFailure]) -> list[RowJob]:
    return [r for r in results if isinstance(r, RowJob)]


def failures(results: list[RowJob | RowFailure]) -> list[RowFailure]:
    return [r for r in results if isinstance(r, RowFailure)]


# --- CSV ----------------------------------------------------------------------------------------------


def test_csv_with_bom_crlf_quoted_commas_quoted_newlines_and_utf8() -> None:
    """Given a UTF-8 CSV saved by a spreadsheet: a BOM, CRLF line ends, a quoted comma, a quoted line
    break, accented text and a trailing blank line
    When its rows are read
    Then each row is one job, the placeholders filled with the exact cell text."""
    text = '\ufeffname,photo,greeting\r\nZoë,a.png,"Hi, there"\r\n"Ann\r\nMarie",a.png,"She said ""hello"""\r\n\r\n'
    results = rows(csv_text(text))
    assert [type(r) for r in results] == [RowJob, RowJob]
    first, second = jobs(results)
    assert getattr(first.spec, "video_title", None) == "Hello Zoë"
    assert getattr(first.spec, "script", None) == "Hello Zoë, Hi, there"
    assert getattr(second.spec, "video_title", None) == "Hello Ann\r\nMarie"
    assert getattr(second.spec, "script", None) == 'Hello Ann\r\nMarie, She said "hello"'
    assert first.media_keys == {"image_url": "inbox/shop/a.png"}


def test_rows_are_numbered_and_their_job_ids_are_derived_from_the_row_id() -> None:
    """Given rows without a row_id column
    When they are read
    Then each row's id is its 1-based number and its job id derives from bucket, campaign key and row id;
    its video goes to the campaign's folder by default."""
    first, second = jobs(rows(csv_text("name,photo,greeting\nA,a.png,x\nB,a.png,y\n")))
    assert (first.number, first.row_id, second.row_id) == (1, "1", "2")
    assert first.job_id == derive_row_job_id(BUCKET, CAMPAIGN_KEY, "1")
    assert first.video_key == "campaigns/shop/spring/1.mp4"


def test_a_row_id_column_names_rows_and_output_key_is_a_template() -> None:
    campaign = spec(row_id="id", output_key="spring/{{id}}-{{name}}.mp4")
    (job,) = jobs(rows(csv_text("id,name,photo,greeting\ncust-7,Ann,a.png,x\n"), campaign))
    assert (job.row_id, job.video_key) == ("cust-7", "spring/cust-7-Ann.mp4")
    assert job.job_id == derive_row_job_id(BUCKET, CAMPAIGN_KEY, "cust-7")


def test_columns_named_like_job_keys_set_them_with_csv_text_converted() -> None:
    """Given an Avatar V template and columns named caption, remove_background and voice
    When the rows are read
    Then "true"/"FALSE" become booleans, a column wins over the template, an empty cell keeps the template's value."""
    campaign = spec(template={"model": "heygen-avatar-v", "prompt": "Hi {{name}}", "voice": "Daniel"})
    text = "name,caption,remove_background,voice\nA,true,FALSE,Aaron\nB, True ,false,\n"
    first, second = jobs(rows(csv_text(text), campaign))
    assert (getattr(first.spec, "caption", None), getattr(first.spec, "remove_background", None)) == (True, False)
    assert getattr(first.spec, "voice", None) == "Aaron"
    assert getattr(second.spec, "caption", None) is True
    assert getattr(second.spec, "voice", None) == "Daniel"


def test_integers_from_csv_text_and_a_whole_placeholder_takes_the_key_type() -> None:
    campaign = spec(template={**TEMPLATE, "width": "{{size}}"})
    (job,) = jobs(rows(csv_text("name,photo,greeting,size,height\nA,a.png,x,640, 480\n"), campaign))
    assert (getattr(job.spec, "width", None), getattr(job.spec, "height", None)) == (640, 480)


@pytest.mark.parametrize(
    ("header", "cells", "fragment"),
    [
        ("height,width", "x,640", "height: 'x' is not a whole number"),
        ("enhance_custom_motion_prompt", "yes", "'yes' is not true or false"),
        ("resolution", "8k", "resolution"),
        ("voice_id", "Nobody", "unknown voice"),
    ],
)
def test_a_row_with_a_bad_value_fails_alone_with_invalid_job(header: str, cells: str, fragment: str) -> None:
    """Given a row whose value does not fit its key, between two good rows
    When the rows are read
    Then that row alone fails INVALID_JOB, saying which row and what; the others are jobs."""
    head = f"name,photo,greeting,{header}\n"
    good = "A,a.png,x," + ",".join(["640"] * len(header.split(","))) + "\n"
    if header in ("enhance_custom_motion_prompt",):
        good = "A,a.png,x,true\n"
    if header in ("resolution",):
        good = "A,a.png,x,1080p\n"
    if header in ("voice_id",):
        good = "A,a.png,x,Nova\n"
    results = rows(csv_text(head + good + f"B,a.png,y,{cells}\n" + good))
    assert [type(r) for r in results] == [RowJob, RowFailure, RowJob]
    failure = failures(results)[0]
    assert failure.code is ErrorCode.INVALID_JOB
    assert failure.message.startswith("row 2 (id 2)")
    assert fragment in failure.message
    assert failure.job_id == derive_row_job_id(BUCKET, CAMPAIGN_KEY, "2")


def test_a_repeated_row_id_fails_the_later_row_without_touching_the_earlier_job() -> None:
    campaign = spec(row_id="id")
    results = rows(csv_text("id,name,photo,greeting\nc1,A,a.png,x\nc1,B,a.png,y\nc2,C,a.png,z\n"), campaign)
    assert [type(r) for r in results] == [RowJob, RowFailure, RowJob]
    repeated = failures(results)[0]
    assert (repeated.number, repeated.code, repeated.job_id) == (2, ErrorCode.INVALID_JOB, None)
    assert "repeats row 1" in repeated.message


@pytest.mark.parametrize("row_id", ["a/b", "..", ""])
def test_a_row_id_that_is_no_file_name_fails_its_row(row_id: str) -> None:
    campaign = spec(row_id="id")
    (failure,) = rows(csv_text(f"id,name,photo,greeting\n{row_id},A,a.png,x\n"), campaign)
    assert isinstance(failure, RowFailure)
    assert failure.code is ErrorCode.INVALID_JOB


def test_a_row_with_the_wrong_number_of_fields_fails_alone() -> None:
    results = rows(csv_text("name,photo,greeting\nA,a.png,Hi, there\nB,a.png,x\n"))
    assert [type(r) for r in results] == [RowFailure, RowJob]
    assert "has 4 fields; the header has 3" in failures(results)[0].message


def test_missing_and_unsupported_media_fail_their_rows_and_a_shared_photo_is_checked_once() -> None:
    """Given rows naming a missing photo, a non-image and (five times) one good shared photo
    When they are read with a media check
    Then the first two fail MISSING_MEDIA and UNSUPPORTED_MEDIA, and the check may cache: it is asked
    about each row's media (the caller's cache makes the shared photo one look)."""
    asked: list[str] = []

    def check(key: str, is_photo: bool) -> None:
        asked.append(key)
        assert is_photo
        if key.endswith("gone.png"):
            raise MissingMedia(f"{key} was not found")
        if key.endswith("notes.txt"):
            raise UnsupportedMedia(f"{key} is not an image")

    text = "name,photo,greeting\nA,gone.png,x\nB,notes.txt,x\n" + "C,shared.png,x\n" * 5
    campaign = spec(row_id=None)
    results = rows(csv_text(text), campaign, check)
    assert [r.code for r in failures(results)] == [ErrorCode.MISSING_MEDIA, ErrorCode.UNSUPPORTED_MEDIA]
    assert len(jobs(results)) == 5
    assert all(job.media_keys == {"image_url": "inbox/shop/shared.png"} for job in jobs(results))


def test_a_photo_outside_the_campaign_folder_fails_its_row() -> None:
    (failure,) = rows(csv_text("name,photo,greeting\nA,../other/a.png,x\n"))
    assert isinstance(failure, RowFailure)
    assert (failure.code, "photo:" in failure.message) == (ErrorCode.INVALID_JOB, True)


def test_campaign_metadata_is_copied_into_every_row_over_the_template_metadata() -> None:
    campaign = spec(
        template={**TEMPLATE, "metadata": {"customer": "{{name}}", "campaign": "template"}},
        metadata={"campaign": "spring"},
    )
    (job,) = jobs(rows(csv_text("name,photo,greeting\nAnn,a.png,x\n"), campaign))
    assert job.spec.metadata == {"customer": "Ann", "campaign": "spring"}


def test_webm_rows_get_a_webm_default_video_key() -> None:
    campaign = spec(template={"model": "heygen-avatar-v", "prompt": "Hi {{name}}", "output_format": "webm"})
    (job,) = jobs(rows(csv_text("name\nAnn\n"), campaign))
    assert job.video_key == "campaigns/shop/spring/1.webm"


# --- the campaign as a whole ----------------------------------------------------------------------------


def test_a_template_naming_a_missing_column_fails_before_any_row() -> None:
    with pytest.raises(InvalidCampaign, match="greeting"):
        campaign_rows(spec(), CAMPAIGN_KEY, BUCKET, csv_text("name,photo\nA,a.png\n"), None)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [("", "is empty"), ("name,,photo\n", "every column needs a name"), ("name,name\n", "every column needs a name")],
)
def test_a_csv_without_a_usable_header_is_an_invalid_campaign(text: str, fragment: str) -> None:
    with pytest.raises(InvalidCampaign, match=fragment):
        csv_text(text)


@pytest.mark.parametrize("good_rows", [1, 5000])
def test_a_rows_file_that_is_not_utf8_is_an_invalid_campaign(good_rows: int) -> None:
    """Given a Latin-1 byte after some good rows (the decoder reads ahead, so where it is found varies)
    When the rows are read
    Then the campaign is invalid, saying the file must be UTF-8."""
    raw = ("name,photo,greeting\n" + "A,a.png,x\n" * good_rows).encode() + "B,a.png,caf\xe9\n".encode("latin-1")
    with pytest.raises(InvalidCampaign, match="UTF-8"):
        rows(csv_source(io.TextIOWrapper(io.BytesIO(raw), encoding="utf-8-sig", newline=""), "people.csv"))


def test_rows_are_read_lazily_one_at_a_time() -> None:
    """Given a rows stream that breaks after its third line (a 10,000-row file never read whole)
    When the first two jobs are taken
    Then nothing past them was read."""

    def lines() -> Iterator[str]:
        yield "name,photo,greeting\n"
        yield "A,a.png,x\n"
        yield "B,a.png,y\n"
        raise AssertionError("read past the rows that were asked for")

    iterator = campaign_rows(spec(), CAMPAIGN_KEY, BUCKET, csv_source(lines(), "people.csv"), None)
    assert [next(iterator).number, next(iterator).number] == [1, 2]


# --- JSON Lines and inline rows --------------------------------------------------------------------------


def test_jsonl_rows_keep_their_json_types() -> None:
    campaign = spec(rows="people.jsonl", template={**TEMPLATE, "width": "{{w}}"})
    text = (
        '\ufeff{"name": "Ann", "photo": "a.png", "greeting": "hi", "w": 640, "height": 480}\n'
        "\n"
        '{"name": "Bob", "photo": "a.png", "greeting": "yo", "w": "640", "height": 480}\n'
        "not json\n"
    )
    results = rows(jsonl_source(io.StringIO(text), "people.jsonl"), campaign)
    assert [type(r) for r in results] == [RowJob, RowFailure, RowFailure]
    assert getattr(jobs(results)[0].spec, "width", None) == 640
    second, third = failures(results)
    assert "width" in second.message  # "640" is text: strict like a job file
    assert "not a JSON object" in third.message


def test_a_later_jsonl_row_lacking_a_named_column_fails_alone() -> None:
    campaign = spec(rows="people.jsonl")
    text = '{"name": "Ann", "photo": "a.png", "greeting": "hi"}\n{"name": "Bob", "photo": "a.png"}\n'
    results = rows(jsonl_source(io.StringIO(text), "people.jsonl"), campaign)
    assert [type(r) for r in results] == [RowJob, RowFailure]
    assert "no column 'greeting'" in failures(results)[0].message


def test_a_jsonl_file_whose_first_line_is_not_an_object_is_an_invalid_campaign() -> None:
    with pytest.raises(InvalidCampaign, match="first line"):
        jsonl_source(io.StringIO("[1]\n"), "people.jsonl")


def test_inline_rows() -> None:
    inline: list[Any] = [{"name": "Ann", "photo": "a.png", "greeting": "hi"}, {"name": "Bob", "photo": "b.png"}]
    campaign = spec(rows=inline)
    assert not isinstance(campaign.rows, str)
    results = rows(inline_source(campaign.rows), campaign)
    assert [type(r) for r in results] == [RowJob, RowFailure]
