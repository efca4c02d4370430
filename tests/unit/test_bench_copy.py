"""bench/bench_copy.py at a tiny size: the benchmark's machinery (servers, per-run processes, checks,
JSON) keeps working between the occasional full runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import bench_copy

# It starts a moto server, a sink and one process per copy: not a unit test in this repository's sense.
pytestmark = pytest.mark.integration


def test_the_copy_benchmark_runs_and_writes_its_figures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Given the copy benchmark at 8MB and 16MB, against both moto and the sink, each copy run twice
    When it runs
    Then it succeeds, prints the table and the targets, and writes the moto figures as
    {method: {size: {peak_rss_mb, mb_per_s}}} for streaming and naive, nothing else."""
    output = tmp_path / "copy.json"

    argv = ["--sizes", "8MB", "16MB", "--output", str(output), "--part-size-mib", "5", "--repeat", "2"]
    status = bench_copy.main(argv)

    assert status == 0
    figures = json.loads(output.read_text())
    assert set(figures) == {"streaming", "naive"}
    for method in figures.values():
        assert set(method) == {"8MB", "16MB"}
        for figure in method.values():
            assert set(figure) == {"peak_rss_mb", "mb_per_s"}
            assert all(isinstance(value, float) and value > 0 for value in figure.values())
    printed = capsys.readouterr().out
    assert "peak RSS MB" in printed
    assert "sink" in printed
    assert "streaming/naive throughput at 16MB" in printed
    runs = [line.split() for line in printed.splitlines() if line.startswith("  moto")]
    assert sum(words[1:3] == ["streaming", "8MB:"] for words in runs) == 2  # each run; the median counts


def test_sizes_are_read_as_binary_megabytes_and_gigabytes() -> None:
    """Given size labels as the results use them
    When they are read
    Then 100MB is 100 MiB and 2GB is 2 GiB, and anything else is refused."""
    assert bench_copy.size_bytes("100MB") == 100 * 1024**2
    assert bench_copy.size_bytes("2GB") == 2 * 1024**3
    with pytest.raises(ValueError, match="like 100MB"):
        bench_copy.size_bytes("2 GiB")


def test_the_synthetic_video_has_the_exact_size_and_an_mp4_signature() -> None:
    """Given the benchmark's generated video
    When it is produced at a size that is not a whole number of blocks
    Then it has exactly that many bytes, starts like an MP4, and no two blocks are alike."""
    size = 3 * bench_copy.BLOCK + 17
    blocks = list(bench_copy.video_blocks(size))

    assert sum(len(block) for block in blocks) == size
    assert blocks[0][4:8] == b"ftyp"
    assert len(set(blocks)) == len(blocks)
