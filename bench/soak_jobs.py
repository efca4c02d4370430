"""The soak's jobs: N job files and their media, all drawn from one `random.Random(seed)`.

A mix of both models (Avatar IV with a photo, Avatar V with a prompt), captions, WebM, audio-driven
jobs (a WAV beside the job), photos shared by several job files (in one folder, and across folders:
`inbox/g007/intro.json` names `shared/face.png` while `inbox/g007/shared/outro.json` names
`face.png`, the same object), explicit output keys (a few pairs on purpose the same), about 10% bad
input and about 5% late media (the job file first, its media some virtual seconds later, within
MediaWaitSeconds). The same seed gives the same files, byte for byte.

Every job carries what makes it unique to the provider (the identity the emulator records for a
submit: its title, Avatar V's prompt, or for an Avatar V job driven by audio the key of its own
audio file), so accepted submits are attributed to jobs exactly (bench/soak_check.py).
"""

from __future__ import annotations

import io
import json
import math
import random
import struct
import wave
import zlib
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from avatar_pipeline.settings import Settings

IV = "heygen-avatar-iv"
V = "heygen-avatar-v"
IV_VOICES = ("Onyx", "Coral", "Nova", "Shimmer")
V_AVATARS = ("Abigail Sofa Front", "Anja Office Front", "Artur Office Front", "Blanka Lounge Front")
V_VOICES = ("Aaron", "Allison", "Camden", "Daniel")
ASPECTS = ("16:9", "9:16", "1:1")
SENTENCES = (
    "Welcome to the quarterly update.",
    "Thanks for joining us today.",
    "Here is what changed this week.",
    "Your order is on its way.",
    "Let me show you around.",
    "We hope you enjoy the new release.",
)
# The limit the stack runs with (the settings' default: the template sets none).
MAX_JOB_FILE_BYTES: int = Settings.model_fields["max_job_file_bytes"].default

# Shares of the jobs (of N) that are bad input, late media, and in the groups below.
BAD_SHARE = 0.10
LATE_SHARE = 0.05
SAME_FOLDER_SHARE = 0.06  # jobs sharing one photo in one folder (groups of 2-3)
CROSS_FOLDER_SHARE = 0.06  # pairs: intro.json names shared/face.png, shared/outro.json names face.png
OUTPUT_CONFLICT_SHARE = 0.02  # pairs of jobs giving the same output_key
OUTPUT_KEY_SHARE = 0.10  # single jobs with an output_key of their own
# A late file arrives this many virtual seconds after its job file (MediaWaitSeconds is 300).
LATE_DELAY_SECONDS = (20.0, 200.0)

# The bad-input cases and the code each must end with.
BAD_CASES: dict[str, str] = {
    "invalid_json": "INVALID_JOB",
    "unknown_key": "INVALID_JOB",
    "bad_enum": "INVALID_JOB",
    "missing_photo": "MISSING_MEDIA",
    "unsupported_media": "UNSUPPORTED_MEDIA",
    "empty_media": "UNSUPPORTED_MEDIA",
    "too_large": "INVALID_JOB",
}
GOOD_KINDS: dict[str, float] = {"iv_photo": 0.45, "iv_audio": 0.07, "v_prompt": 0.38, "v_audio": 0.10}


@dataclass
class SoakJob:
    number: int
    key: str  # the job file's key in the input bucket (inbox/...)
    kind: str  # iv_photo, iv_audio, v_prompt, v_audio, or bad:<case>
    model: str | None
    body: bytes
    # The media the job file names, by field (photo/audio) -> key in inbox/ (what leaves with the job).
    media: dict[str, str] = field(default_factory=dict)
    # The identity the emulator records for this job's submit (see avatar_local.emulator.state.job_identity).
    identity: str | None = None
    title: str | None = None  # video_title or prompt: what the provider is given to say who the job is
    bad_case: str | None = None
    expected_code: str | None = None  # for bad input: the code it must fail with
    late_keys: list[str] = field(default_factory=list)  # its media uploaded after the job file
    output_key: str | None = None
    tags: list[str] = field(default_factory=list)  # shared_photo, cross_folder, output_conflict, late, ...

    @property
    def bad(self) -> bool:
        return self.bad_case is not None

    @property
    def provider_media(self) -> dict[str, str]:
        """The media keys the provider is given, by URL parameter (image_url / audio_url)."""
        names = {"photo": "image_url", "audio": "audio_url"}
        return {names[name]: key for name, key in self.media.items()}


@dataclass
class SoakUpload:
    key: str
    body: bytes
    # Late media only: uploaded this many virtual seconds after the job file `follows`.
    delay_seconds: float = 0.0
    follows: str | None = None


@dataclass
class SoakPlan:
    seed: int
    jobs: list[SoakJob]
    media: list[SoakUpload]  # uploaded before the job files
    late: list[SoakUpload]  # uploaded after them, each after its delay

    def by_key(self) -> dict[str, SoakJob]:
        return {job.key: job for job in self.jobs}

    def counts(self) -> dict[str, int]:
        return {
            "jobs": len(self.jobs),
            "bad_input": sum(job.bad for job in self.jobs),
            "late_media": sum("late" in job.tags for job in self.jobs),
            "shared_photo": sum("shared_photo" in job.tags for job in self.jobs),
            "cross_folder_photo": sum("cross_folder" in job.tags for job in self.jobs),
            "output_key_conflict": sum("output_conflict" in job.tags for job in self.jobs),
            "audio_driven": sum(job.kind in ("iv_audio", "v_audio") for job in self.jobs),
            "captions": sum("caption" in job.tags for job in self.jobs),
            "webm": sum("webm" in job.tags for job in self.jobs),
            **{f"model_{model}": sum(job.model == model for job in self.jobs) for model in (IV, V)},
        }


def png(rng: random.Random, size: int = 48) -> bytes:
    """A small RGB PNG with colours drawn from `rng` (each photo its own bytes, so its own ETag)."""
    r, g, b = (rng.randrange(256) for _ in range(3))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    rows = b"".join(
        b"\x00" + b"".join(bytes([(r + x * 5) % 256, (g + y * 3) % 256, b]) for x in range(size)) for y in range(size)
    )
    header = size.to_bytes(4, "big") + size.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def wav(rng: random.Random, rate: int = 16000) -> bytes:
    """A short mono 16-bit WAV tone (1-2 s): real, decodable audio for audio-driven jobs."""
    seconds = rng.uniform(1.0, 2.0)
    pitch = rng.uniform(150, 300)
    frames = b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * pitch * i / rate))) for i in range(int(seconds * rate))
    )
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(rate)
        writer.writeframes(frames)
    return buffer.getvalue()


class _Drawn(NamedTuple):
    """A good job's drawn parts: its document, media keys, title, provider identity and video extension."""

    document: dict[str, Any]
    media: dict[str, str]
    title: str | None
    identity: str
    extension: str


class _Builder:
    def __init__(self, seed: int, jobs: int) -> None:
        self.seed = seed
        self.total = jobs
        self.rng = random.Random(seed)  # a reproducible test plan, not security
        self.jobs: list[SoakJob] = []
        self.media: list[SoakUpload] = []
        self.late: list[SoakUpload] = []
        self.groups = 0

    def folder(self) -> str:
        self.groups += 1
        return f"inbox/soak-{self.seed}/g{self.groups:03d}"

    def left(self) -> int:
        return self.total - len(self.jobs)

    def upload(self, key: str, body: bytes) -> None:
        self.media.append(SoakUpload(key, body))

    # --- good jobs -----------------------------------------------------------------------------------
    def good(
        self,
        kind: str,
        folder: str,
        name: str = "job",
        photo: str | None = None,
        output_key: str | None = None,
        tags: tuple[str, ...] = (),
    ) -> SoakJob:
        """A valid job of `kind` at folder/name.json. `photo`: the reference to name (default: its own
        photo, uploaded here); the caller uploads a shared one."""
        rng = self.rng
        number = len(self.jobs) + 1
        key = f"{folder}/{name}.json"
        spoken = " ".join(rng.sample(SENTENCES, 2))
        job_tags = list(tags)
        if kind in ("iv_photo", "iv_audio"):
            drawn = self._avatar_iv(kind, folder, number, photo, spoken)
        else:
            drawn = self._avatar_v(kind, folder, number, spoken, job_tags)
        document, media, title, identity, extension = drawn
        if output_key is None and rng.random() < OUTPUT_KEY_SHARE:
            output_key = f"campaign-{self.seed}/job-{number:04d}.{extension}"
        if output_key is not None:
            document["output_key"] = output_key
        document["metadata"] = {"soak_seed": self.seed, "soak_job": number}
        job = SoakJob(
            number=number,
            key=key,
            kind=kind,
            model=str(document["model"]),
            body=json.dumps(document).encode(),
            media=media,
            identity=identity,
            title=title,
            output_key=output_key,
            tags=job_tags,
        )
        self.jobs.append(job)
        return job

    def _avatar_iv(self, kind: str, folder: str, number: int, photo: str | None, spoken: str) -> _Drawn:
        """An Avatar IV job's document and media: its own photo unless `photo` names a shared one."""
        rng = self.rng
        title = f"Soak {self.seed} job {number:04d}"
        media: dict[str, str] = {}
        if photo is None:
            photo = f"face-{number:04d}.png"
            self.upload(f"{folder}/{photo}", png(rng))
        document: dict[str, Any] = {
            "model": IV,
            "photo": photo,
            "video_title": title,
            "voice_id": rng.choice(IV_VOICES),
        }
        media["photo"] = _resolve(folder, photo)
        if kind == "iv_audio":
            document["audio"] = f"voice-{number:04d}.wav"
            media["audio"] = f"{folder}/voice-{number:04d}.wav"
            self.upload(media["audio"], wav(rng))
        else:
            document["script"] = spoken
        if rng.random() < 0.2:
            document["video_orientation"] = "portrait"
        return _Drawn(document, media, title, title, "mp4")

    def _avatar_v(self, kind: str, folder: str, number: int, spoken: str, job_tags: list[str]) -> _Drawn:
        """An Avatar V job's document and media (a prompt, or its own audio); its tags go to `job_tags`."""
        rng = self.rng
        media: dict[str, str] = {}
        document: dict[str, Any] = {"model": V, "avatar": rng.choice(V_AVATARS), "aspect_ratio": rng.choice(ASPECTS)}
        document["resolution"] = "720p"
        title: str | None
        if kind == "v_audio":
            document["audio"] = f"voice-{number:04d}.wav"
            media["audio"] = f"{folder}/voice-{number:04d}.wav"
            self.upload(media["audio"], wav(rng))
            title = None
            identity = "media:" + media["audio"]
        else:
            title = f"Soak {self.seed} job {number:04d}. {spoken}"
            document["prompt"] = title
            document["voice"] = rng.choice(V_VOICES)
            identity = title
        if rng.random() < 0.35:
            document["caption"] = True
            job_tags.append("caption")
        extension = "mp4"
        if rng.random() < 0.25 and "output_conflict" not in job_tags:
            document["output_format"] = "webm"
            extension = "webm"
            job_tags.append("webm")
        return _Drawn(document, media, title, identity, extension)

    def good_kind(self) -> str:
        return self.rng.choices(list(GOOD_KINDS), list(GOOD_KINDS.values()))[0]

    # --- groups ----------------------------------------------------------------------------------------
    def single(self) -> None:
        self.good(self.good_kind(), self.folder())

    def late_media(self) -> None:
        folder = self.folder()
        kind = self.rng.choice(("iv_photo", "iv_audio", "v_audio"))
        before = len(self.media)
        job = self.good(kind, folder, tags=("late",))
        # Everything this job uploaded goes up late instead, each after its own delay.
        for upload in self.media[before:]:
            upload.delay_seconds = round(self.rng.uniform(*LATE_DELAY_SECONDS), 1)
            upload.follows = job.key
            self.late.append(upload)
            job.late_keys.append(upload.key)
        del self.media[before:]

    def same_folder_photo(self) -> None:
        folder = self.folder()
        self.upload(f"{folder}/face.png", png(self.rng))
        for index in range(min(self.left(), self.rng.choice((2, 3)))):
            kind = "iv_audio" if self.rng.random() < 0.2 else "iv_photo"
            self.good(kind, folder, name=f"take-{index + 1}", photo="face.png", tags=("shared_photo",))

    def cross_folder_photo(self) -> None:
        folder = self.folder()
        self.upload(f"{folder}/shared/face.png", png(self.rng))
        self.good("iv_photo", folder, name="intro", photo="shared/face.png", tags=("shared_photo", "cross_folder"))
        if self.left() > 0:
            self.good(
                "iv_photo", f"{folder}/shared", name="outro", photo="face.png", tags=("shared_photo", "cross_folder")
            )

    def output_conflict(self) -> None:
        output_key = f"campaign-{self.seed}/conflict-{self.groups + 1:03d}.mp4"
        for _ in range(min(self.left(), 2)):
            kind = self.rng.choice(("iv_photo", "v_prompt"))
            self.good(kind, self.folder(), output_key=output_key, tags=("output_conflict",))

    # --- bad input -------------------------------------------------------------------------------------
    def bad(self, case: str) -> None:
        rng = self.rng
        folder = self.folder()
        number = len(self.jobs) + 1
        title = f"Soak {self.seed} job {number:04d} (bad: {case})"
        key = f"{folder}/job.json"
        media: dict[str, str] = {}
        model: str | None = IV
        document: dict[str, Any] = {"model": IV, "photo": "face.png", "video_title": title, "script": "Hello there."}
        body: bytes | None = None
        if case == "invalid_json":
            body = f'{{"model": "{IV}", "video_title": "{title}", "script": '.encode()
        elif case == "unknown_key":
            document["colour"] = "blue"
            self.upload(f"{folder}/face.png", png(rng))
            media["photo"] = f"{folder}/face.png"
        elif case == "bad_enum":
            model = V
            document = {"model": V, "prompt": title, "resolution": "8k"}
        elif case == "missing_photo":
            document["photo"] = "never-uploaded.png"
            media["photo"] = f"{folder}/never-uploaded.png"
        elif case == "unsupported_media":
            self.upload(f"{folder}/face.png", b"these are my notes, not a picture\n" * 4)
            media["photo"] = f"{folder}/face.png"
        elif case == "empty_media":
            self.upload(f"{folder}/face.png", b"")
            media["photo"] = f"{folder}/face.png"
        elif case == "too_large":
            document["metadata"] = {"padding": "x" * 1000}
            text = json.dumps(document)
            body = (text[:-1] + ', "notes": "' + "y" * (MAX_JOB_FILE_BYTES + 100) + '"}').encode()
        if body is None:
            body = json.dumps(document).encode()
        self.jobs.append(
            SoakJob(
                number=number,
                key=key,
                kind=f"bad:{case}",
                model=model,
                body=body,
                media=media,
                identity=title,
                title=title,
                bad_case=case,
                expected_code=BAD_CASES[case],
                tags=["bad"],
            )
        )


def _resolve(folder: str, reference: str) -> str:
    return f"{folder}/{reference}"


def build_plan(seed: int, jobs: int) -> SoakPlan:
    """`jobs` job files (at least 1) and their media, reproducible from `seed`."""
    builder = _Builder(seed, max(1, jobs))

    def share(fraction: float, per_group: float = 1.0) -> int:
        return max(1, round(jobs * fraction / per_group)) if jobs >= 20 else 0

    steps: list[Any] = []
    cases = list(BAD_CASES)
    steps += [lambda i=i: builder.bad(cases[i % len(cases)]) for i in range(share(BAD_SHARE))]
    steps += [builder.late_media] * share(LATE_SHARE)
    steps += [builder.same_folder_photo] * share(SAME_FOLDER_SHARE, 2.5)
    steps += [builder.cross_folder_photo] * share(CROSS_FOLDER_SHARE, 2)
    steps += [builder.output_conflict] * share(OUTPUT_CONFLICT_SHARE, 2)
    builder.rng.shuffle(steps)
    for step in steps:
        if builder.left() <= 0:
            break
        step()
    while builder.left() > 0:
        builder.single()
    identities = [job.identity for job in builder.jobs]
    assert len(set(identities)) == len(identities), "every soak job needs an identity of its own"
    order = list(builder.jobs)
    builder.rng.shuffle(order)  # job files go up in a shuffled order
    return SoakPlan(seed=seed, jobs=order, media=builder.media, late=builder.late)
