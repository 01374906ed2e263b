"""Stack updates on LocalStack that its community providers cannot make (local-runtime/plugin).

- A REST API's new route is served through the same stage. Without the plugin the update
  failed with "Stage already exists" and left the stack broken, so a user had to delete
  their local stack to deploy a new version of this one.
- New code moves an alias to the function's new version (the API function's ``live``).
  Without the plugin the update failed with "Alias already exists": every ``make deploy``
  of changed code over a running stack rolled back.
- The deployed stack deploys again over itself, as a second ``make demo`` does it."""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError
from conftest import ENDPOINT, ROOT, Deployment, aws

from pacs_validator.transfer.client import request

pytestmark = pytest.mark.e2e
STAGE = "v1"


def mock_route(message: str) -> dict[str, Any]:
    """An OpenAPI GET that API Gateway answers itself with ``{"route": message}``."""
    return {"get": {
        "responses": {"200": {"description": "ok"}},
        "x-amazon-apigateway-integration": {
            "type": "mock", "requestTemplates": {"application/json": '{"statusCode": 200}'},
            "responses": {"default": {"statusCode": "200", "responseTemplates": {
                "application/json": json.dumps({"route": message})}}}}}}


def template(routes: list[str]) -> str:
    """A REST API with ``routes``, a deployment whose logical id changes with them (as SAM
    names it), and a stage pointing at that deployment."""
    deployment = "Deployment" + "".join(r.strip("/").title() for r in routes)
    body = {"openapi": "3.0.1", "info": {"title": "updates", "version": "1"},
            "paths": {route: mock_route(route) for route in routes}}
    return json.dumps({"Resources": {
        "Api": {"Type": "AWS::ApiGateway::RestApi", "Properties": {"Body": body}},
        deployment: {"Type": "AWS::ApiGateway::Deployment",
                     "Properties": {"RestApiId": {"Ref": "Api"}}},
        "Stage": {"Type": "AWS::ApiGateway::Stage",
                  "Properties": {"RestApiId": {"Ref": "Api"}, "StageName": STAGE,
                                 "DeploymentId": {"Ref": deployment}}},
    }})


def physical_id(cloudformation: Any, stack: str, logical_id: str) -> str:
    resource = cloudformation.describe_stack_resource(StackName=stack,
                                                      LogicalResourceId=logical_id)
    return str(resource["StackResourceDetail"]["PhysicalResourceId"])


def settled(cloudformation: Any, name: str) -> dict[str, Any]:
    """The stack once no operation is in progress on it (``DELETE_COMPLETE`` once gone)."""
    for _ in range(120):
        try:
            stack: dict[str, Any] = cloudformation.describe_stacks(StackName=name)["Stacks"][0]
        except ClientError as error:
            if "does not exist" not in str(error):
                raise
            return {"StackStatus": "DELETE_COMPLETE"}
        if not stack["StackStatus"].endswith("_IN_PROGRESS"):
            return stack
        time.sleep(0.5)
    raise TimeoutError(f"stack {name} still in progress")


def test_an_api_update_adds_its_route_to_the_same_stage() -> None:
    cloudformation = aws("cloudformation")
    name = f"api-update-{int(time.time())}"
    cloudformation.create_stack(StackName=name, TemplateBody=template(["/first"]))
    try:
        created = settled(cloudformation, name)
        assert created["StackStatus"] == "CREATE_COMPLETE"
        api_id = physical_id(cloudformation, name, "Api")
        base = f"{ENDPOINT}/_aws/execute-api/{api_id}/{STAGE}"
        assert request("GET", f"{base}/first").json() == {"route": "/first"}
        assert request("GET", f"{base}/second").status in (403, 404)

        cloudformation.update_stack(StackName=name,
                                    TemplateBody=template(["/first", "/second"]))
        updated = settled(cloudformation, name)

        assert updated["StackStatus"] == "UPDATE_COMPLETE", updated.get("StackStatusReason")
        assert physical_id(cloudformation, name, "Api") == api_id
        assert request("GET", f"{base}/second").json() == {"route": "/second"}
        assert request("GET", f"{base}/first").json() == {"route": "/first"}
    finally:
        cloudformation.delete_stack(StackName=name)
        settled(cloudformation, name)
    assert not [a for a in aws("apigateway").get_rest_apis()["items"] if a["id"] == api_id]


def function_template(answer: str) -> str:
    """A function answering ``answer``, a version whose logical id changes with its code, and
    the alias ``live`` on that version: what SAM's ``AutoPublishAlias`` makes of the API
    function."""
    version = "Version" + answer.title()
    return json.dumps({"Resources": {
        "Role": {"Type": "AWS::IAM::Role", "Properties": {"AssumeRolePolicyDocument": {
            "Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                "Action": "sts:AssumeRole"}]}}},
        "Function": {"Type": "AWS::Lambda::Function", "Properties": {
            "Runtime": "python3.12", "Handler": "index.handler",
            "Role": {"Fn::GetAtt": ["Role", "Arn"]},
            "Code": {"ZipFile": f"def handler(event, context):\n    return {answer!r}\n"}}},
        version: {"Type": "AWS::Lambda::Version", "DeletionPolicy": "Retain",
                  "Properties": {"FunctionName": {"Ref": "Function"}}},
        "Alias": {"Type": "AWS::Lambda::Alias", "Properties": {
            "FunctionName": {"Ref": "Function"}, "Name": "live",
            "FunctionVersion": {"Fn::GetAtt": [version, "Version"]}}},
    }})


def test_new_code_moves_the_alias_to_its_new_version() -> None:
    cloudformation, lambda_ = aws("cloudformation"), aws("lambda")
    name = f"alias-update-{int(time.time())}"
    cloudformation.create_stack(StackName=name, TemplateBody=function_template("first"),
                                Capabilities=["CAPABILITY_IAM"])
    try:
        created = settled(cloudformation, name)
        assert created["StackStatus"] == "CREATE_COMPLETE", created.get("StackStatusReason")
        function = physical_id(cloudformation, name, "Function")

        def answer() -> Any:
            return json.loads(lambda_.invoke(FunctionName=function, Qualifier="live")[
                "Payload"].read())

        assert answer() == "first"

        cloudformation.update_stack(StackName=name, TemplateBody=function_template("second"),
                                    Capabilities=["CAPABILITY_IAM"])
        updated = settled(cloudformation, name)

        assert updated["StackStatus"] == "UPDATE_COMPLETE", updated.get("StackStatusReason")
        assert lambda_.get_alias(FunctionName=function, Name="live")["FunctionVersion"] == "2"
        assert answer() == "second"
    finally:
        cloudformation.delete_stack(StackName=name)
        settled(cloudformation, name)
    assert not [f for f in lambda_.list_functions()["Functions"]
                if f["FunctionName"] == function]


def test_the_deployed_stack_deploys_again_over_itself(deployment: Deployment) -> None:
    """The update of a stack by its own template: its change set is described before it is
    made, and a condition LocalStack evaluated otherwise than AWS would (a parameter given
    as text against a number) failed that description on every redeploy."""
    redeploy = subprocess.run(["make", "--no-print-directory", "deploy"], cwd=ROOT,
                              capture_output=True, text=True, timeout=600, check=False)

    tail = "\n".join((redeploy.stdout + redeploy.stderr).splitlines()[-30:])
    assert redeploy.returncode == 0, tail
    assert request("GET", f"{deployment.api.api_base}/health").status == 200
