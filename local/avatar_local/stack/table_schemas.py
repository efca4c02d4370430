"""A DynamoDB table's keys and indexes exactly as template.yaml declares them, for tiers that create the
table themselves in moto (the integration tests, the campaign bench) instead of deploying the template:
one definition, so an index added to the template cannot be missing from a test's table."""

from __future__ import annotations

from typing import Any

from avatar_local.stack.local_aws import TEMPLATE_PATH
from avatar_local.stack.sam_translate import load_cfn_yaml

_SCHEMA_PROPERTIES = ("KeySchema", "AttributeDefinitions", "LocalSecondaryIndexes", "GlobalSecondaryIndexes")


def table_schema(logical_id: str) -> dict[str, Any]:
    """create_table's arguments (all but the name) for the table `logical_id` of template.yaml."""
    properties = load_cfn_yaml(TEMPLATE_PATH)["Resources"][logical_id]["Properties"]
    schema = {name: properties[name] for name in _SCHEMA_PROPERTIES if name in properties}
    return {**schema, "BillingMode": properties.get("BillingMode", "PAY_PER_REQUEST")}
