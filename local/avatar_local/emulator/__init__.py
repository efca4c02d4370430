"""A Segmind v2 emulator (HeyGen Avatar IV / Avatar V) over real HTTP on loopback, with fault injection.

Use it as a context manager, `with SegmindEmulator(EmulatorConfig(time_scale=0.01)) as emu:`, then
send requests to `emu.base_url` with an `x-api-key` header and inspect `emu.jobs_snapshot()`,
`emu.stats()` and `emu.request_log`.
"""

from avatar_local.emulator.config import EmulatorConfig
from avatar_local.emulator.faults import FaultPlan, FaultRule
from avatar_local.emulator.service import SegmindEmulator, run_server_forever
from avatar_local.emulator.state import EmulatorStats, JobStats, RequestLogEntry

__all__ = [
    "EmulatorConfig",
    "EmulatorStats",
    "FaultPlan",
    "FaultRule",
    "JobStats",
    "RequestLogEntry",
    "SegmindEmulator",
    "run_server_forever",
]
