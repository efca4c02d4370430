"""`avatar-pipeline campaign plan FILE`: what a campaign file would do, offline (no AWS, no provider).

Every row is validated by the same models the pipeline uses (avatar_pipeline.campaigns), the media
files beside the campaign file are checked by their content, and the cost (the price table) and the
duration (at --rpm) are estimated. The campaign's folder stands in for its inbox/ folder: a file
`shop/spring.campaign.json` plans as `inbox/spring.campaign.json`, its media resolved beside it.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from avatar_pipeline.campaigns.plan import CampaignPlan, plan_campaign
from avatar_pipeline.campaigns.rows import RowSource, campaign_rows, csv_source, inline_source, jsonl_source
from avatar_pipeline.campaigns.spec import CampaignSpec, parse_campaign_file
from avatar_pipeline.domain.pricing import price_table
from avatar_pipeline.errors import InvalidCampaign, MediaTooLarge, MissingMedia, PipelineError, UnsupportedMedia
from avatar_pipeline.keys import CAMPAIGN_SUFFIX, INBOX_PREFIX, UnsafeKey, resolve_media_key
from avatar_pipeline.media import SNIFF_BYTES, sniff_audio, sniff_image
from avatar_pipeline.money import usd
from avatar_pipeline.settings import Settings

EXIT_RUNS, EXIT_INVALID = 0, 1
LOCAL_BUCKET = "local"
_MESSAGE_WIDTH = 100


class PlanUsageError(ValueError):
    """FILE is not a campaign file that can be read: a usage error (exit 2), not an invalid campaign."""


@dataclass
class LocalMediaCheck:
    """Media beside the campaign file, checked once per file however many rows share it."""

    folder: Path
    max_photo_bytes: int = Settings.model_fields["max_photo_bytes"].default
    max_audio_bytes: int = Settings.model_fields["max_audio_bytes"].default

    def __post_init__(self) -> None:
        self._verdicts: dict[tuple[str, bool], PipelineError | None] = {}

    def __call__(self, key: str, is_photo: bool) -> None:
        if (key, is_photo) not in self._verdicts:
            self._verdicts[key, is_photo] = self._verdict(key, is_photo)
        problem = self._verdicts[key, is_photo]
        if problem is not None:
            raise problem

    def _verdict(self, key: str, is_photo: bool) -> PipelineError | None:
        path = self.folder / key.removeprefix(INBOX_PREFIX)
        if not path.is_file():
            return MissingMedia(f"{key.removeprefix(INBOX_PREFIX)} was not found beside the campaign file")
        size = path.stat().st_size
        limit = self.max_photo_bytes if is_photo else self.max_audio_bytes
        if size == 0:
            return UnsupportedMedia(f"{path.name} is empty")
        if size > limit:
            return MediaTooLarge(f"{path.name} is {size} bytes; the limit is {limit} bytes")
        with path.open("rb") as handle:
            head = handle.read(SNIFF_BYTES)
        if (sniff_image(head) if is_photo else sniff_audio(head)) is None:
            expected = "a PNG, JPEG or WebP image" if is_photo else "WAV, MP3, M4A, OGG or FLAC audio"
            return UnsupportedMedia(f"{path.name} is not {expected} (checked by its content)")
        return None


def plan_file(path: Path, rpm: int, console: TextIO) -> int:
    """Print the plan; EXIT_RUNS when the campaign would run, EXIT_INVALID when it is invalid.
    PlanUsageError when FILE cannot be read as a campaign file at all."""
    if not path.name.endswith(CAMPAIGN_SUFFIX) or len(path.name) == len(CAMPAIGN_SUFFIX):
        raise PlanUsageError(f"{path} is not a campaign file (<name>{CAMPAIGN_SUFFIX})")
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise PlanUsageError(f"{path}: {error.strerror or error}") from None
    campaign_key = f"{INBOX_PREFIX}{path.name}"
    try:
        spec = parse_campaign_file(raw)
        with _row_source(spec, campaign_key, path.parent) as source:
            rows = campaign_rows(spec, campaign_key, LOCAL_BUCKET, source, LocalMediaCheck(path.parent))
            plan = plan_campaign(rows, price_table(None), spec.max_spend_usd)
    except InvalidCampaign as error:
        console.write(f"{path.name}: the campaign is invalid (INVALID_JOB): {error.message}\n")
        return EXIT_INVALID
    _print_plan(path.name, spec, plan, rpm, console)
    return EXIT_RUNS


@contextmanager
def _row_source(spec: CampaignSpec, campaign_key: str, folder: Path) -> Iterator[RowSource]:
    name = spec.rows_file
    if name is None:
        assert not isinstance(spec.rows, str)
        yield inline_source(spec.rows)
        return
    try:
        key = resolve_media_key(campaign_key, name)
    except UnsafeKey as error:
        raise InvalidCampaign(f"rows: {error}") from None
    rows_path = folder / key.removeprefix(INBOX_PREFIX)
    try:
        handle = rows_path.open("rb")
    except OSError:
        raise InvalidCampaign(f"the rows file {name} was not found beside the campaign file") from None
    # utf-8-sig drops a BOM; newline="" leaves CRLF and quoted line breaks to the csv module.
    with io.TextIOWrapper(handle, encoding="utf-8-sig", newline="") as text:
        yield csv_source(text, name) if name.lower().endswith(".csv") else jsonl_source(text, name)


def _print_plan(name: str, spec: CampaignSpec, plan: CampaignPlan, rpm: int, console: TextIO) -> None:
    console.write(
        f"{name}: {plan.rows} rows: {plan.renders} would be rendered, {plan.failed} would fail, "
        f"{plan.skipped} skipped by max_spend_usd\n"
    )
    if plan.problems:
        console.write("\nrows with problems:\n")
        width = max(len("ROW ID"), *(len(problem.row_id) for problem in plan.problems))
        console.write(f"  {'ROW':>5}  {'ROW ID':<{width}}  {'CODE':<17}  MESSAGE\n")
        for problem in plan.problems:
            message = problem.message if len(problem.message) <= _MESSAGE_WIDTH else problem.message[:97] + "..."
            console.write(f"  {problem.number:>5}  {problem.row_id:<{width}}  {problem.code.value:<17}  {message}\n")
    ceiling = f" (max_spend_usd {usd(spec.max_spend_usd)})" if spec.max_spend_usd is not None else ""
    console.write(f"\nestimated cost: {usd(plan.estimated_cost_usd)} for {plan.renders} renders{ceiling}\n")
    console.write(
        f"estimated duration at {rpm} requests/minute: about {plan.minutes(rpm):.1f} minutes "
        "(the renders' requests at 90% of the rate, then the last render)\n"
    )
    if spec.dry_run:
        console.write("the file says dry_run: uploaded, it would submit nothing and report every row PLANNED\n")
    if spec.approve_after is not None:
        console.write(f"approve_after {spec.approve_after}: that many rows render first, then it waits for approval\n")
    if plan.renders == 0:
        console.write("note: no row would be rendered\n")
