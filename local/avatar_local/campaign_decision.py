"""`avatar-pipeline campaign approve|reject NAME|KEY`: a person's decision on a campaign's sample
(approve_after), given to a deployed stack by dropping `<name>.approve` or `<name>.reject` beside the
campaign file in its input bucket: the same file a person may drop by hand, handled by the Split function."""

from __future__ import annotations

from typing import TextIO

import boto3

from avatar_pipeline.keys import CAMPAIGN_SUFFIX, INBOX_PREFIX, campaign_approval_key, campaign_rejection_key


def campaign_key_of(name_or_key: str) -> str:
    """inbox/a/b.campaign.json, a/b.campaign.json or a/b -> inbox/a/b.campaign.json."""
    key = name_or_key.strip().lstrip("/")
    if not key.startswith(INBOX_PREFIX):
        key = INBOX_PREFIX + key
    if not key.endswith(CAMPAIGN_SUFFIX):
        key += CAMPAIGN_SUFFIX
    return key


def decide(input_bucket: str, name_or_key: str, approve: bool, console: TextIO) -> str:
    """Drop the decision file; its key. UnsafeKey for a name that is no campaign file's."""
    campaign_key = campaign_key_of(name_or_key)
    key = campaign_approval_key(campaign_key) if approve else campaign_rejection_key(campaign_key)
    boto3.client("s3").put_object(Bucket=input_bucket, Key=key, Body=b"")
    what = "the held rows will be rendered" if approve else "the held rows will end SKIPPED (NOT_APPROVED)"
    console.write(f"dropped s3://{input_bucket}/{key}: {what}\n")
    return key
