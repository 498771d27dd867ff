"""From an authenticated (or not) API request to the :class:`TraceContext` of its trace."""

from __future__ import annotations

from collections.abc import Mapping

from meshup.audit.model import TraceContext, TraceUser, call_name
from meshup.errors import AuthenticationFailed
from meshup.iam import signing
from meshup.iam.actions import Action
from meshup.iam.service import Caller, IncomingRequest


def trace_context(
    data: IncomingRequest,
    *,
    template: str,
    path_params: Mapping[str, str],
    project_id: str,
    request_id: str,
    action: Action,
    code: int,
) -> TraceContext:
    """Before authentication: the account is that of the project (looked up when recorded)."""
    name = call_name(data.method, template)
    resource_id = path_params.get(name.id_parameter, "") if name.id_parameter else ""
    return TraceContext(
        account_id="",
        project_id=project_id,
        request_id=request_id,
        source_ip=data.source_ip,
        user=TraceUser(access_key_id=access_key_of(data)),
        name=name,
        action=action.name,
        code=code,
        resource_id=resource_id,
    )


def with_caller(context: TraceContext, caller: Caller, data: IncomingRequest) -> TraceContext:
    principal = caller.principal
    user = TraceUser(
        id=principal.user.id,
        name=principal.user.name,
        domain_id=principal.account.id,
        domain_name=principal.account.name,
        access_key_id=access_key_of(data),
    )
    return TraceContext(
        account_id=principal.account.id,
        project_id=context.project_id,
        request_id=context.request_id,
        source_ip=context.source_ip,
        user=user,
        name=context.name,
        action=context.action,
        code=context.code,
        resource_id=context.resource_id,
    )


def access_key_of(data: IncomingRequest) -> str:
    """The access key id of a signed request (an identifier, not a secret), else ``""``."""
    header = data.headers.get("authorization")
    if header is None or "x-auth-token" in data.headers:
        return ""
    try:
        return signing.parse_authorization(header).access_key
    except AuthenticationFailed:
        return ""
