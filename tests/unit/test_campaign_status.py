"""`avatar-pipeline campaign status`: naming a campaign, the totals, the progress bar and the rows with
problems as a person reads them, and --watch ending when the campaign has ended (no AWS here: the
moto-backed run is tests/integration/test_campaign_status_cli.py)."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from avatar_local.campaign_status import (
    MAX_PROBLEM_ROWS,
    CampaignNameError,
    CampaignProgress,
    Outcome,
    RefusedCampaign,
    Watch,
    campaign_key_of,
    follow,
    progress_bar,
    progress_of,
    render,
)
from avatar_pipeline.campaigns.records import (
    CampaignErrorReport,
    CampaignRecord,
    CampaignStatus,
    RowCounts,
    RowRecord,
    RowStatus,
    SampleGate,
)

pytestmark = pytest.mark.unit

KEY = "inbox/shop/spring.campaign.json"
T0 = datetime(2027, 1, 4, 12, 0, tzinfo=UTC)


def record(**changes: object) -> CampaignRecord:
    values: dict[str, object] = {
        "campaign_id": "campaign-1",
        "bucket": "in",
        "campaign_key": KEY,
        "run_id": "run-2",
        "campaign_etag": "e",
        "status": CampaignStatus.RUNNING,
        "rows_total": 10,
        "counts": RowCounts(succeeded=4, failed=2, skipped=1, estimated_cost_usd=Decimal("15.40"), cost_usd="4.00"),
        "started_at": T0,
        "updated_at": T0,
    }
    return CampaignRecord.model_validate({**values, **changes})


def row(number: int, status: RowStatus, run_id: str = "run-2", **changes: object) -> RowRecord:
    return RowRecord.model_validate(
        {"row_id": f"c{number}", "number": number, "run_id": run_id, "status": status, **changes}
    )


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("shop/spring", (None, KEY)),
        ("inbox/shop/spring.campaign.json", (None, KEY)),
        ("shop/spring.campaign.json", (None, KEY)),
        ("processed/shop/spring.campaign.json", (None, KEY)),
        ("failed/shop/spring.campaign.json", (None, KEY)),
        ("s3://my-input/inbox/shop/spring.campaign.json", ("my-input", KEY)),
        ("spring", (None, "inbox/spring.campaign.json")),
        ("  a/b/c/deep  ", (None, "inbox/a/b/c/deep.campaign.json")),
    ],
)
def test_a_campaign_is_named_by_its_key_or_by_dir_and_name(reference: str, expected: tuple[str | None, str]) -> None:
    assert campaign_key_of(reference) == expected


@pytest.mark.parametrize(
    ("reference", "complaint"),
    [
        ("", "names no campaign"),
        ("inbox/", "names no campaign"),
        ("shop/../spring", "names no campaign"),
        ("shop//spring", "names no campaign"),
        ("inbox/shop/welcome.json", "is a job file"),
        ("s3://bucket-only", "s3://BUCKET/inbox"),
    ],
)
def test_a_reference_that_names_no_campaign_is_bad_usage(reference: str, complaint: str) -> None:
    with pytest.raises(CampaignNameError, match=complaint):
        campaign_key_of(reference)


@pytest.mark.parametrize(
    ("done", "total", "expected"),
    [
        (0, 10, "[" + "." * 20 + "]   0%"),
        (5, 10, "[" + "#" * 10 + "." * 10 + "]  50%"),
        (9_999, 10_000, "[" + "#" * 19 + "." + "]  99%"),
        (10, 10, "[" + "#" * 20 + "] 100%"),
        (0, 0, "[" + "#" * 20 + "] 100%"),
    ],
)
def test_the_progress_bar_reaches_100_only_when_every_row_has_ended(done: int, total: int, expected: str) -> None:
    assert progress_bar(done, total, width=20) == expected


def test_a_running_campaign_shows_its_totals_cost_and_the_rows_with_problems() -> None:
    """Given a run of 10 rows: 4 succeeded, 2 failed, 1 skipped, 3 pending, and an earlier run's row
    When its status is rendered
    Then the bar counts 7 of 10, the totals and the cost so far are shown, and the failed and skipped
    rows of this run (not the earlier run's) are listed in row order."""
    rows = [
        row(3, RowStatus.FAILED, error_code="MISSING_MEDIA", error_message="bob.png was not found"),
        row(1, RowStatus.SUCCEEDED),
        row(9, RowStatus.SKIPPED, error_code="SPEND_LIMIT", error_message="past max_spend_usd"),
        row(2, RowStatus.FAILED, run_id="run-1", error_code="INTERNAL"),
        RowRecord(row_id="c1#7", number=7, run_id="run-2", status=RowStatus.FAILED, error_code="INVALID_JOB"),
    ]

    lines = render(progress_of(record(), rows, None))

    assert lines[0] == f"{KEY}: RUNNING (started 2027-01-04 12:00:00 UTC)"
    assert lines[1].endswith(" 70%  7 of 10 rows ended")
    assert lines[2] == "rows 10   succeeded 4   failed 2   skipped 1   pending 3"
    assert lines[3] == "cost so far $4.00 (estimated $15.40 for the rows submitted)"
    assert lines[4] == "rows that failed or were skipped (3):"
    assert [line.split()[:4] for line in lines[5:]] == [
        ["ROW", "ROW", "ID", "STATUS"],
        ["3", "c3", "FAILED", "MISSING_MEDIA"],
        ["7", "c1", "FAILED", "INVALID_JOB"],  # a repeated row id is shown as the file has it
        ["9", "c9", "SKIPPED", "SPEND_LIMIT"],
    ]
    assert "bob.png was not found" in lines[6]
    assert not any("report" in line for line in lines[:4])


def test_many_problem_rows_are_cut_to_the_first_few_with_a_pointer_to_the_report() -> None:
    rows = [row(n, RowStatus.FAILED, error_code="INVALID_JOB", error_message="x" * 500) for n in range(1, 41)]
    progress = progress_of(record(rows_total=40, counts=RowCounts(failed=40)), rows, None)

    lines = render(progress)

    heading = next(line for line in lines if line.startswith("rows that failed"))
    assert heading == f"rows that failed or were skipped (40, the first {MAX_PROBLEM_ROWS}; report.json has them all):"
    assert len([line for line in lines if "INVALID_JOB" in line]) == MAX_PROBLEM_ROWS
    assert all(len(line) < 160 for line in lines)  # long messages are cut


def test_while_the_split_runs_the_rows_entered_so_far_are_the_total() -> None:
    rows = [row(n, RowStatus.PENDING) for n in range(1, 1235)]

    lines = render(progress_of(record(rows_total=None, counts=RowCounts()), rows, None))

    assert lines[1].endswith("0 of 1,234 so far (still splitting) rows ended")
    assert "pending 1,234" in lines[2]


def test_a_completed_campaign_lists_its_report_keys() -> None:
    progress = progress_of(
        record(status=CampaignStatus.COMPLETED, counts=RowCounts(succeeded=10, cost_usd=Decimal(10))), [], None
    )
    progress = CampaignProgress(**{**progress.__dict__, "report_keys": ["s3://out/campaigns/shop/spring/report.json"]})

    lines = render(progress)

    assert lines[0].startswith(f"{KEY}: COMPLETED")
    assert "100%  10 of 10 rows ended" in lines[1]
    assert lines[-2:] == ["report:", "  s3://out/campaigns/shop/spring/report.json"]
    assert progress.ended


def test_every_row_ended_before_the_report_is_written_says_so() -> None:
    lines = render(progress_of(record(counts=RowCounts(succeeded=10)), [], None))

    assert lines[-1] == "every row has ended: the report is being written"


def test_a_dry_run_shows_planned_rows_and_the_estimate() -> None:
    counts = RowCounts(planned=9, failed=1, estimated_cost_usd=Decimal("19.80"))
    lines = render(progress_of(record(dry_run=True, status=CampaignStatus.PLANNED, counts=counts), [], None))

    assert lines[0].startswith(f"{KEY}: PLANNED dry run")
    assert "planned 9" in lines[2]
    assert "pending" not in lines[2]
    assert lines[3] == "dry run: nothing is submitted; estimated cost $19.80"


def test_a_refused_campaign_shows_why_and_has_ended() -> None:
    refused = RefusedCampaign(
        "failed/shop/spring.campaign.error.json",
        CampaignErrorReport(
            campaign_key=KEY, error_code="INVALID_JOB", error_message="template names {{plan}}", what_to_do="fix it"
        ),
        T0,
    )

    progress = progress_of(record(rows_total=None, counts=RowCounts()), [], refused)
    lines = render(progress)

    assert progress.ended
    assert lines == [
        f"{KEY}: FAILED (started 2027-01-04 12:00:00 UTC)",
        "refused as a whole at 2027-01-04 12:00:00 UTC; nothing was submitted",
        "INVALID_JOB: template names {{plan}}",
        "what to do: fix it",
        "error report: failed/shop/spring.campaign.error.json (input bucket)",
    ]


class Script:
    """A campaign that moves one step per read, and a sleep that only counts."""

    def __init__(self, steps: list[CampaignProgress | None]) -> None:
        self.steps = steps
        self.reads = 0
        self.slept: list[float] = []

    def read(self) -> CampaignProgress | None:
        self.reads += 1
        return self.steps[min(self.reads, len(self.steps)) - 1]

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


def test_watch_refreshes_until_the_campaign_has_completed_and_prints_each_change_once() -> None:
    running = progress_of(record(), [], None)
    done = progress_of(record(status=CampaignStatus.COMPLETED, counts=RowCounts(succeeded=10)), [], None)
    script = Script([running, running, done])
    console = io.StringIO()

    assert follow(script.read, console, Watch(2.5, timeout=60, sleep=script.sleep)) is Outcome.FOUND

    assert (script.reads, script.slept) == (3, [2.5, 2.5])
    printed = console.getvalue()
    assert printed.count(KEY) == 2  # not a terminal: a block per change, the unchanged one not again
    assert "\x1b" not in printed


def test_without_watch_the_campaign_is_shown_once() -> None:
    script = Script([progress_of(record(), [], None)])

    assert follow(script.read, io.StringIO()) is Outcome.FOUND
    assert (script.reads, script.slept) == (1, [])


def test_an_unknown_campaign_and_ctrl_c_quietly() -> None:
    assert follow(Script([None]).read, io.StringIO(), Watch(1, 60)) is Outcome.UNKNOWN

    def interrupted(_: float) -> None:
        raise KeyboardInterrupt

    console = io.StringIO()
    script = Script([progress_of(record(), [], None)])
    assert follow(script.read, console, Watch(1, 60, sleep=interrupted)) is Outcome.INTERRUPTED
    assert "Traceback" not in console.getvalue()


def test_on_a_terminal_watch_redraws_in_place() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    running = progress_of(record(), [], None)
    done = progress_of(record(status=CampaignStatus.COMPLETED, counts=RowCounts(succeeded=10)), [], None)
    console = Terminal()

    follow(Script([running, done]).read, console, Watch(1, 60, sleep=lambda _: None))

    assert console.getvalue().count("\x1b[H\x1b[2J") == 2


def test_watch_gives_up_at_its_timeout() -> None:
    """Given a campaign that never ends (a sample nobody decides, say) and a clock moved by the sleep
    When it is watched with --interval 5 --timeout 12
    Then it reads at 0, 5, 10 and 15 seconds and gives up."""
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    script = Script([progress_of(record(), [], None)])

    assert follow(script.read, io.StringIO(), Watch(5, 12, sleep=sleep, clock=lambda: now[0])) is Outcome.TIMED_OUT
    assert script.reads == 4


def test_an_open_sample_gate_counts_its_held_rows_apart_and_a_ready_one_says_how_to_decide() -> None:
    """Given approve_after: 3 of 10 rows rendering as the sample, 7 held
    When the status is rendered while the sample renders, then once it is ready
    Then the held rows are not pending, and the ready sample names both ways to decide."""
    sampling = record(gate=SampleGate.SAMPLING, held=7, counts=RowCounts(succeeded=1))
    lines = render(progress_of(sampling, [], None))
    assert lines[2] == "rows 10   succeeded 1   failed 0   skipped 0   pending 2   held 7"
    assert lines[4] == "sample: its rows render first; 7 rows are held until a person approves"

    ready = render(progress_of(record(gate=SampleGate.READY, held=7, counts=RowCounts(succeeded=3)), [], None))
    assert ready[4:7] == [
        "sample ready, 7 rows held: look at the report, then decide",
        "  approve: avatar-pipeline campaign approve shop/spring (or drop inbox/shop/spring.approve)",
        "  reject:  avatar-pipeline campaign reject shop/spring (or drop inbox/shop/spring.reject)",
    ]

    approved = progress_of(record(gate=SampleGate.APPROVED, held=7, counts=RowCounts(succeeded=3)), [], None)
    assert (approved.held, approved.pending) == (0, 7)  # handed out: pending like any row
