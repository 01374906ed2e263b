"""CloudFormation updates of an API Gateway REST API and its stage, which LocalStack's
community providers cannot make.

Its ``AWS::ApiGateway::RestApi`` handler has no update: a changed API definition (a new
route) was silently kept out of the deployed API. Here the update imports the new
definition over the old one (``PutRestApi`` in ``overwrite`` mode), as on AWS.

Its ``AWS::ApiGateway::Stage`` handler has no update either, and its change-set engine replaces the
stage whenever the API it belongs to changed (it sees the stage's ``RestApiId``, a
create-only property, as changed). Replacing means creating the stage again under the same
name (``ConflictException: Stage already exists``: the stack update fails and rolls back
into a broken state), then deleting the old one. So, as API Gateway's own handler does on
AWS, the stage is updated in place: the create of a stage that exists adopts it and points
it at the new deployment, and the delete that ends the replacement leaves alone a stage that
no longer serves the deployment being deleted.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from localstack.services.apigateway.resource_providers.aws_apigateway_restapi import (
    ApiGatewayRestApiProvider,
)
from localstack.services.apigateway.resource_providers.aws_apigateway_stage import (
    ApiGatewayStageProvider,
)
from localstack.services.cloudformation.resource_provider import (
    OperationStatus,
    ProgressEvent,
    ResourceRequest,
)

LOG = logging.getLogger(__name__)
_REPLACED = {"DeploymentId": "/deploymentId", "Description": "/description",
             "TracingEnabled": "/tracingEnabled"}
"""Stage properties set with a ``replace`` patch operation, by their patch path."""
_create = ApiGatewayStageProvider.create
_delete = ApiGatewayStageProvider.delete


def _text(value: Any) -> str:
    """A property as API Gateway's patch operations spell it (``true``, not ``True``)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def _operations(desired: dict[str, Any], current: dict[str, Any]) -> list[dict[str, str]]:
    """The patch operations that turn the stage ``current`` into ``desired``."""
    operations = [{"op": "replace", "path": path, "value": _text(desired[name])}
                  for name, path in _REPLACED.items()
                  if name in desired and desired[name] != current.get(name)]
    old_variables = current.get("Variables") or {}
    new_variables = desired.get("Variables") or {}
    operations += [{"op": "replace", "path": f"/variables/{name}", "value": value}
                   for name, value in new_variables.items() if old_variables.get(name) != value]
    operations += [{"op": "remove", "path": f"/variables/{name}"}
                   for name in old_variables if name not in new_variables]
    return operations


def _existing(apigw: Any, rest_api_id: str, stage_name: str) -> dict[str, Any] | None:
    """The stage as CloudFormation names its properties, or None when there is none."""
    try:
        stage = apigw.get_stage(restApiId=rest_api_id, stageName=stage_name)
    except apigw.exceptions.NotFoundException:
        return None
    return {"DeploymentId": stage.get("deploymentId"), "Description": stage.get("description"),
            "TracingEnabled": stage.get("tracingEnabled"), "Variables": stage.get("variables")}


def _patched(request: ResourceRequest[Any], current: dict[str, Any]) -> ProgressEvent[Any]:
    model = request.desired_state
    operations = _operations(model, current)
    if operations:
        request.aws_client_factory.apigateway.update_stage(
            restApiId=model["RestApiId"], stageName=model["StageName"],
            patchOperations=operations)
    return ProgressEvent(status=OperationStatus.SUCCESS, resource_model=model,
                         custom_context=request.custom_context)


def create_or_adopt(self: ApiGatewayStageProvider,
                    request: ResourceRequest[Any]) -> ProgressEvent[Any]:
    model = request.desired_state
    model.setdefault("StageName", "default")
    current = _existing(request.aws_client_factory.apigateway, model["RestApiId"],
                        model["StageName"])
    if current is None:
        return _create(self, request)
    LOG.info("stage %s exists: updated in place", model["StageName"])
    return _patched(request, current)


def update_in_place(self: ApiGatewayStageProvider,
                    request: ResourceRequest[Any]) -> ProgressEvent[Any]:
    request.desired_state.setdefault(
        "StageName", (request.previous_state or {}).get("StageName", "default"))
    return _patched(request, request.previous_state or {})


def delete_unless_adopted(self: ApiGatewayStageProvider,
                          request: ResourceRequest[Any]) -> ProgressEvent[Any]:
    model = request.desired_state
    current = _existing(request.aws_client_factory.apigateway, model["RestApiId"],
                        model.get("StageName", "default"))
    if current is not None and model.get("DeploymentId") not in (None,
                                                                  current["DeploymentId"]):
        LOG.info("stage %s serves another deployment now: kept", model.get("StageName"))
        return ProgressEvent(status=OperationStatus.SUCCESS, resource_model=model,
                             custom_context=request.custom_context)
    return _delete(self, request)


def update_rest_api(self: ApiGatewayRestApiProvider,
                    request: ResourceRequest[Any]) -> ProgressEvent[Any]:
    """The same API (its id kept), its definition replaced when the template's changed."""
    model = request.desired_state
    previous = request.previous_state or {}
    model["RestApiId"] = rest_api_id = previous["RestApiId"]
    apigw = request.aws_client_factory.apigateway
    body = model.get("Body")
    if body is not None and body != previous.get("Body"):
        parameters = {"basepath": "ignore", **model.get("Parameters", {})}
        apigw.put_rest_api(restApiId=rest_api_id, mode="overwrite", parameters=parameters,
                           body=(json.dumps(body) if isinstance(body, dict) else body).encode())
        LOG.info("REST API %s: definition replaced", rest_api_id)
    model["RootResourceId"] = next(
        r["id"] for r in apigw.get_resources(restApiId=rest_api_id, limit=500)["items"]
        if r["path"] == "/")
    return ProgressEvent(status=OperationStatus.SUCCESS, resource_model=model,
                         custom_context=request.custom_context)


def patch_api_updates() -> None:
    ApiGatewayRestApiProvider.update = update_rest_api  # type: ignore[method-assign]
    ApiGatewayStageProvider.create = create_or_adopt  # type: ignore[method-assign]
    ApiGatewayStageProvider.update = update_in_place  # type: ignore[method-assign]
    ApiGatewayStageProvider.delete = delete_unless_adopted  # type: ignore[method-assign]
