"""The sample gate's decision: a person approves or rejects a campaign's sample (approve_after).

The sample's rows render; the others are held in the campaigns table with their messages, and nothing
runs while the campaign waits (no polling: the record says READY and the rows wait in the table). A
person decides by dropping `<name>.approve` or `<name>.reject` beside the campaign file (the
`avatar-pipeline campaign approve|reject` commands drop it for them); its "Object Created" event comes
to the Split function through the split queue:
* approve: the held rows' messages go to the submit queue as they are (each row's job id and run);
* reject: each held row ends SKIPPED with NOT_APPROVED, and the last of them completes the campaign.
Nobody deciding is bounded too: the split sets a one-time schedule (EventBridge Scheduler) that puts a
SampleExpiry on the split queue SAMPLE_WAIT_DAYS (default 7) after the split; an open gate then closes
as if rejected (EXPIRED). The gate moves once (a conditional write); a decision delivered twice, or one
whose run died half way, does its work again, which hands out or skips nothing twice (Submit's claim,
the rows' conditions).
"""

from __future__ import annotations

from avatar_pipeline.campaigns.complete import try_complete
from avatar_pipeline.campaigns.records import (
    OPEN_GATES,
    CampaignRecord,
    RowMessage,
    RowStatus,
    SampleExpiry,
    SampleGate,
    derive_campaign_id,
)
from avatar_pipeline.domain.context import InboxObject
from avatar_pipeline.domain.ports import RowEnd, SplitPorts
from avatar_pipeline.errors import ErrorCode
from avatar_pipeline.keys import archived_key, sample_decision_of
from avatar_pipeline.observability import logger

QUEUE_BATCH = 10


def decide_sample(obj: InboxObject, ports: SplitPorts) -> bool:
    """True when the decision applied (now or by an earlier delivery); False when no sample waits for it."""
    decision = sample_decision_of(obj.key)
    if obj.bucket != ports.settings.input_bucket or decision is None:
        return False
    campaign_key, approved = decision
    campaign_id = derive_campaign_id(obj.bucket, campaign_key)
    logger.set_correlation_id(campaign_id)
    record = ports.campaigns.get(campaign_id)
    target = SampleGate.APPROVED if approved else SampleGate.REJECTED
    if record is None or (record.gate not in OPEN_GATES and record.gate is not target):
        logger.warning("no campaign sample waits for this decision", extra={"key": obj.key})
        _put_away(obj, ports, applied=False)
        return False
    ports.campaigns.move_gate(campaign_id, record.run_id, OPEN_GATES, target)
    current = ports.campaigns.get(campaign_id)
    if current is None or current.gate is not target:
        logger.warning("the sample was decided the other way first", extra={"key": obj.key})
        _put_away(obj, ports, applied=False)
        return False
    if approved:
        _hand_out_held(current, ports)
    else:
        _skip_held(current, ports)
    _put_away(obj, ports, applied=True)
    logger.info("campaign sample decided", extra={"campaign_key": campaign_key, "approved": approved})
    return True


def expire_sample(expiry: SampleExpiry, ports: SplitPorts) -> bool:
    """The sample's time to be decided is up (a one-time schedule, set by the split): if that run's gate is
    still open, its held rows end SKIPPED (NOT_APPROVED) and the campaign completes. True if it closed."""
    logger.set_correlation_id(expiry.campaign_id)
    if not ports.campaigns.move_gate(expiry.campaign_id, expiry.run_id, OPEN_GATES, SampleGate.EXPIRED):
        record = ports.campaigns.get(expiry.campaign_id)
        if record is None or record.run_id != expiry.run_id or record.gate is not SampleGate.EXPIRED:
            return False  # decided in time, or a newer run: nothing to do
    record = ports.campaigns.get(expiry.campaign_id)
    assert record is not None
    days = ports.settings.sample_wait_days
    _skip_held(record, ports, f"nobody approved the campaign's sample within {days} days; this row was not rendered")
    logger.info("campaign sample expired", extra={"campaign_key": record.campaign_key})
    return True


def _hand_out_held(record: CampaignRecord, ports: SplitPorts) -> None:
    batch: list[RowMessage] = []
    for row in ports.campaigns.rows(record.campaign_id):
        if row.run_id == record.run_id and row.status is RowStatus.PENDING and row.held_message is not None:
            batch.append(RowMessage.model_validate_json(row.held_message))
            if len(batch) == QUEUE_BATCH:
                ports.rows.send(batch)
                batch = []
    if batch:
        ports.rows.send(batch)


def _skip_held(
    record: CampaignRecord,
    ports: SplitPorts,
    why: str = "the campaign's sample was rejected; this row was not rendered",
) -> None:
    detail = RowEnd(ErrorCode.NOT_APPROVED.value, f"{why} (nothing billed)")
    for row in ports.campaigns.rows(record.campaign_id):  # a page at a time; ending a row keeps its place
        if row.run_id == record.run_id and row.status is RowStatus.PENDING and row.held_message is not None:
            ports.campaigns.end_row(record.campaign_id, record.run_id, row.row_id, RowStatus.SKIPPED, detail)
    try_complete(record.campaign_id, record.run_id, ports)


def _put_away(obj: InboxObject, ports: SplitPorts, applied: bool) -> None:
    """The decision file leaves inbox/ (processed/ once applied, failed/ when no sample waited for it)."""
    ports.storage.move(obj.bucket, obj.key, archived_key(obj.key, succeeded=applied))
