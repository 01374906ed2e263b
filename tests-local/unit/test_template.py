"""template.yaml against what the code expects of it: the secret it generates, the log
groups it declares, the table actions it grants."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import tomllib
from cfnlint.decode import decode_str

from pacs_validator.contract.auth import authenticate, token_book
from pacs_validator.flow.storing import DESCRIPTOR_MEMORY_BYTES, HEAD_BYTES_AT_ONCE

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE, _ = decode_str((ROOT / "template.yaml").read_text("utf-8"))
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]
FUNCTIONS = ("ApiFunction", "ValidatorFunction", "DescriptorFunction")


def test_the_generated_secret_makes_its_initial_label_an_admin() -> None:
    generated = RESOURCES["ApiTokensSecret"]["Properties"]["GenerateSecretString"]
    document = json.loads(generated["SecretStringTemplate"])
    document[generated["GenerateStringKey"]] = "t" * generated["PasswordLength"]
    caller = authenticate("Bearer " + "t" * generated["PasswordLength"],
                          token_book(json.dumps(document)))
    assert (caller.identity, caller.admin) == ("initial", True)


@pytest.mark.parametrize("function", FUNCTIONS)
def test_each_function_logs_to_a_declared_group_with_retention(function: str) -> None:
    resource = RESOURCES[function]
    group = RESOURCES[resource["DependsOn"]]
    assert group["Type"] == "AWS::Logs::LogGroup"
    name = resource["Properties"]["FunctionName"]["Fn::Sub"]
    assert group["Properties"]["LogGroupName"]["Fn::Sub"] == f"/aws/lambda/{name}"
    assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def statements(function: str) -> list[dict[str, Any]]:
    """The function's inline policy statements (conditional ones aside)."""
    return [statement for policy in RESOURCES[function]["Properties"]["Policies"]
            for statement in policy.get("Statement", [])]


@pytest.mark.parametrize("function", FUNCTIONS)
def test_no_function_may_scan_a_table_and_only_the_validator_deletes_study_records(
        function: str) -> None:
    """A Scan of the status table would read every file's item; the API's listing of every
    owner (an admin's) scans the sparse index of study items alone."""
    policies = RESOURCES[function]["Properties"]["Policies"]
    assert not any("DynamoDBCrudPolicy" in policy for policy in policies)  # it grants Scan
    scanning = [s for s in statements(function) if "dynamodb:Scan" in s["Action"]]
    assert [s["Resource"] for s in scanning] == (
        [{"Fn::Sub": "${StatusTable.Arn}/index/owner-created-index"}]
        if function == "ApiFunction" else [])
    study_records = next(s for s in statements(function) if s.get("Sid") == "StudyRecords")
    assert ("dynamodb:DeleteItem" in study_records["Action"]) == (function == "ValidatorFunction")


def layers_of(function: str) -> set[str]:
    """The layers a function gets on either architecture: those of Globals, then its own."""
    entries = [*TEMPLATE["Globals"]["Function"]["Layers"],
               *RESOURCES[function]["Properties"].get("Layers", [])]
    return {branch["Ref"] for entry in entries for branch in entry["Fn::If"][1:]}


def requirement_names(path: Path) -> set[str]:
    return {re.split(r"[\[=<>;]", line)[0].strip().lower()
            for line in path.read_text("utf-8").splitlines()
            if line.strip() and not line.startswith("#")}


@pytest.mark.parametrize("function", FUNCTIONS)
def test_every_function_gets_the_core_layer_and_only_the_descriptor_the_imaging_one(
        function: str) -> None:
    assert {"CoreLayer", "CoreLayerArm64"} <= layers_of(function)
    imaging = {"ImagingLayer", "ImagingLayerArm64"} & layers_of(function)
    assert bool(imaging) == (function == "DescriptorFunction")  # it renders the previews


def test_the_imaging_layer_is_the_previews_extra_and_the_core_layer_has_none_of_it() -> None:
    # pydicom loads numpy and its pixel handlers whenever it can import numpy: a function
    # whose layers have numpy pays for them on every cold start.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]
    previews = {re.split(r"[\[=<>;]", requirement)[0].lower()
                for requirement in project["optional-dependencies"]["previews"]}
    assert requirement_names(ROOT / "layers" / "imaging" / "requirements.txt") == previews
    assert requirement_names(ROOT / "layers" / "core" / "requirements.txt") == {
        "pydicom", "aws-lambda-powertools"}


def test_the_functions_reading_uploads_whole_have_tmp_for_the_largest_one_allowed() -> None:
    """The validator reads each upload whole in ``/tmp``, and the descriptor each series'
    preview instance: their ephemeral storage holds the largest file ``MaxUploadBytes``
    allows, with room to spare as large as the heads a storing chunk holds at once."""
    largest = TEMPLATE["Parameters"]["MaxUploadBytes"]["MaxValue"]
    for function in ("ValidatorFunction", "DescriptorFunction"):
        settings = {**TEMPLATE["Globals"]["Function"], **RESOURCES[function]["Properties"]}
        assert settings["EphemeralStorage"]["Size"] * 2**20 >= largest + HEAD_BYTES_AT_ONCE


def test_the_descriptor_has_the_memory_its_chunks_are_budgeted_by() -> None:
    """The judge cuts chunks, and the descriptor's threads wait, by shares of the memory
    ``DESCRIPTOR_MEMORY_BYTES`` says the descriptor has."""
    settings = {**TEMPLATE["Globals"]["Function"], **RESOURCES["DescriptorFunction"]["Properties"]}
    assert settings["MemorySize"] * 2**20 == DESCRIPTOR_MEMORY_BYTES


def test_snapstart_is_the_apis_alone_with_the_tmp_it_allows() -> None:
    for function in FUNCTIONS:
        properties = RESOURCES[function]["Properties"]
        if function != "ApiFunction":  # they download files of up to MaxUploadBytes to /tmp
            assert "SnapStart" not in properties and "AutoPublishAlias" not in properties
            continue
        assert properties["SnapStart"] == {
            "ApplyOn": {"Fn::If": ["UseSnapStart", "PublishedVersions", "None"]}}
        assert properties["EphemeralStorage"]["Size"] <= 512  # SnapStart's most
        assert properties["AutoPublishAlias"] == "live"
        assert properties["AutoPublishAliasAllProperties"] is True
    assert TEMPLATE["Conditions"]["UseSnapStart"] == {
        "Fn::Equals": [{"Ref": "SnapStart"}, "Enabled"]}


def test_a_new_core_layer_or_snapstart_setting_publishes_a_new_api_version() -> None:
    # A version whose description changes is replaced: published again, with a snapshot.
    template, values = RESOURCES["ApiFunction"]["Properties"]["VersionDescription"]["Fn::Sub"]
    assert "${Layer}" in template and "${SnapStart}" in template
    assert values["Layer"] == {"Fn::If": ["OnArm64", {"Ref": "CoreLayerArm64"},
                                          {"Ref": "CoreLayer"}]}


def test_every_route_of_the_api_calls_the_alias_under_snapstart_else_the_function() -> None:
    target = {"Fn::If": ["UseSnapStart", {"Ref": "ApiFunction.Alias"},
                         {"Fn::GetAtt": ["ApiFunction", "Arn"]}]}
    routes = re.findall(r'^@app\.(get|post)\("([^"]*)"',
                        (ROOT / "functions" / "api" / "app.py").read_text("utf-8"), re.M)
    api = RESOURCES["Api"]["Properties"]
    paths = api["DefinitionBody"]["paths"]
    assert sorted((path, method) for path, methods in paths.items() for method in methods) == \
        sorted((re.sub(r"<(\w+)>", r"{\1}", path), method) for method, path in routes)
    for methods in paths.values():
        for method in methods.values():
            integration = method["x-amazon-apigateway-integration"]
            assert (integration["type"], integration["httpMethod"]) == ("aws_proxy", "POST")
            # read at each request: a change of SnapStart needs no new deployment
            assert integration["uri"]["Fn::Join"][1][-1].endswith(
                "/functions/${stageVariables.function}/invocations")
    assert api["Variables"]["function"] == target
    assert RESOURCES["ApiInvokesFunction"]["Properties"]["FunctionName"] == target


def test_local_deploys_turn_snapstart_off() -> None:
    # LocalStack emulates no snapshot and never moves an alias: with SnapStart the local API
    # would keep calling the version of its first deployment.
    makefile = (ROOT / "Makefile").read_text("utf-8")
    assert re.search(r"^DEPLOY_PARAMETERS [:+]= .*\bSnapStart=Disabled\b", makefile, re.M)
    local = tomllib.loads((ROOT / "samconfig.toml").read_text("utf-8"))["local"]
    assert "SnapStart=Disabled" in local["deploy"]["parameters"]["parameter_overrides"]


STAGE = "v1"
"""A stage name, the first part of every path the web ACL sees."""


def test_the_api_has_a_web_acl_limiting_each_address_and_refusing_the_unauthenticated(
        ) -> None:
    acl = RESOURCES["ApiWebAcl"]
    assert acl["Condition"] == "UseWaf" == RESOURCES["ApiWebAclAssociation"]["Condition"]
    unauthenticated, rate = acl["Properties"]["Rules"]
    rule = unauthenticated["Fn::If"][1]
    assert unauthenticated["Fn::If"][0] == "UseWafAuthRule" and rule["Action"] == {"Block": {}}
    path, header = rule["Statement"]["AndStatement"]["Statements"]
    pattern = re.compile(path["RegexMatchStatement"]["RegexString"])
    routes = ("upload", "upload/ab", "status/ab", "health", "", "uploads")
    assert [bool(pattern.match(f"/{STAGE}/{route}")) for route in routes] == [
        True, True, True, False, False, False]  # the URI path API Gateway's WAF sees
    size = header["NotStatement"]["Statement"]["SizeConstraintStatement"]
    assert size["FieldToMatch"] == {"SingleHeader": {"Name": "authorization"}}
    assert rate["Statement"]["RateBasedStatement"] == {
        "Limit": {"Ref": "RequestsPerAddress"}, "AggregateKeyType": "IP"}
    assert not acl["Properties"]["VisibilityConfig"]["SampledRequestsEnabled"]  # no headers kept
    assert TEMPLATE["Parameters"]["RequestsPerAddress"]["Default"] > 0


def test_local_deploys_attach_no_web_acl() -> None:
    # LocalStack community has no WAF.
    makefile = (ROOT / "Makefile").read_text("utf-8")
    assert re.search(r"^DEPLOY_PARAMETERS [:+]= .*\bRequestsPerAddress=0\b", makefile, re.M)
    local = tomllib.loads((ROOT / "samconfig.toml").read_text("utf-8"))["local"]
    assert "RequestsPerAddress=0" in local["deploy"]["parameters"]["parameter_overrides"]


def equals_of(value: Any) -> list[list[Any]]:
    """The Fn::Equals argument pairs in a decoded template expression."""
    if isinstance(value, dict):
        return [pair for key, inner in value.items()
                for pair in ([inner] if key == "Fn::Equals" else []) + equals_of(inner)]
    if isinstance(value, list):
        return [pair for inner in value for pair in equals_of(inner)]
    return []


def test_conditions_on_a_parameter_the_local_deploy_overrides_compare_it_as_text() -> None:
    """DEPLOY_PARAMETERS reach CloudFormation as strings; LocalStack's Fn::Equals compares
    them with the template's literal as they are, so ``"0" == 0`` is false there."""
    makefile = (ROOT / "Makefile").read_text("utf-8")
    overridden = set(re.findall(r"(\w+)=", " ".join(
        re.findall(r"^DEPLOY_PARAMETERS [:+]= (.*)$", makefile, re.M))))
    pairs = equals_of(TEMPLATE["Conditions"])
    compared = [pair for pair in pairs if isinstance(pair[0], dict)
                and pair[0].get("Ref") in overridden]
    assert {pair[0]["Ref"] for pair in compared} >= {"RequestsPerAddress"}
    assert [pair for pair in compared if not isinstance(pair[1], str)] == []
