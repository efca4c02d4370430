"""Finalize's copy at any size: the streaming copier against the naive way, peak RSS and throughput.

    python -m bench copy                          # 100MB, 1GB, 2GB -> bench/results/copy.json
    python -m bench.bench_copy --sizes 512MB --backends moto --repeat 1 --output /tmp/copy.json
    python -m bench.bench_copy --sizes 8MB --output /tmp/copy.json --part-size-mib 16 --workers 2
    python -m bench.bench_copy --sizes 512MB --backends sink --sink-mb-per-s 85 --sink-latency-ms 20

Each copy runs in a process of its own, so `ru_maxrss` is that copy's peak and nothing else's:
the real `StreamingCopier` ("streaming") or "download everything into memory, then one
put_object" ("naive", which hashes the body too: the manifest needs the sha256 either way). The
video is generated on the fly by a loopback HTTP server in this process (1 MiB blocks, each
stamped with its index, so a misplaced part changes the hash; nothing is written to disk). Every
copy is checked: size and sha256 as the copy reports them, and the stored object's length.

Two S3 endpoints, each in another process so its memory does not count:
- a moto server: the figures in copy.json. moto MD5s every part and spools it to a temporary file;
  on CompleteMultipartUpload it reads every part back, concatenates them, copies the result once
  more and spools the whole object again, all in one thread of one Python process that shares the
  machine's cores with the copy (timed at 1 GiB: 3.2 s concatenating, 1.7 s storing, of a 5.1 s
  call). An upload created without a checksum algorithm costs it one more concatenation and a CRC
  over the whole object besides (5.6 s more at 1 GiB), which is why the copier names CRC32;
- a sink that speaks just enough S3 to take the uploads and throws the bytes away: the copy's own
  ceiling on this machine, without moto's per-byte costs. It can also be shaped like S3 (a rate
  cap per request, a delay per answer), which is how the copier's part size and workers were chosen.
The table shows the CPU seconds the copy and the S3 process each spent and the time the copy
waited in CompleteMultipartUpload, which is where moto's multipart costs show.

The machine may be shared: each method runs `--repeat` times per size (3 by default), the two
taking turns and swapping who goes first each round, so a burst of load from elsewhere hits both
alike; the run of median throughput is the one reported (the range beside it), and the peak RSS is
the highest of all runs. Each run's line shows the load average just before it.

Sizes are binary (100MB = 100 MiB); MB/s is MiB per second of the copy call itself (interpreter
start-up and imports excluded); RSS is in MiB. Over plain http botocore also hashes every request
body to sign it (a second sha256), which it does not do over https on AWS.
"""

from __future__ import annotations

import argparse
import hashlib
import http.server
import json
import os
import re
import resource
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import parse_qs, urlsplit

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

MIB = 1024 * 1024
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results" / "copy.json"
SIZES = ("100MB", "1GB", "2GB")
METHODS = ("streaming", "naive")
BACKENDS = ("moto", "sink")
BUCKET = "bench-copy"
REGION = "us-east-1"
BLOCK = 1 * MIB
SHARED_MEMORY = "/dev/shm"  # noqa: S108 - tmpfs for moto's spooled parts; nothing secret goes there
MP4_HEAD = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"
BLOCK_BODY = hashlib.shake_256(b"bench-copy").digest(BLOCK)  # pseudo-random: video does not compress either
# Targets from the issue: streaming stays flat and small, and is not slower than the naive copy.
MAX_STREAMING_RSS_MB = 200.0
MAX_RSS_GROWTH = 0.20
MIN_SPEED_RATIO = 0.9


def size_bytes(label: str) -> int:
    match = re.fullmatch(r"(\d+)(MB|GB)", label)
    if match is None:
        raise ValueError(f"size {label!r} is not like 100MB or 2GB")
    return int(match[1]) * (MIB if match[2] == "MB" else 1024 * MIB)


# --- the synthetic video ------------------------------------------------------------------------------


def video_blocks(size: int) -> Iterator[bytes]:
    """The video's bytes, one 1 MiB block at a time: an MP4 signature first, then each block's index
    followed by the same filler. One write per block: small writes between large ones meet Nagle."""
    index = 0
    remaining = size
    while remaining > 0:
        head = MP4_HEAD if index == 0 else b""
        block = head + struct.pack(">Q", index) + BLOCK_BODY[: BLOCK - 8 - len(head)]
        yield block[:remaining]
        remaining -= min(remaining, BLOCK)
        index += 1


def expected_sha256(size: int) -> str:
    digest = hashlib.sha256()
    for block in video_blocks(size):
        digest.update(block)
    return digest.hexdigest()


class _VideoHandler(http.server.BaseHTTPRequestHandler):
    """GET /<bytes>.mp4 streams that many bytes of synthetic video with a Content-Length."""

    def do_GET(self) -> None:
        match = re.fullmatch(r"/(\d+)\.mp4", self.path)
        if match is None:
            self.send_error(404)
            return
        size = int(match[1])
        self.send_response(200)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Content-Length", str(size))
        self.end_headers()
        for block in video_blocks(size):
            self.wfile.write(block)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: a line per request would interleave with the table."""


@contextmanager
def video_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _VideoHandler)
    thread = threading.Thread(target=server.serve_forever, name="bench-video-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


# --- S3 endpoints in other processes ------------------------------------------------------------------


class _SinkHandler(http.server.BaseHTTPRequestHandler):
    """Just enough of S3's REST API for a copy: buckets and objects exist only as byte counts."""

    protocol_version = "HTTP/1.1"  # keep-alive and Expect: 100-continue, as botocore uses them
    sizes: ClassVar[dict[str, int]] = {}
    parts: ClassVar[dict[str, dict[int, int]]] = {}
    lock: ClassVar[threading.Lock] = threading.Lock()
    # Optional shaping, to stand in for real S3: bytes per second per request, and seconds per request.
    rate: ClassVar[float] = 0.0
    latency: ClassVar[float] = 0.0

    def do_HEAD(self) -> None:
        path, _ = self._target()
        if path.count("/") <= 1:
            self._reply(200)
        elif path in self.sizes:
            self._reply(200, headers={"Content-Length": str(self.sizes[path]), "ETag": '"sink"'}, body=None)
        else:
            self._reply(404)

    def do_GET(self) -> None:
        """ListMultipartUploads (the copier clears a killed copy's upload first): none are ever left open."""
        path, query = self._target()
        if "uploads" not in query:
            self._reply(404)
            return
        bucket = path.strip("/").split("/", 1)[0]
        xml = (
            f"<ListMultipartUploadsResult><Bucket>{bucket}</Bucket>"
            "<IsTruncated>false</IsTruncated></ListMultipartUploadsResult>"
        )
        self._reply(200, body=xml.encode())

    def do_PUT(self) -> None:
        path, query = self._target()
        received = self._drain()
        with self.lock:
            if "uploadId" in query:
                self.parts[query["uploadId"]][int(query["partNumber"])] = received
            elif path.count("/") > 1:
                self.sizes[path] = received
        self._reply(200, headers={"ETag": f'"{query.get("partNumber", "0")}-{received:x}"'})

    def do_POST(self) -> None:
        path, query = self._target()
        self._drain()
        bucket, key = path.lstrip("/").split("/", 1)
        if "uploads" in query:
            upload_id = f"u{len(self.parts) + 1}"
            with self.lock:
                self.parts[upload_id] = {}
            xml = (
                f"<InitiateMultipartUploadResult><Bucket>{bucket}</Bucket><Key>{key}</Key>"
                f"<UploadId>{upload_id}</UploadId></InitiateMultipartUploadResult>"
            )
        else:
            with self.lock:
                self.sizes[path] = sum(self.parts.pop(query["uploadId"]).values())
            xml = (
                f"<CompleteMultipartUploadResult><Bucket>{bucket}</Bucket><Key>{key}</Key>"
                '<ETag>"sink-1"</ETag></CompleteMultipartUploadResult>'
            )
        self._reply(200, body=xml.encode())

    def do_DELETE(self) -> None:
        path, query = self._target()
        with self.lock:
            if "uploadId" in query:
                self.parts.pop(query["uploadId"], None)
            else:
                self.sizes.pop(path, None)
        self._reply(204)

    def _target(self) -> tuple[str, dict[str, str]]:
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        return parts.path, query

    def _drain(self) -> int:
        remaining = int(self.headers.get("Content-Length", "0"))
        buffer = memoryview(bytearray(MIB))
        received = 0
        started = time.monotonic()
        while remaining:
            read = self.rfile.readinto(buffer[: min(remaining, MIB)])
            if not read:
                break
            received += read
            remaining -= read
            if self.rate:
                time.sleep(max(0.0, started + received / self.rate - time.monotonic()))
        time.sleep(self.latency)
        return received

    def _reply(self, status: int, headers: dict[str, str] | None = None, body: bytes | None = b"") -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if body is not None:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


def serve_sink(port: int, mb_per_s: float, latency_ms: float) -> None:
    _SinkHandler.rate, _SinkHandler.latency = mb_per_s * MIB, latency_ms / 1000
    http.server.ThreadingHTTPServer(("127.0.0.1", port), _SinkHandler).serve_forever()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class S3Server:
    name: str
    endpoint: str
    process: subprocess.Popen[bytes]

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server so far (Linux /proc), to see whether it is the bottleneck."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def moto_environment() -> dict[str, str]:
    """moto spills every part and object over 5 MiB to a temporary file; on tmpfs that costs memory
    copies rather than disk writes, which keeps the disk of this machine out of the figures."""
    env = dict(os.environ)
    if os.access(SHARED_MEMORY, os.W_OK):
        env["TMPDIR"] = SHARED_MEMORY
    return env


@contextmanager
def s3_server(name: str, sink_shaping: tuple[float, float] = (0.0, 0.0)) -> Iterator[S3Server]:
    port = free_port()
    if name == "moto":
        command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    else:
        command = [sys.executable, "-m", "bench.bench_copy", "--serve-sink", str(port)]
        command += ["--sink-mb-per-s", str(sink_shaping[0]), "--sink-latency-ms", str(sink_shaping[1])]
    process = subprocess.Popen(  # noqa: S603 - our own interpreter, fixed arguments
        command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=moto_environment()
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the {name} S3 server did not start") from None
                time.sleep(0.1)
        yield S3Server(name, f"http://127.0.0.1:{port}", process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def s3_client(endpoint: str, workers: int = 10) -> S3Client:
    import boto3
    from botocore.config import Config

    config = Config(max_pool_connections=max(10, workers), retries={"max_attempts": 1})
    # Both endpoints accept any credentials; explicit ones keep the bench away from the environment's.
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        config=config,
        aws_access_key_id="bench",
        aws_secret_access_key="bench",  # noqa: S106 - not a secret
    )


# --- one copy, in its own process ---------------------------------------------------------------------


@dataclass(frozen=True)
class RunResult:
    size: int
    sha256: str
    seconds: float
    complete_seconds: float
    peak_rss_mb: float
    cpu_seconds: float

    @property
    def mb_per_s(self) -> float:
        return self.size / MIB / self.seconds


@dataclass(frozen=True)
class CopierShape:
    """The streaming copier's knobs under test: part size (bytes) and upload workers."""

    part_size: int
    workers: int


def copy_once(method: str, url: str, endpoint: str, key: str, shape: CopierShape) -> dict[str, Any]:
    """The child's work: one copy, timed, then its own peak RSS and CPU time."""
    import httpx

    from avatar_pipeline.adapters.transfer import DownloadPolicy, StreamingCopier

    s3 = s3_client(endpoint, shape.workers)
    http = httpx.Client(timeout=httpx.Timeout(120.0), trust_env=False)
    policy = DownloadPolicy(max_bytes=8 * 1024 * MIB, allow_loopback_http=True)
    copier = StreamingCopier(s3, http, policy, part_size=shape.part_size, upload_workers=shape.workers)
    completing: list[float] = []
    s3.meta.events.register(
        "before-call.s3.CompleteMultipartUpload", lambda **_: completing.append(time.perf_counter())
    )
    s3.meta.events.register("after-call.s3.CompleteMultipartUpload", lambda **_: completing.append(time.perf_counter()))
    s3.head_bucket(Bucket=BUCKET)  # a warm connection and credentials before the clock starts
    started = time.perf_counter()
    if method == "streaming":
        copied = copier.copy(url, BUCKET, key, expect="video")
        size, sha256 = copied.size, copied.sha256
    else:
        body = http.get(url).raise_for_status().content
        sha256 = hashlib.sha256(body).hexdigest()
        s3.put_object(Bucket=BUCKET, Key=key, Body=body, ContentType="video/mp4")
        size = len(body)
    seconds = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "size": size,
        "sha256": sha256,
        "seconds": seconds,
        "complete_seconds": completing[1] - completing[0] if len(completing) == 2 else 0.0,
        "peak_rss_mb": usage.ru_maxrss / 1024,  # KiB on Linux
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
    }


def run_in_subprocess(method: str, url: str, endpoint: str, key: str, shape: CopierShape) -> RunResult:
    command = [sys.executable, "-m", "bench.bench_copy", "--child", method, url, endpoint, key]
    command += ["--part-size-mib", str(shape.part_size // MIB), "--workers", str(shape.workers)]
    done = subprocess.run(  # noqa: S603 - our own interpreter and module
        command, cwd=ROOT, capture_output=True, text=True, timeout=900, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"the {method} copy failed:\n{done.stderr[-3000:]}")
    return RunResult(**json.loads(done.stdout.splitlines()[-1]))


# --- the benchmark ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Measured:
    """One method at one size: the run of median throughput (the table's figures), and every run."""

    backend: str
    method: str
    size_label: str
    result: RunResult
    s3_cpu_seconds: float
    runs: tuple[RunResult, ...] = ()

    @property
    def peak_rss_mb(self) -> float:
        """The highest of all runs: the RSS target is about the worst case."""
        return max((r.peak_rss_mb for r in self.runs), default=self.result.peak_rss_mb)


def median_run(runs: list[tuple[RunResult, float]]) -> tuple[RunResult, float]:
    """The run of median throughput (the lower middle one of an even count), with its S3 CPU seconds."""
    ranked = sorted(runs, key=lambda run: run[0].mb_per_s)
    return ranked[(len(ranked) - 1) // 2]


def measure(
    backend: str,
    sizes: list[str],
    methods: list[str],
    shape: CopierShape,
    base_url: str,
    sink_shaping: tuple[float, float] = (0.0, 0.0),
    repeat: int = 1,
) -> list[Measured]:
    """Each method `repeat` times per size, the methods taking turns (and swapping who goes first each
    round), so a burst of load from elsewhere on the machine hits both alike; the median run counts."""
    measured: list[Measured] = []
    with s3_server(backend, sink_shaping) as server:
        s3 = s3_client(server.endpoint)
        s3.create_bucket(Bucket=BUCKET)
        for label in sizes:
            size = size_bytes(label)
            expected = expected_sha256(size)
            runs: dict[str, list[tuple[RunResult, float]]] = {method: [] for method in methods}
            for round_ in range(repeat):
                for method in methods if round_ % 2 == 0 else methods[::-1]:
                    key = f"videos/{method}-{label}.mp4"
                    load = os.getloadavg()[0]
                    before = server.cpu_seconds()
                    url = f"{base_url}/{size}.mp4"
                    result = run_in_subprocess(method, url, server.endpoint, key, shape)
                    s3_cpu = server.cpu_seconds() - before
                    stored = s3.head_object(Bucket=BUCKET, Key=key)["ContentLength"]
                    if (result.size, result.sha256, stored) != (size, expected, size):
                        raise RuntimeError(
                            f"{method} {label}: copied {result.size}/{stored} bytes, sha {result.sha256}"
                        )
                    s3.delete_object(Bucket=BUCKET, Key=key)  # keeps the server's footprint flat
                    runs[method].append((result, s3_cpu))
                    print(
                        f"  {backend:<4} {method:<9} {label:>6}: {result.mb_per_s:7.1f} MB/s, "
                        f"peak RSS {result.peak_rss_mb:7.1f} MB (load average before: {load:.1f})",
                        flush=True,
                    )
            for method in methods:
                result, s3_cpu = median_run(runs[method])
                all_runs = tuple(run for run, _ in runs[method])
                measured.append(Measured(backend, method, label, result, s3_cpu, all_runs))
    return measured


Figures = dict[str, dict[str, dict[str, float]]]


def as_json(measured: list[Measured]) -> Figures:
    figures: Figures = {}
    for m in measured:
        figures.setdefault(m.method, {})[m.size_label] = {
            "peak_rss_mb": round(m.peak_rss_mb, 1),
            "mb_per_s": round(m.result.mb_per_s, 1),
        }
    return figures


def table(measured: list[Measured]) -> str:
    header = ["S3", "method", "size", "peak RSS MB", "MB/s", "MB/s range"]
    header += ["seconds", "copy CPU s", "S3 CPU s", "complete s"]
    row = "{:<5} {:<10} {:>6} {:>12} {:>8} {:>13} {:>8} {:>11} {:>9} {:>11}"
    lines = [row.format(*header)]
    for m in measured:
        r = m.result
        speeds = [run.mb_per_s for run in m.runs] or [r.mb_per_s]
        lines.append(
            row.format(
                m.backend,
                m.method,
                m.size_label,
                f"{m.peak_rss_mb:.1f}",
                f"{r.mb_per_s:.1f}",
                f"{min(speeds):.1f}-{max(speeds):.1f}",
                f"{r.seconds:.2f}",
                f"{r.cpu_seconds:.1f}",
                f"{m.s3_cpu_seconds:.1f}",
                f"{r.complete_seconds:.2f}" if m.method == "streaming" else "-",
            )
        )
    return "\n".join(lines)


def verdicts(figures: Figures, sizes: list[str], backend: str) -> list[str]:
    """The issue's targets, judged on the sizes that ran (the largest against the smallest)."""
    streaming, naive = figures.get("streaming", {}), figures.get("naive", {})
    out: list[str] = []
    if streaming:
        small, large = sizes[0], sizes[-1]
        rss = streaming[large]["peak_rss_mb"]
        met = rss <= MAX_STREAMING_RSS_MB
        out.append(f"streaming peak RSS at {large} <= {MAX_STREAMING_RSS_MB:.0f} MB: {rss:.1f} -> {_ok(met)}")
        growth = rss / streaming[small]["peak_rss_mb"] - 1
        out.append(
            f"streaming peak RSS at {large} within {MAX_RSS_GROWTH:.0%} of {small}: {growth:+.1%} -> "
            f"{_ok(growth <= MAX_RSS_GROWTH)}"
        )
    if streaming and naive:
        for label in sizes:
            ratio = streaming[label]["mb_per_s"] / naive[label]["mb_per_s"]
            out.append(
                f"streaming/naive throughput at {label} >= {MIN_SPEED_RATIO} ({backend}): {ratio:.2f} -> "
                f"{_ok(ratio >= MIN_SPEED_RATIO)}"
            )
    return out


def _ok(met: bool) -> str:
    return "met" if met else "NOT MET"


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_copy", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), help="ascending, e.g. 100MB 1GB 2GB")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where the moto figures go as JSON")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--part-size-mib", type=int, default=None, help="default: the copier's own")
    parser.add_argument("--workers", type=int, default=None, help="default: the copier's own")
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs of each method per size, taking turns; the median counts"
    )
    parser.add_argument(
        "--sink-mb-per-s", type=float, default=0.0, help="sink: cap each request at this rate (0: no cap)"
    )
    parser.add_argument("--sink-latency-ms", type=float, default=0.0, help="sink: delay every answer by this much")
    parser.add_argument("--child", nargs=4, metavar=("METHOD", "URL", "ENDPOINT", "KEY"), help=argparse.SUPPRESS)
    parser.add_argument("--serve-sink", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for label in args.sizes:
        try:
            size_bytes(label)
        except ValueError as exc:
            parser.error(str(exc))
    return args


def main(argv: list[str] | None = None) -> int:
    """`python -m bench` calls this without arguments: the full benchmark with the copier's defaults."""
    from avatar_pipeline.adapters.transfer import DEFAULT_PART_SIZE, DEFAULT_UPLOAD_WORKERS

    args = parse(argv or [])
    part_size = args.part_size_mib * MIB if args.part_size_mib else DEFAULT_PART_SIZE
    shape = CopierShape(part_size, args.workers or DEFAULT_UPLOAD_WORKERS)
    if args.serve_sink:
        serve_sink(args.serve_sink, args.sink_mb_per_s, args.sink_latency_ms)
        return 0
    if args.child:
        method, url, endpoint, key = args.child
        print(json.dumps(copy_once(method, url, endpoint, key, shape)))
        return 0

    print(
        f"streaming: {shape.part_size // MIB} MiB parts, {shape.workers} upload workers; "
        "naive: GET into memory, one PUT"
    )
    measured: list[Measured] = []
    with video_server() as base_url:
        for backend in args.backends:
            shaping = (args.sink_mb_per_s, args.sink_latency_ms)
            measured += measure(backend, args.sizes, args.methods, shape, base_url, shaping, max(1, args.repeat))
    print()
    print(table(measured))
    for backend in args.backends:
        figures = as_json([m for m in measured if m.backend == backend])
        for line in verdicts(figures, args.sizes, backend):
            print(line)
        if backend == "moto":
            args.output.parent.mkdir(parents=True, exist_ok=True)
            args.output.write_text(json.dumps(figures, indent=2) + "\n")
            print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
