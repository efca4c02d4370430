"""The offline stack applies the state machine's DefinitionSubstitutions itself (moto does not)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from avatar_local.stack.local_aws import DeployedStack, resolve_substitution

pytestmark = pytest.mark.unit


def _stack() -> DeployedStack:
    return DeployedStack(
        outputs={},
        resources={},
        function_environment={},
        submit_batch_size=5,
        submit_max_concurrency=2,
        submit_visibility_timeout=360,
        max_receive_count=5,
    )


@pytest.mark.parametrize(
    ("region", "partition"),
    [("eu-west-1", "aws"), ("ap-southeast-3", "aws"), ("cn-north-1", "aws-cn"), ("us-gov-west-1", "aws-us-gov")],
)
def test_the_partition_substitution_follows_the_stacks_region(region: str, partition: str) -> None:
    """Given the template's `Partition: !Ref AWS::Partition`, when the offline stack substitutes it,
    then it gets the partition CloudFormation would give in that region."""
    lambda_client = SimpleNamespace(meta=SimpleNamespace(region_name=region))
    assert resolve_substitution({"Ref": "AWS::Partition"}, _stack(), lambda_client) == partition


def test_an_unknown_substitution_is_refused() -> None:
    lambda_client = SimpleNamespace(meta=SimpleNamespace(region_name="eu-west-1"))
    with pytest.raises(ValueError, match="cannot resolve"):
        resolve_substitution({"Ref": "AWS::AccountId"}, _stack(), lambda_client)
