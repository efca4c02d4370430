"""The campaign file (DESIGN.md section 7): what makes a campaign invalid as a whole, before any row."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from avatar_pipeline.campaigns.spec import CampaignSpec, parse_campaign_file
from avatar_pipeline.errors import ErrorCode, InvalidCampaign, InvalidJob
from avatar_pipeline.jobs.spec import parse_job_object

pytestmark = pytest.mark.unit

TEMPLATE = {"model": "heygen-avatar-iv", "photo": "{{photo}}", "video_title": "Hi {{name}}", "script": "Hello {{name}}"}


def campaign(**changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = {"rows": "people.csv", "template": dict(TEMPLATE)}
    document.update(changes)
    return document


def parse(document: object) -> CampaignSpec:
    return parse_campaign_file(json.dumps(document).encode())


def rejection(document: object) -> str:
    raw = document if isinstance(document, bytes) else json.dumps(document).encode()
    with pytest.raises(InvalidCampaign) as caught:
        parse_campaign_file(raw)
    assert caught.value.code is ErrorCode.INVALID_JOB
    return caught.value.message


def test_a_full_campaign_file_is_read_with_its_defaults() -> None:
    """Given a campaign naming a CSV, a template with placeholders and every optional field
    When it is parsed
    Then each field is kept (max_spend_usd as exact money) and the placeholders are the columns named."""
    spec = parse(
        campaign(
            row_id="customer",
            output_key="spring/{{customer}}.mp4",
            max_spend_usd=12.5,
            dry_run=True,
            notify_rows=True,
            metadata={"campaign": "spring"},
            approve_after=2,
        )
    )
    assert spec.rows_file == "people.csv"
    assert spec.max_spend_usd == Decimal("12.5")
    assert spec.template_model == "heygen-avatar-iv"
    assert spec.placeholders() == {"photo", "name", "customer"}
    assert (spec.dry_run, spec.notify_rows, spec.approve_after) == (True, True, 2)


def test_defaults() -> None:
    """Given the smallest campaign file
    When it is parsed
    Then it is no dry run, has no ceiling, no sample gate, per-row notifications off, row ids by number."""
    spec = parse({"rows": [{"name": "Ann"}], "template": {"model": "heygen-avatar-v", "prompt": "Hi {{name}}"}})
    assert spec.rows_file is None
    assert (spec.row_id, spec.output_key, spec.max_spend_usd, spec.approve_after) == (None, None, None, None)
    assert (spec.dry_run, spec.notify_rows, spec.metadata) == (False, False, {})


@pytest.mark.parametrize(
    ("document", "fragment"),
    [
        (b"", "empty"),
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (campaign(rows="people.txt"), "a rows file must be a .csv or a .jsonl"),
        (campaign(rows=[]), "no rows"),
        (campaign(template={"model": "heygen-avatar-ix"}), "'heygen-avatar-ix' is not supported"),
        (campaign(template={**TEMPLATE, "caption": True}), "template.caption: unknown key"),
        (campaign(template={**TEMPLATE, "output_key": "x/{{name}}.mp4"}), "at the campaign's top level"),
        (campaign(output_key="spring/all.mp4"), "must hold a placeholder"),
        (campaign(template={**TEMPLATE, "script": "Hi {{}}"}), "empty placeholder"),
        (campaign(dry_run="true"), "dry_run"),
        (campaign(max_spend_usd=-1), "max_spend_usd"),
        (campaign(approve_after=0), "approve_after"),
        (campaign(rowz="people.csv"), "rowz: unknown key"),
        (campaign(metadata={"x": "y" * 3000}), "metadata"),
    ],
)
def test_an_unusable_campaign_file_is_invalid_as_a_whole(document: object, fragment: str) -> None:
    """Given a campaign file that no row could make right
    When it is parsed
    Then InvalidCampaign (INVALID_JOB) says what is wrong."""
    assert fragment in rejection(document)


def test_a_template_naming_a_column_the_rows_lack_fails_the_campaign() -> None:
    """Given a template naming {{name}} and {{photo}}, and rows with only a name column
    When the columns are checked
    Then the campaign is invalid, naming the missing column and the columns there are."""
    spec = parse(campaign())
    with pytest.raises(InvalidCampaign, match=r"lack: photo; the rows have: name"):
        spec.check_columns(["name"])
    spec.check_columns(["name", "photo", "extra"])


def test_a_row_id_column_the_rows_lack_fails_the_campaign() -> None:
    spec = parse(campaign(row_id="customer"))
    with pytest.raises(InvalidCampaign, match="row_id names the column 'customer'"):
        spec.check_columns(["name", "photo"])


def test_a_row_job_is_validated_exactly_as_a_job_file() -> None:
    """Given a job object (as a campaign row builds it) that breaks a job file rule
    When it is validated
    Then the job file's own message comes back, under the row's name."""
    with pytest.raises(InvalidJob, match=r"^row 3: the job is invalid: width and height go together"):
        parse_job_object(
            {"model": "heygen-avatar-iv", "photo": "a.png", "video_title": "t", "script": "s", "width": 640},
            subject="row 3: the job",
        )
