"""The emulator as a component: start/stop, the render workers, and what tests and benchmarks inspect."""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType

from avatar_local.emulator.config import EmulatorConfig
from avatar_local.emulator.faults import FaultBook, FaultPlan
from avatar_local.emulator.media import MediaError, Renderer
from avatar_local.emulator.server import HttpServer
from avatar_local.emulator.state import EmulatorStats, Job, JobBook, JobStats, RequestLogEntry

logger = logging.getLogger("avatar_local.emulator")


class SegmindEmulator:
    """A Segmind v2 look-alike on loopback. `start()` returns the base URL; also a context manager."""

    def __init__(self, config: EmulatorConfig | None = None, faults: FaultPlan | None = None) -> None:
        self.config = config or EmulatorConfig()
        self.faults = FaultBook(faults if faults is not None else self.config.faults)
        self.book = JobBook(self.config)
        self.stopping = threading.Event()
        self._server: HttpServer | None = None
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._renderer: Renderer | None = None
        self._work_dir: Path | None = None
        self._owns_work_dir = False
        self._pending = 0
        self._idle = threading.Condition()
        self._base_url = ""

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> str:
        if self._server is not None:
            return self._base_url
        self.stopping.clear()
        # Bound first: a port in use or out of reach fails here, before anything needs undoing.
        self._server = HttpServer((self.config.host, self.config.port), self)
        self._work_dir = self.config.work_dir or Path(tempfile.mkdtemp(prefix="segmind-emulator-"))
        self._owns_work_dir = self.config.work_dir is None
        (self._work_dir / "outputs").mkdir(parents=True, exist_ok=True)
        self._renderer = Renderer(self.config, self._work_dir / "outputs", self._work_dir / "scratch")
        # Downloads wait on the network, so more workers than render slots; the renderer caps ffmpeg itself.
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="segmind-emulator-render")
        host, port = self._server.server_address[:2]
        advertised = "127.0.0.1" if host in ("0.0.0.0", "", "::") else str(host)  # noqa: S104 - a comparison
        self._base_url = f"http://{advertised}:{port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="segmind-emulator", daemon=True
        )
        self._thread.start()
        logger.info("Segmind emulator listening on %s", self._base_url)
        return self._base_url

    def stop(self) -> None:
        if self._server is None:
            return
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        if self._renderer is not None:
            self._renderer.close()
        if self._owns_work_dir and self._work_dir is not None:
            shutil.rmtree(self._work_dir, ignore_errors=True)
        self._server = self._thread = self._pool = self._renderer = None

    def __enter__(self) -> SegmindEmulator:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return self._base_url

    @property
    def output_dir(self) -> Path | None:
        return self._work_dir / "outputs" if self._work_dir else None

    # --- inspection ------------------------------------------------------------------------------

    def jobs_snapshot(self) -> list[JobStats]:
        return self.book.snapshot()

    def stats(self) -> EmulatorStats:
        return self.book.stats(self.faults.injected, self.faults.injected_by_kind, self.faults.injected_by_endpoint)

    @property
    def request_log(self) -> list[RequestLogEntry]:
        return self.book.request_log()

    def set_faults(self, plan: FaultPlan) -> None:
        self.faults.replace(plan)

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """True once no render is in flight (downloads, speech, ffmpeg); False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout=timeout)

    # --- rendering -------------------------------------------------------------------------------

    def start_render(self, job: Job) -> None:
        if job.error is not None or job.expired_early or self._pool is None:
            return
        with self._idle:
            self._pending += 1
        self._pool.submit(self._render, job)

    def _render(self, job: Job) -> None:
        try:
            if self._renderer is None:
                raise MediaError("the emulator is stopping")
            output = self._renderer.render(job.request_id, job.model, job.params)
        except MediaError as exc:
            logger.info("job %s failed: %s", job.request_id, exc)
            self.book.fail(job.request_id, str(exc))
        except Exception as exc:
            # An emulator bug must still end the job (FAILED, visibly) rather than leave it PROCESSING forever.
            logger.exception("render of %s crashed", job.request_id)
            self.book.fail(job.request_id, f"internal render error: {type(exc).__name__}: {exc}")
        else:
            outputs = {output.video.suffix.lstrip("."): output.video}
            if output.captions is not None:
                outputs["srt"] = output.captions
            self.book.mark_rendered(job.request_id, outputs, output.duration)
        finally:
            with self._idle:
                self._pending -= 1
                self._idle.notify_all()


def run_server_forever(
    config: EmulatorConfig,
    host: str = "127.0.0.1",
    port: int = 8765,
    faults: FaultPlan | None = None,
    stop: threading.Event | None = None,
) -> None:
    """Serve until Ctrl-C (or until `stop` is set); what `avatar-pipeline emulator serve` runs."""
    emulator = SegmindEmulator(config.model_copy(update={"host": host, "port": port}), faults)
    base_url = emulator.start()
    print(f"Segmind emulator listening on {base_url} (API keys: {', '.join(sorted(config.api_keys))})", flush=True)
    stop = stop or threading.Event()
    try:
        while not stop.wait(0.2):
            pass
    except KeyboardInterrupt:
        logger.info("interrupted; stopping the emulator")
    finally:
        emulator.stop()
