"""What a new user of `avatar-pipeline` trips over: every argument explained, wrong values and missing
settings refused in one line that says what to do, and no flag demanded that the command never reads."""

from __future__ import annotations

import argparse
import math
import socket
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from avatar_local.cli import build_parser, main
from avatar_local.deployed import StackNames, UsageError

pytestmark = pytest.mark.unit


def every_parser(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield from every_parser(child)


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    assert "Traceback" not in text
    return lines[0]


@pytest.fixture
def no_aws_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No region, no credentials, no profile, no instance metadata: a fresh laptop."""
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                 "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                 "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_WEB_IDENTITY_TOKEN_FILE"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    return monkeypatch


def test_every_argument_of_every_command_has_help_text() -> None:
    missing = [
        f"{parser.prog} {'/'.join(action.option_strings) or action.dest}"
        for parser in every_parser(build_parser())
        for action in parser._actions
        if not isinstance(action, argparse._SubParsersAction) and not action.help
    ]
    assert missing == []


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (["local", "run", "--inbox", ".", "--out", "o", "--time-scale", "nan"], "--time-scale"),
        (["local", "run", "--inbox", ".", "--out", "o", "--time-scale", "inf"], "--time-scale"),
        (["local", "run", "--inbox", ".", "--out", "o", "--timeout", "nan"], "--timeout"),
        (["local", "demo", "--timeout", "-inf"], "--timeout"),
        (["emulator", "serve", "--time-scale", "nan"], "--time-scale"),
        (["emulator", "serve", "--port", "70000"], "--port"),
        (["emulator", "serve", "--port", "http"], "--port"),
        (["status", "--recent", "ten"], "--recent"),
    ],
)
def test_a_value_that_is_not_a_usable_number_is_refused_in_one_line(
    argv: list[str], complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--time-scale nan` used to traceback, `inf` to hang and `--timeout nan` to end at once."""
    with pytest.raises(SystemExit) as exited:
        main(argv)

    assert exited.value.code == 2
    assert complaint in one_line(capsys.readouterr().err)


def test_finite_positive_numbers_are_still_taken() -> None:
    args = build_parser().parse_args(["local", "run", "--inbox", ".", "--out", "o", "--time-scale", "0.5"])

    assert math.isclose(args.time_scale, 0.5)


def test_status_and_logs_need_only_the_jobs_table() -> None:
    """Given only --jobs-table (no stack, no buckets), the names resolve for what status and logs read."""
    names = StackNames.resolve(None, jobs_table="T", needs=("jobs_table",))

    assert names.jobs_table == "T"
    with pytest.raises(UsageError, match="--input-bucket"):
        StackNames.resolve(None, jobs_table="T")


def test_status_with_only_a_jobs_table_goes_to_aws_and_without_a_region_says_what_to_set(
    no_aws_settings: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Given `status --jobs-table T` on a machine with no AWS region configured
    When it runs
    Then it does not ask for bucket names, and ends with one line naming the variable to set."""
    assert main(["status", "--jobs-table", "T"]) == 2

    line = one_line(capsys.readouterr().err)
    assert "AWS_DEFAULT_REGION" in line
    assert "bucket" not in line


def test_no_credentials_is_one_line_saying_what_to_set(
    no_aws_settings: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    no_aws_settings.setenv("AWS_DEFAULT_REGION", "eu-west-1")

    assert main(["logs", "job-1", "--jobs-table", "T"]) == 2

    line = one_line(capsys.readouterr().err)
    assert "AWS_ACCESS_KEY_ID" in line
    assert "AWS_PROFILE" in line


def test_emulator_serve_on_a_busy_port_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]

        assert main(["emulator", "serve", "--port", str(port)]) == 2

    line = one_line(capsys.readouterr().err)
    assert f"port {port}" in line
