"""Emulator settings: how fast, how strict and how generous the emulated provider is."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from avatar_local.emulator.faults import FaultPlan

OutputShape = Literal["string", "list", "object"]
SpeechEngine = Literal["auto", "espeak", "tone"]
# Made-up list prices (USD per video): only there so `metrics.cost` looks like a real one.
DEFAULT_COSTS: dict[str, float] = {"heygen-avatar-iv": 1.0, "heygen-avatar-v": 1.2}


class EmulatorConfig(BaseModel):
    """Every delay the emulator takes on its own is multiplied by `time_scale` (0.01 = 100x faster).

    Fault-plan delays (`FaultRule.delay_seconds`) are the exception: they are real seconds, because
    they exist to outlast a client's real socket timeout.
    """

    model_config = ConfigDict(extra="forbid")

    api_keys: set[str] = Field(default_factory=lambda: {"local-dev-key"})
    render_seconds: float = Field(default=140.0, ge=0)
    render_sigma: float = Field(default=0.0, ge=0)
    queued_fraction: float = Field(default=0.1, ge=0, le=1)
    time_scale: float = Field(default=1.0, gt=0)
    retention_seconds: float = Field(default=3600.0, gt=0)
    rpm: int | None = Field(default=None, ge=1)
    credits: int | None = Field(default=None, ge=0)
    # What a completed render reports as `metrics.cost`, per model (a model not listed: 1.0).
    costs: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_COSTS))
    output_shape: OutputShape = "string"
    seed: int | None = None
    work_dir: Path | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=0, ge=0, le=65535)
    # "auto" uses espeak-ng when it is on PATH; "tone" forces the fallback (tests pin both paths).
    speech: SpeechEngine = "auto"
    # Real renders are cheap here, but a 2-core machine must not run more than two ffmpeg at once.
    max_concurrent_renders: int = Field(default=2, ge=1)
    ffmpeg_timeout_seconds: float = Field(default=120.0, gt=0)
    media_timeout_seconds: float = Field(default=30.0, gt=0)
    max_media_bytes: int = Field(default=50 * 1024 * 1024, ge=1024)
    # The plan to start with when SegmindEmulator is not given one; set_faults() replaces it later.
    faults: FaultPlan | None = None

    def scaled(self, seconds: float) -> float:
        return seconds * self.time_scale
