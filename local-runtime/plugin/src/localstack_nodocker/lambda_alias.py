"""CloudFormation updates of a Lambda alias, which LocalStack's community provider cannot make.

SAM's ``AutoPublishAlias`` (the API function's ``live``) publishes a new version whenever the
function's code or configuration changes and points the alias at it. LocalStack's
``AWS::Lambda::Alias`` handler has no update, and its change-set engine replaces the alias
whenever its function changed (it sees ``FunctionName``, a create-only property, as changed).
Replacing means creating the alias again under the same name (``ResourceConflictException:
Alias already exists``: the stack update fails and rolls back), so every ``make deploy`` of
changed code over a running stack failed. As on AWS, the alias is updated in place: the
create of an alias that exists adopts it and points it at the new version, and the delete
that ends the replacement leaves alone an alias that no longer points at the version of the
alias being deleted.
"""

from __future__ import annotations

import logging
from typing import Any

from localstack.services.cloudformation.resource_provider import (
    OperationStatus,
    ProgressEvent,
    ResourceRequest,
)
from localstack.services.lambda_.resource_providers.lambda_alias import (
    REPEATED_INVOCATION,
    LambdaAliasProvider,
)

LOG = logging.getLogger(__name__)
_create = LambdaAliasProvider.create
_delete = LambdaAliasProvider.delete


def _existing(lambda_: Any, function_name: str, name: str) -> dict[str, Any] | None:
    try:
        alias: dict[str, Any] = lambda_.get_alias(FunctionName=function_name, Name=name)
    except lambda_.exceptions.ResourceNotFoundException:
        return None
    return alias


def _pointed(request: ResourceRequest[Any]) -> ProgressEvent[Any]:
    """The alias named in the template, pointed at the template's version (and its weights,
    which CloudFormation lists and Lambda's API maps by version)."""
    model = request.desired_state
    weights = (model.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or []
    updated = request.aws_client_factory.lambda_.update_alias(
        FunctionName=model["FunctionName"], Name=model["Name"],
        FunctionVersion=model["FunctionVersion"], Description=model.get("Description", ""),
        RoutingConfig={"AdditionalVersionWeights": {
            weight["FunctionVersion"]: float(weight["FunctionWeight"]) for weight in weights}})
    model["Id"] = updated["AliasArn"]
    return ProgressEvent(status=OperationStatus.SUCCESS, resource_model=model,
                         custom_context=request.custom_context)


def create_or_adopt(self: LambdaAliasProvider,
                    request: ResourceRequest[Any]) -> ProgressEvent[Any]:
    model = request.desired_state
    if request.custom_context.get(REPEATED_INVOCATION) or _existing(
            request.aws_client_factory.lambda_, model["FunctionName"], model["Name"]) is None:
        return _create(self, request)  # also its second call, once it has made the alias
    LOG.info("alias %s exists: pointed at version %s", model["Name"], model["FunctionVersion"])
    return _pointed(request)


def update_in_place(self: LambdaAliasProvider,
                    request: ResourceRequest[Any]) -> ProgressEvent[Any]:
    return _pointed(request)


def delete_unless_adopted(self: LambdaAliasProvider,
                          request: ResourceRequest[Any]) -> ProgressEvent[Any]:
    model = request.desired_state
    current = _existing(request.aws_client_factory.lambda_, model["FunctionName"], model["Name"])
    if current is not None and current["FunctionVersion"] != model.get("FunctionVersion"):
        LOG.info("alias %s points at another version now: kept", model["Name"])
        return ProgressEvent(status=OperationStatus.SUCCESS, resource_model=model,
                             custom_context=request.custom_context)
    return _delete(self, request)


def patch_alias_updates() -> None:
    LambdaAliasProvider.create = create_or_adopt  # type: ignore[method-assign]
    LambdaAliasProvider.update = update_in_place  # type: ignore[method-assign]
    LambdaAliasProvider.delete = delete_unless_adopted  # type: ignore[method-assign]
