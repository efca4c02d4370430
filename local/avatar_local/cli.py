"""avatar-pipeline: run the whole pipeline offline, or the Segmind emulator alone.

avatar-pipeline local demo
avatar-pipeline local run --inbox DIR --out DIR [--faults FILE] [--render-seconds N]
                          [--time-scale X] [--duplicate-events N] [--rpm N] [--timeout S]
avatar-pipeline emulator serve [--port P]
avatar-pipeline campaign plan FILE [--rpm N]
avatar-pipeline campaign status NAME|KEY [--watch] [--interval S] [--stack NAME]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

from avatar_local.run_folder import RunFolderError, check_inbox, prepare_out
from avatar_pipeline.records import JobStatus

if TYPE_CHECKING:
    from avatar_local import deployed as deployed_module
    from avatar_local.emulator import FaultPlan
    from avatar_local.media_probe import MediaInfo
    from avatar_local.stack.crashes import CrashRule
    from avatar_local.stack.runner import JobProgress, LocalRunConfig
    from avatar_pipeline.records import JobRecord

EXIT_OK, EXIT_TIMEOUT, EXIT_USAGE = 0, 1, 2
MAX_PORT = 65535
REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = REPO_ROOT / "examples"


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text}") from None
    # nan compares false with everything (it would pass `> 0`), and inf makes every wait endless.
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number greater than 0, not {text}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a number, 0 or more, not {text}")
    return value


def _model_cost(text: str) -> tuple[str, float]:
    model, _, amount = text.partition("=")
    if not model or not amount:
        raise argparse.ArgumentTypeError(f"expected MODEL=USD, e.g. heygen-avatar-iv=2.2, not {text}")
    return model, _non_negative_float(amount)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text}") from None
    if not 0 <= value <= MAX_PORT:
        raise argparse.ArgumentTypeError(f"a port is 0 to {MAX_PORT} (0: any free one), not {text}")
    return value


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line (what is wrong, and where the help is), not the usage text first."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="avatar-pipeline", description=__doc__.split("\n\n")[0] if __doc__ else "")
    groups = parser.add_subparsers(dest="group", required=True)

    local = groups.add_parser("local", help="the whole pipeline offline (moto + emulator + real handlers)")
    local_commands = local.add_subparsers(dest="command", required=True)
    demo = local_commands.add_parser("demo", help="drop examples/ into the stack and watch a video being made")
    demo.add_argument(
        "--out", type=Path, default=REPO_ROOT / "demo-output", help="where the results go (default: demo-output/)"
    )
    demo.add_argument(
        "--time-scale", type=_positive_float, default=0.05, help="factor on every delay (default: 0.05, 20x faster)"
    )
    demo.add_argument("--timeout", type=_positive_float, default=240.0, help="wall-clock seconds (default: 240)")

    run = local_commands.add_parser("run", help="drop a folder of jobs into the stack and collect everything")
    run.add_argument("--inbox", type=Path, required=True, help="folder uploaded to inbox/ (relative paths kept)")
    run.add_argument("--out", type=Path, required=True, help="summary.json, notifications.jsonl, outputs/, inputs/")
    run.add_argument("--faults", type=Path, help="a fault plan JSON for the emulator")
    run.add_argument("--render-seconds", type=_positive_float, default=140.0, help="median render time")
    run.add_argument("--time-scale", type=_positive_float, default=0.01, help="factor on every delay")
    run.add_argument("--duplicate-events", type=_positive_int, default=1, help="deliver each event N times")
    run.add_argument("--rpm", type=_positive_int, help="the emulator's requests-per-minute budget per key")
    run.add_argument("--timeout", type=_positive_float, default=600.0, help="wall-clock seconds")
    run.add_argument(
        "--daily-spend-limit",
        type=_non_negative_float,
        metavar="USD",
        help="the stack's DailySpendLimitUsd (0 = none; default: the template's)",
    )
    run.add_argument(
        "--provider-cost",
        type=_model_cost,
        action="append",
        default=[],
        metavar="MODEL=USD",
        help="what the emulator reports as a model's metrics.cost (repeatable)",
    )

    _add_deployed_commands(groups)

    campaign = groups.add_parser("campaign", help="campaigns: one file, many videos")
    campaign_commands = campaign.add_subparsers(dest="command", required=True)
    plan = campaign_commands.add_parser(
        "plan", help="offline: validate every row, check the media, estimate the cost and the duration"
    )
    plan.add_argument("file", type=Path, help="a <name>.campaign.json, its rows and media beside it")
    plan.add_argument("--rpm", type=_positive_int, default=50, help="the key's requests per minute (pro: 50)")
    _add_campaign_status(campaign_commands)
    for verb, what in (("approve", "render the rest of"), ("reject", "skip the rest of (NOT_APPROVED)")):
        decision = campaign_commands.add_parser(
            verb, help=f"a deployed stack: {what} a campaign whose sample (approve_after) is ready"
        )
        decision.add_argument("campaign", help="its key (inbox/a/b.campaign.json) or name under inbox/ (a/b)")
        decision.add_argument("--stack", help="the deployed stack; its input bucket comes from its outputs")
        decision.add_argument("--input-bucket", help="instead of --stack")

    emulator = groups.add_parser("emulator", help="the Segmind v2 emulator")
    emulator_commands = emulator.add_subparsers(dest="command", required=True)
    serve = emulator_commands.add_parser("serve", help="serve the emulator until interrupted")
    serve.add_argument("--port", type=_port, default=8765, help="the port to listen on, on 127.0.0.1 (default: 8765)")
    serve.add_argument("--render-seconds", type=_positive_float, default=140.0, help="median render time")
    serve.add_argument("--time-scale", type=_positive_float, default=1.0, help="factor on every delay (default: 1)")
    serve.add_argument("--rpm", type=_positive_int, help="requests per minute per key before a 429 (default: none)")
    serve.add_argument("--faults", type=Path, help="a fault plan JSON")
    return parser


def _add_deployed_commands(groups: argparse._SubParsersAction[_Parser]) -> None:
    def names(command: argparse.ArgumentParser, reads_buckets: bool = True) -> None:
        unread = "not read by this command (accepted, so one set of names fits every command)"
        command.add_argument("--stack", help="the deployed stack; names come from its outputs")
        command.add_argument("--input-bucket", help="instead of --stack" if reads_buckets else unread)
        command.add_argument("--output-bucket", help="instead of --stack" if reads_buckets else unread)
        command.add_argument("--jobs-table", help="instead of --stack")

    submit = groups.add_parser("submit", help="upload a photo or a job file to a deployed stack's inbox")
    submit.add_argument("source", type=Path, help="a photo (.png/.jpg/.webp) or a job file (.json)")
    submit.add_argument("--script", help="what the avatar says (for a photo)")
    submit.add_argument("--title", help="video title (for a photo; default: the file name)")
    submit.add_argument("--voice", help="voice name or id (for a photo)")
    submit.add_argument("--prefix", default="", help="folder under inbox/")
    submit.add_argument("--wait", action="store_true", help="follow the job until it ends")
    submit.add_argument("--timeout", type=_positive_float, default=1800.0, help="with --wait: seconds")
    names(submit)

    status = groups.add_parser("status", help="jobs as a table: one job, or the most recent ones")
    status.add_argument("job_id", nargs="?", help="one job (default: the most recent ones)")
    status.add_argument("--recent", type=_positive_int, default=20, help="how many recent jobs (default: 20)")
    status.add_argument("--status", choices=[s.value for s in JobStatus], help="only jobs in this status")
    names(status, reads_buckets=False)

    logs = groups.add_parser("logs", help="a job's history: its milestones and every state it went through")
    logs.add_argument("job_id", help="the job's id (as `status` lists it)")
    names(logs, reads_buckets=False)


def _add_campaign_status(commands: argparse._SubParsersAction[_Parser]) -> None:
    status = commands.add_parser(
        "status", help="a deployed stack's campaign: totals, a progress bar, rows with problems, the report"
    )
    status.add_argument("campaign", help="inbox/<dir>/<name>.campaign.json (its key) or <dir>/<name>")
    status.add_argument("--watch", action="store_true", help="refresh until the campaign has completed (Ctrl-C stops)")
    status.add_argument("--interval", type=_positive_float, default=5.0, help="with --watch: seconds between reads")
    status.add_argument("--timeout", type=_positive_float, default=3600.0, help="with --watch: give up after (exit 1)")
    status.add_argument("--stack", help="the deployed stack; names come from its outputs")
    status.add_argument("--input-bucket", help="instead of --stack (a campaign's id derives from it)")
    status.add_argument("--output-bucket", help="instead of --stack (where the report is; optional)")
    status.add_argument("--campaigns-table", help="instead of --stack")


def main(
    argv: list[str] | None = None, console: TextIO | None = None, sleep: Callable[[float], Any] = time.sleep
) -> int:
    """`console` and `sleep` stand in for stdout and time.sleep in tests (`campaign status --watch`)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.group in ("submit", "status", "logs"):
        return _deployed(args, parser, console or sys.stdout)
    if args.group == "emulator":
        return _serve_emulator(args)
    if args.group == "campaign" and args.command == "status":
        return _deployed(args, parser, console or sys.stdout, functools.partial(_campaign_status, sleep=sleep))
    if args.group == "campaign" and args.command in ("approve", "reject"):
        return _campaign_decision(args, parser, console or sys.stdout)
    if args.group == "campaign":
        return _campaign_plan(args, console or sys.stdout)
    if args.command == "demo":
        return _demo(args)
    return _run(args, parser)


def _deployed(
    args: argparse.Namespace,
    parser: argparse.ArgumentParser,
    console: TextIO,
    command: Callable[[argparse.Namespace, argparse.ArgumentParser, TextIO], int] | None = None,
) -> int:
    from botocore.exceptions import NoCredentialsError, NoRegionError, PartialCredentialsError

    try:
        return (command or _deployed_command)(args, parser, console)
    except NoRegionError:
        return _usage_line(
            parser, "no AWS region: set AWS_DEFAULT_REGION (or AWS_PROFILE, for a profile with a region)"
        )
    except (NoCredentialsError, PartialCredentialsError):
        return _usage_line(
            parser, "no AWS credentials: set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        )


def _usage_line(parser: argparse.ArgumentParser, message: str) -> int:
    """One line on stderr, no traceback: what went wrong and what to set."""
    print(f"{parser.prog}: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _needed_names(args: argparse.Namespace) -> tuple[str, ...]:
    """The stack names a command reads: status and logs only the jobs table; submit the input bucket,
    and with --wait the jobs table and the output bucket too."""
    if args.group != "submit":
        return ("jobs_table",)
    return ("input_bucket", "output_bucket", "jobs_table") if args.wait else ("input_bucket",)


def _deployed_command(args: argparse.Namespace, parser: argparse.ArgumentParser, console: TextIO) -> int:
    from avatar_local import deployed
    from avatar_pipeline.errors import InvalidJob

    try:
        names = deployed.StackNames.resolve(
            args.stack, args.input_bucket, args.output_bucket, args.jobs_table, needs=_needed_names(args)
        )
        if args.group == "submit":
            return _submit(args, names, console)
        if args.group == "status":
            records = [r for r in [deployed.get_job(names, args.job_id)] if r] if args.job_id else None
            if args.job_id and not records:
                console.write(f"no job {args.job_id}\n")
                return EXIT_TIMEOUT
            deployed.print_jobs(records or deployed.recent_jobs(names, args.recent, args.status), console)
            return EXIT_OK
        record = deployed.get_job(names, args.job_id)
        if record is None:
            console.write(f"no job {args.job_id}\n")
            return EXIT_TIMEOUT
        console.write("\n".join(deployed.job_history(record)) + "\n")
        return EXIT_OK
    except (deployed.UsageError, InvalidJob, OSError) as error:
        parser.error(str(error))


def _campaign_decision(args: argparse.Namespace, parser: argparse.ArgumentParser, console: TextIO) -> int:
    from avatar_local import deployed
    from avatar_local.campaign_decision import decide
    from avatar_pipeline.keys import UnsafeKey

    try:
        names = deployed.StackNames.resolve(args.stack, args.input_bucket, needs=("input_bucket",))
        decide(names.input_bucket, args.campaign, args.command == "approve", console)
    except (deployed.UsageError, UnsafeKey) as error:
        parser.error(str(error))
    return EXIT_OK


def _campaign_plan(args: argparse.Namespace, console: TextIO) -> int:
    from avatar_local.campaign_plan import PlanUsageError, plan_file

    try:
        return plan_file(args.file, args.rpm, console)
    except PlanUsageError as error:
        print(f"avatar-pipeline campaign plan: {error}", file=sys.stderr)
        return EXIT_USAGE


def _campaign_status(
    args: argparse.Namespace, parser: argparse.ArgumentParser, console: TextIO, sleep: Callable[[float], Any]
) -> int:
    """`campaign status`: 0 found (with --watch: it has ended), 1 no such campaign (or --watch's --timeout
    passed), 2 bad usage or a read AWS refused, 130 Ctrl-C."""
    from botocore.exceptions import ClientError

    from avatar_local import campaign_status, deployed

    try:
        names = deployed.StackNames.resolve(
            args.stack, args.input_bucket, args.output_bucket, campaigns_table=args.campaigns_table,
            needs=("input_bucket", "campaigns_table"),
        )  # fmt: skip
        reader = campaign_status.reader_for(
            args.campaign, names.input_bucket, names.output_bucket or None, names.campaigns_table
        )
    except (deployed.UsageError, campaign_status.CampaignNameError) as error:
        parser.error(str(error))
    try:
        watch = campaign_status.Watch(args.interval, args.timeout, sleep) if args.watch else None
        outcome = campaign_status.follow(reader.read, console, watch)
    except ClientError as error:
        return _usage_line(parser, f"campaign status: AWS refused a read: {error}")
    if outcome is campaign_status.Outcome.UNKNOWN:
        print(f"{parser.prog}: {campaign_status.unknown_line(reader, names.campaigns_table)}", file=sys.stderr)
    elif outcome is campaign_status.Outcome.TIMED_OUT:
        print(f"{parser.prog}: the campaign had not ended after --timeout {args.timeout:g} s", file=sys.stderr)
    return campaign_status.EXIT_STATUS[outcome]


def _submit(args: argparse.Namespace, names: deployed_module.StackNames, console: TextIO) -> int:
    from datetime import UTC, datetime, timedelta

    from avatar_local import deployed

    uploads = deployed.plan_upload(args.source, args.prefix, args.script, args.title, args.voice)
    started = datetime.now(UTC) - timedelta(seconds=5)
    job_key = deployed.upload(names, uploads)
    console.write(f"uploaded {len(uploads)} file(s); the job file is s3://{names.input_bucket}/{job_key}\n")
    if not args.wait:
        return EXIT_OK

    def show(record: JobRecord) -> None:
        detail = f" ({record.provider_status})" if record.provider_status and record.status.value == "RENDERING" else ""
        console.write(f"  {datetime.now(UTC):%H:%M:%S}  {record.job_id}: {record.status.value}{detail}\n")
        console.flush()

    record = deployed.wait_for(names, job_key, started, args.timeout, show)
    if record is None:
        console.write(f"still not finished after {args.timeout:.0f} s\n")
        return EXIT_TIMEOUT
    if record.status.value == "SUCCEEDED":
        video = next((k for k in record.output_keys if k.endswith((".mp4", ".webm"))), record.output_keys[0])
        console.write(f"video: s3://{names.output_bucket}/{video}\n")
    else:
        console.write(f"failed: {record.error_code}: {record.error_message}\n")
    return EXIT_OK


def _load_faults(path: Path | None, parser: argparse.ArgumentParser | None = None) -> FaultPlan | None:
    return _load_fault_file(path, parser)[0]


def _load_fault_file(
    path: Path | None, parser: argparse.ArgumentParser | None = None
) -> tuple[FaultPlan | None, list[CrashRule]]:
    """A fault file is the emulator's plan, or {"provider": <plan>, "handlers": [<crash rules>]}."""
    from pydantic import TypeAdapter, ValidationError

    from avatar_local.emulator import FaultPlan
    from avatar_local.stack.crashes import CrashRule

    if path is None:
        return None, []
    try:
        data = json.loads(path.read_text())
        if isinstance(data, dict) and set(data) <= {"provider", "handlers"} and data:
            plan = FaultPlan.model_validate(data["provider"]) if "provider" in data else None
            crashes = TypeAdapter(list[CrashRule]).validate_python(data.get("handlers", []))
            return plan, crashes
        return FaultPlan.model_validate(data), []
    except (OSError, ValueError, ValidationError) as exc:
        message = f"--faults: {path}: {exc}"
        if parser is not None:
            parser.error(message)
        print(message, file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None


def _serve_emulator(args: argparse.Namespace) -> int:
    from avatar_local.emulator import EmulatorConfig, run_server_forever

    config = EmulatorConfig(render_seconds=args.render_seconds, time_scale=args.time_scale, rpm=args.rpm)
    faults = _load_faults(args.faults)
    print(f"x-api-key: {sorted(config.api_keys)[0]}", flush=True)
    try:
        with contextlib.suppress(KeyboardInterrupt):
            run_server_forever(config, port=args.port, faults=faults)
    except OSError as error:
        # A port in use, or one this user may not bind.
        print(f"avatar-pipeline emulator serve: cannot listen on port {args.port}: {error.strerror}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


def _run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from avatar_local.emulator.config import DEFAULT_COSTS
    from avatar_local.stack.runner import LocalRunConfig

    try:
        check_inbox(args.inbox, args.out)
    except RunFolderError as error:
        parser.error(f"--inbox: {error}")
    faults, crashes = _load_fault_file(args.faults, parser)
    config = LocalRunConfig(
        render_seconds=args.render_seconds,
        time_scale=args.time_scale,
        rpm=args.rpm,
        faults=faults,
        crashes=crashes,
        duplicate_events=args.duplicate_events,
        provider_costs={**DEFAULT_COSTS, **dict(args.provider_cost)},
    )
    if args.daily_spend_limit is not None:
        config.parameters["DailySpendLimitUsd"] = f"{args.daily_spend_limit:g}"
    try:
        completed, summary = run_local(args.inbox, args.out, config, args.timeout, sys.stdout)
    except RunFolderError as error:
        parser.error(f"--out: {error}")
    counts = summary["counts"]
    print(
        f"\n{counts['jobs']} jobs: {counts['succeeded']} succeeded, {counts['failed']} failed, "
        f"{counts['pending']} not finished; {counts['notifications']} notifications; "
        f"{counts['dead_letters']} in the DLQ; {summary['duration_seconds']} s"
    )
    for campaign in summary["campaigns"]:
        print(
            f"campaign {campaign['campaign_key']}: {campaign['status']}, {campaign['rows']} rows: "
            f"{campaign['succeeded']} succeeded, {campaign['failed']} failed, {campaign['skipped']} skipped"
            + (f"; report {_report_path(args.out, campaign)}" if campaign["report_key"] else "")
        )
    print(f"results in {args.out}/ (summary.json, notifications.jsonl, outputs/, inputs/)")
    return EXIT_OK if completed else EXIT_TIMEOUT


def _report_path(out: Path, campaign: dict[str, Any]) -> Path:
    """report.html beside the campaign's videos; an invalid campaign's error report in the input bucket."""
    if campaign["status"] == "FAILED":
        return out / "inputs" / str(campaign["report_key"])
    return out / "outputs" / (str(campaign["report_key"]).removesuffix(".json") + ".html")


def run_local(
    inbox: Path, out: Path, config: LocalRunConfig, timeout: float, console: TextIO
) -> tuple[bool, dict[str, Any]]:
    """Start the stack, drop the inbox, follow progress, write the results. Returns (completed, summary)."""
    from avatar_local.stack.runner import LocalPipeline

    prepare_out(out)
    config.log_path = out / "logs.jsonl"
    started = time.monotonic()
    console.write("starting local AWS, the Segmind emulator and the stack from template.yaml ...\n")
    console.flush()
    with LocalPipeline(config) as pipeline:
        job_keys = pipeline.drop(inbox, out)
        campaigns = f" and {len(pipeline.campaign_keys)} campaign file(s)" if pipeline.campaign_keys else ""
        console.write(
            f"dropped {len(job_keys)} job file(s){campaigns} into inbox/ ({time.monotonic() - started:.1f} s)\n"
        )
        for key in pipeline.ignored_job_files:
            console.write(f"skipped {key}: not a job file (job files end in .json, in lower case); uploaded as is\n")

        def show(job: JobProgress, elapsed: float) -> None:
            detail = f" (provider: {job.provider_status})" if job.provider_status and job.status == "RENDERING" else ""
            error = f" {job.error_code}" if job.error_code else ""
            console.write(f"  [{elapsed:6.1f}s] {job.job_key}: {job.status}{detail}{error}\n")
            console.flush()

        completed = pipeline.wait_until_terminal(job_keys, timeout, on_change=show)
        summary = pipeline.write_results(out, job_keys, time.monotonic() - started, completed)
    return completed, summary


def _demo(args: argparse.Namespace) -> int:
    from avatar_local.media_probe import probe
    from avatar_local.stack.runner import LocalRunConfig

    out: Path = args.out
    with tempfile.TemporaryDirectory() as tmp:
        inbox = Path(tmp) / "inbox"
        # examples/campaign/ is `make demo-campaign`'s: the demo is the one job file.
        shutil.copytree(EXAMPLES, inbox, ignore=shutil.ignore_patterns("campaign"))
        try:
            completed, summary = run_local(
                inbox, out, LocalRunConfig(time_scale=args.time_scale), args.timeout, sys.stdout
            )
        except RunFolderError as error:
            print(f"avatar-pipeline local demo: --out: {error}", file=sys.stderr)
            return EXIT_USAGE
    if not completed:
        print(f"the demo did not finish in time; see {out / 'logs.jsonl'}", file=sys.stderr)
        return EXIT_TIMEOUT
    _print_demo_result(out, summary, sys.stdout, probe)
    return EXIT_OK if all(j["status"] == "SUCCEEDED" for j in summary["jobs"]) else EXIT_TIMEOUT


def _print_demo_result(out: Path, summary: dict[str, Any], console: TextIO, probe: Callable[[Path], MediaInfo]) -> None:
    for job in summary["jobs"]:
        console.write(f"\n{job['input_key']}: {job['status']}\n")
        videos = [k for k in job["outputs"] if k.endswith((".mp4", ".webm"))]
        for key in videos:
            path = (out / "outputs" / key).resolve()
            info = probe(path)
            console.write(
                f"  video: {path}\n  duration: {info.duration_seconds:.1f} s, "
                f"streams: {info.video_codec} video + {info.audio_codec} audio\n"
            )
    notification_lines = (out / "notifications.jsonl").read_text().splitlines()
    if notification_lines:
        console.write("  notification:\n")
        console.write(json.dumps(json.loads(notification_lines[0]), indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
