"""Translating template.yaml (SAM) into plain CloudFormation offline, for the local stack and tests.

aws-sam-translator does the translation without AWS: it only needs a region (from the environment,
AWS_DEFAULT_REGION or AWS_REGION) and a managed-policy map, which a stub provides (SAM writes the ARNs
of the managed policies it adds itself). What `sam build`/`sam package` would do first is done here:
local CodeUri/ContentUri folders become S3 locations in ARTIFACT_BUCKET (nothing is uploaded; see
`code_artifacts`), and each DefinitionUri file is inlined as Definition. DefinitionSubstitutions are
left to CloudFormation, as on AWS.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from samtranslator.translator.transform import transform

ARTIFACT_BUCKET = "avatar-local-artifacts"

# Properties naming a local folder that `sam package` would zip and upload, per SAM resource type.
_CODE_PROPERTIES = {
    "AWS::Serverless::Function": "CodeUri",
    "AWS::Serverless::LayerVersion": "ContentUri",
}


class _CfnLoader(yaml.SafeLoader):
    """YAML as CloudFormation reads it: short-form intrinsics, and dates left as strings."""


# CloudFormation keeps an unquoted 2010-09-09 a string; PyYAML would make it a date.
_CfnLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _construct_intrinsic(loader: _CfnLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    elif isinstance(node, yaml.MappingNode):
        value = loader.construct_mapping(node, deep=True)
    else:  # pragma: no cover - PyYAML has no other node kinds
        raise yaml.constructor.ConstructorError(None, None, f"unexpected node for !{tag_suffix}", node.start_mark)
    if tag_suffix == "Ref":
        return {"Ref": value}
    if tag_suffix == "Condition":
        return {"Condition": value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        resource, _, attribute = value.partition(".")
        return {"Fn::GetAtt": [resource, attribute]}
    return {f"Fn::{tag_suffix}": value}


_CfnLoader.add_multi_constructor("!", _construct_intrinsic)


def load_cfn_yaml(path: Path | str) -> dict[str, Any]:
    """A CloudFormation/SAM template as plain dicts, lists and strings (short tags become long form)."""
    document = yaml.load(Path(path).read_text(encoding="utf-8"), Loader=_CfnLoader)  # noqa: S506 - a SafeLoader subclass
    if not isinstance(document, dict):
        raise ValueError(f"{path} is not a template (top level is not a mapping)")
    return document


class _NoManagedPolicies:
    """Stands in for samtranslator's ManagedPolicyLoader, which would call IAM ListPolicies."""

    def load(self) -> dict[str, str]:
        return {}


def translate_template(template_path: Path, parameters: dict[str, str]) -> dict[str, Any]:
    """template.yaml as the CloudFormation template SAM would deploy, translated offline.

    `parameters` are the stack's parameter values (unset ones keep their defaults). Code locations
    point into ARTIFACT_BUCKET (`code_artifacts` lists them) and state machine definitions are inlined.
    """
    if not (os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION")):
        raise RuntimeError("set AWS_DEFAULT_REGION (or AWS_REGION): the SAM translator needs a region")
    template = load_cfn_yaml(template_path)
    packaged = _package_locally(template, Path(template_path).resolve().parent)
    translated: dict[str, Any] = transform(packaged, dict(parameters), _NoManagedPolicies())
    return translated


def code_artifacts(translated: dict[str, Any]) -> set[tuple[str, str]]:
    """(bucket, key) of every code zip the translated template expects in S3 (functions and layers)."""
    found: set[tuple[str, str]] = set()
    for resource in _resources(translated):
        properties = resource.get("Properties", {})
        if resource.get("Type") == "AWS::Lambda::Function":
            location = properties.get("Code", {})
            bucket, key = location.get("S3Bucket"), location.get("S3Key")
        elif resource.get("Type") == "AWS::Lambda::LayerVersion":
            location = properties.get("Content", {})
            bucket, key = location.get("S3Bucket"), location.get("S3Key")
        else:
            continue
        if isinstance(bucket, str) and isinstance(key, str):
            found.add((bucket, key))
    return found


def _package_locally(template: dict[str, Any], base_dir: Path) -> dict[str, Any]:
    """What `sam package` does, minus the upload: code folders -> S3 locations, DefinitionUri -> Definition."""
    packaged = copy.deepcopy(template)
    for logical_id, resource in packaged.get("Resources", {}).items():
        resource_type = resource.get("Type")
        properties = resource.setdefault("Properties", {})
        code_property = _CODE_PROPERTIES.get(resource_type)
        if code_property and isinstance(properties.get(code_property), str):
            properties[code_property] = {"Bucket": ARTIFACT_BUCKET, "Key": f"{logical_id}.zip"}
        if resource_type == "AWS::Serverless::StateMachine" and isinstance(properties.get("DefinitionUri"), str):
            definition_path = base_dir / properties.pop("DefinitionUri")
            properties["Definition"] = json.loads(definition_path.read_text(encoding="utf-8"))
    return packaged


def _resources(template: dict[str, Any]) -> Iterator[dict[str, Any]]:
    resources = template.get("Resources", {})
    yield from (r for r in resources.values() if isinstance(r, dict))
