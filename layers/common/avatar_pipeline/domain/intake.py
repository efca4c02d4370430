"""Taking a job file in, before anything reaches the provider: read it, validate it, find its media,
check them, and claim its output path.

`take_in` either returns what Submit needs to post (an Intake), or raises: `Rejected` (the job ends
now, with its code and a report; it carries what is known of the job so far), MediaNotYetAvailable
(look again later), or ObjectReplaced (the job file changed under us: its own event covers it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import TYPE_CHECKING

from avatar_pipeline.domain.context import InboxObject, JobRef
from avatar_pipeline.domain.inbox import media_named_in, model_named_in
from avatar_pipeline.domain.ports import ObjectMissing, ObjectTooLarge, SubmitPorts
from avatar_pipeline.domain.pricing import job_price
from avatar_pipeline.errors import (
    InvalidJob,
    MediaNotYetAvailable,
    MediaTooLarge,
    MissingMedia,
    OutputConflict,
    PipelineError,
    UnsupportedMedia,
)
from avatar_pipeline.jobs.spec import AvatarIVJob, AvatarVJob, parse_job_file
from avatar_pipeline.keys import UnsafeKey, default_video_key, output_stem, resolve_media_key, sibling_key
from avatar_pipeline.media import SNIFF_BYTES, sniff_audio, sniff_image
from avatar_pipeline.observability import logger
from avatar_pipeline.records import TERMINAL_STATUSES, JobRecord, JobStatus

if TYPE_CHECKING:
    from avatar_pipeline.domain.ports import ObjectInfo

MEDIA_RECHECK_SECONDS = 15


@dataclass(frozen=True)
class Intake:
    ref: JobRef  # model, media keys and ETags, video key: all known
    spec: AvatarIVJob | AvatarVJob
    media_keys: dict[str, str]  # provider parameter (image_url, audio_url) -> key in the input bucket
    # False: an earlier upload of the same job file still renders to the same path; wait for it.
    output_claimed: bool
    price: Decimal  # what the render costs, by the price table (domain/pricing.py)


class Rejected(Exception):
    """The job ends now with `error`'s code; `ref` is what is known of it (for its report and archive)."""

    def __init__(self, error: PipelineError, ref: JobRef) -> None:
        super().__init__(error.message)
        self.error = error
        self.ref = ref


def take_in(obj: InboxObject, ref: JobRef, ports: SubmitPorts) -> Intake:
    raw = b""
    try:
        raw = _read_job_file(obj, ref.job_etag, ports)
        spec = parse_job_file(raw)
        ref = replace(ref, model=spec.model, metadata=dict(spec.metadata))
        media_keys = _resolve_media(obj.key, spec)
        ref = replace(ref, media_keys=tuple(media_keys.values()))
        # Before the media check: a job still waiting for its photo already counts as one of its users.
        _register_media(ref, ports)
        ref = replace(ref, media_etags=_check_media(obj, media_keys, ports))
        ref = replace(ref, video_key=spec.output_key or default_video_key(ref.job_key, spec.video_extension))
        price = spec_price(spec, ports)
        return Intake(ref, spec, media_keys, output_claimed=claim_output(ref, ports), price=price)
    except MediaNotYetAvailable:
        raise
    except PipelineError as error:
        if ref.model is None:
            # Too broken to validate: still name its model and take the files it names out of inbox/.
            ref = replace(ref, model=model_named_in(raw), media_keys=media_named_in(obj.key, raw))
        raise Rejected(error, ref) from None


def _read_job_file(obj: InboxObject, etag: str | None, ports: SubmitPorts) -> bytes:
    try:
        return ports.storage.read(obj.bucket, obj.key, ports.settings.max_job_file_bytes, if_match=etag)
    except ObjectTooLarge as exc:
        raise InvalidJob(f"the job file is {exc.size} bytes; job files are at most {exc.limit} bytes") from None
    except ObjectMissing:
        raise InvalidJob("the job file disappeared before it could be read") from None


def _resolve_media(job_key: str, spec: AvatarIVJob | AvatarVJob) -> dict[str, str]:
    resolved: dict[str, str] = {}
    for parameter, reference in spec.media_references().items():
        try:
            resolved[parameter] = resolve_media_key(job_key, reference)
        except UnsafeKey as exc:
            field = "photo" if parameter == "image_url" else "audio"
            raise InvalidJob(f"{field}: {exc}") from None
    return resolved


def spec_price(spec: AvatarIVJob | AvatarVJob, ports: SubmitPorts) -> Decimal:
    try:
        return job_price(ports.settings.prices, spec)
    except KeyError:
        raise PipelineError(
            f"the price table (stack parameter PriceTableJson) has no price for {spec.model}; add one"
        ) from None


def _register_media(ref: JobRef, ports: SubmitPorts) -> None:
    if ports.media_users is not None and ref.media_keys:
        ports.media_users.register(ref.job_id, ref.input_bucket, list(ref.media_keys), ports.clock.now())


# --- media ---------------------------------------------------------------------------------------------


def _check_media(obj: InboxObject, media_keys: dict[str, str], ports: SubmitPorts) -> dict[str, str]:
    """Each media file is there, within its limit and of its kind; returns their ETags by key."""
    etags: dict[str, str] = {}
    for parameter, key in media_keys.items():
        info = ports.storage.head(obj.bucket, key)
        if info is None:
            raise _not_there_yet(obj, key, ports)
        _check_kind(obj, info, is_photo=parameter == "image_url", ports=ports)
        if info.etag:
            etags[key] = info.etag
    return etags


def _not_there_yet(obj: InboxObject, key: str, ports: SubmitPorts) -> PipelineError:
    """MediaNotYetAvailable while the wait lasts (and the queue has receives left); MissingMedia after."""
    settings = ports.settings
    # S3's clock and ours may disagree a little: a negative wait counts as none.
    waited = max(0.0, (ports.clock.now() - obj.event_time).total_seconds())
    remaining = settings.media_wait_seconds - waited
    if remaining > 0 and obj.receive_count < settings.submit_max_receives:
        return MediaNotYetAvailable(
            f"{key} has not arrived yet (waited {waited:.0f} s)",
            retry_after_seconds=media_recheck_delay(obj.receive_count, remaining, settings.submit_max_receives),
        )
    return MissingMedia(f"{key} was not found beside the job file (waited {waited:.0f} s)")


def media_recheck_delay(receive_count: int, remaining_seconds: float, max_receives: int) -> int:
    """Early rechecks come quickly (media usually follows its job file within seconds), later ones
    back off; the next-to-last receive waits out the rest, so the last one falls at the deadline.
    Every recheck is an SQS receive, and the queue's redrive allows only `max_receives` of them."""
    if receive_count >= max_receives - 1:
        return max(1, math.ceil(remaining_seconds))
    backoff: int = MEDIA_RECHECK_SECONDS * 2 ** (receive_count - 1)
    return max(1, min(math.ceil(remaining_seconds), backoff))


def _check_kind(obj: InboxObject, info: ObjectInfo, is_photo: bool, ports: SubmitPorts) -> None:
    settings = ports.settings
    limit = settings.max_photo_bytes if is_photo else settings.max_audio_bytes
    if info.size == 0:
        raise UnsupportedMedia(f"{info.key} is empty")
    if info.size > limit:
        raise MediaTooLarge(f"{info.key} is {info.size} bytes; the limit is {limit} bytes")
    head = ports.storage.read_prefix(obj.bucket, info.key, SNIFF_BYTES)
    kind = sniff_image(head) if is_photo else sniff_audio(head)
    if kind is None:
        expected = "a PNG, JPEG or WebP image" if is_photo else "WAV, MP3, M4A, OGG or FLAC audio"
        raise UnsupportedMedia(f"{info.key} is not {expected} (checked by its content)")


# --- the output path -------------------------------------------------------------------------------------


def claim_output(ref: JobRef, ports: SubmitPorts) -> bool:
    """Claim the job's output path (video, captions and manifest share it) before it is submitted.

    The rule, so one job's manifest never describes another job's video:
    * a path that is free, or held by a job that failed, is taken;
    * a path held by an earlier upload of the same job file is taken over once that job has ended (a
      re-upload re-renders; the versioned output bucket keeps the replaced video); while it still runs,
      False: the event waits in the queue;
    * a path held by another job file fails this job with OUTPUT_CONFLICT, unless that job's video was
      since deleted (its manifest is gone).
    """
    claims = ports.output_claims
    if claims is None or ref.video_key is None:
        return True
    bucket = ports.settings.output_bucket
    stem = output_stem(ref.video_key)
    holder_id = claims.claim(ref.job_id, bucket, stem)
    if holder_id is None:
        return True
    holder = ports.jobs.get(holder_id)
    running = holder is not None and holder.status not in TERMINAL_STATUSES
    same_file = holder is not None and (holder.input_bucket, holder.job_key) == (ref.input_bucket, ref.job_key)
    if same_file and running:
        return False
    free = same_file or _claim_is_stale(holder, ref.video_key, ports)
    if free and claims.take_over(ref.job_id, bucket, stem, holder_id):
        logger.info("took over the output path of an earlier job", extra={"previous_job_id": holder_id})
        return True
    origin = f" (from {holder.job_key}, {holder.status.value})" if holder is not None else ""
    raise OutputConflict(
        f"the output path {stem} (video, captions and manifest) belongs to job {holder_id}{origin}; "
        "two job files never write the same video"
    )


def _claim_is_stale(holder: JobRecord | None, video_key: str, ports: SubmitPorts) -> bool:
    """The holder failed, or it succeeded (or its record expired) and its video was since deleted."""
    if holder is not None and holder.status not in TERMINAL_STATUSES:
        return False
    if holder is not None and holder.status == JobStatus.FAILED:
        return True
    return ports.storage.head(ports.settings.output_bucket, sibling_key(video_key, "json")) is None
