"""Authentication (tokens, AK/SK signatures) and authorization (IAM policies) of API calls.

Every process keeps the decoded keys and principals it has seen, keyed by the account store's IAM
epoch: any change to users, keys or policies bumps the epoch in the same transaction, and every
request reads the epoch before it is authenticated, so a disabled key or a changed password stops
working at the next request in every process, without a query per key on the hot path.
"""

from __future__ import annotations

import functools
import hmac
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import NamedTuple, Protocol, TypeVar

from sqlalchemy import Connection

from meshup.clock import Clock
from meshup.errors import AuthenticationFailed, Forbidden, ProjectNotAllowed
from meshup.iam import signing
from meshup.iam.actions import Action, mesh_urn
from meshup.iam.identity import AccessKey, Principal
from meshup.iam.policy import (
    AuthzRequest,
    Decision,
    Grant,
    PolicyError,
    Scope,
    could_allow,
    evaluate,
    parse_identity_policy,
    parse_role_policy,
)
from meshup.iam.secrets import MasterKey, hash_token
from meshup.iam.tokens import TokenClaims, TokenCodec
from meshup.store import identity as store
from meshup.timefmt import rfc3339

MAX_CACHE_ENTRIES = 50_000


class IncomingRequest(NamedTuple):
    """What authentication needs of an HTTP request, independent of the web framework.

    This and the other values built for every request are named tuples: immutable like a frozen
    dataclass, built in a fraction of its time."""

    method: str
    raw_path: bytes
    query_string: bytes
    headers: Mapping[str, bytes]  # lower-case names
    body: bytes
    source_ip: str


class Caller(NamedTuple):
    principal: Principal
    token: TokenClaims | None  # set when authenticated by token


@dataclass(frozen=True, slots=True)
class MeshFacts:
    """What authorization needs to know of the mesh a request targets."""

    id: str
    enterprise_project_id: str
    tags: Sequence[tuple[str, str]]


class Credential(NamedTuple):
    """What a request presents, checked as far as it can be without stored state: a token's
    signature and expiry, or the syntax of an AK/SK ``Authorization`` header."""

    request: IncomingRequest
    token: TokenClaims | None = None
    signature: signing.ParsedAuthorization | None = None


@dataclass(frozen=True, slots=True)
class _Stored:
    """What the database holds for a credential: the access key (AK/SK only) and the principal."""

    key: AccessKey | None
    principal: Principal | None


T = TypeVar("T")


class OffLoopRead(Protocol):
    """Runs a blocking read on a database connection without stalling the event loop."""

    async def __call__(self, read: Callable[[Connection], T]) -> T: ...


@dataclass(slots=True)
class _Caches:
    epoch: int = -1
    keys: dict[str, AccessKey] = field(default_factory=dict)
    principals: dict[str, Principal | None] = field(default_factory=dict)
    # IAM decisions on a mesh, by everything they depend on (the principal is kept in the value,
    # so its id cannot be reused while the entry lives).
    decisions: dict[tuple[object, ...], tuple[Principal, Decision]] = field(default_factory=dict)
    prechecks: dict[tuple[int, str, str], tuple[Principal, bool]] = field(default_factory=dict)


class IdentityService:
    def __init__(self, master_key: MasterKey, clock: Clock, *, clock_skew: timedelta = timedelta(minutes=15)):
        self.master_key = master_key
        self.tokens = TokenCodec(master_key.token_key)
        self.clock = clock
        self.clock_skew = clock_skew
        self._caches = _Caches()
        self._lock = threading.Lock()
        self._time_text: tuple[int, str] = (-1, "")

    # -- authentication ----------------------------------------------------------------------
    #
    # Three steps: ``presented`` (no stored state, so a request without valid credentials costs no
    # query), ``_stored`` (this process's caches for the IAM epoch, reading what they lack), and
    # ``_verify`` (pure). ``authenticate`` runs them on an open connection; ``authenticate_at`` is
    # for the event loop, given the epoch, and reads a missing credential off the loop.

    def presented(self, request: IncomingRequest) -> Credential:
        token = request.headers.get("x-auth-token")
        if token is not None:
            try:
                text = token.decode("ascii").strip()
            except UnicodeDecodeError as exc:
                raise AuthenticationFailed("the token is not valid") from exc
            return Credential(request, token=self.tokens.decode(text, self.clock.now()))
        authorization = request.headers.get("authorization")
        if authorization is not None:
            return Credential(request, signature=signing.parse_authorization(authorization))
        raise AuthenticationFailed("no X-Auth-Token or Authorization header")

    def authenticate(self, conn: Connection, request: IncomingRequest, project_id: str | None) -> Caller:
        """Establish the caller; with ``project_id``, also that the caller may act in it."""
        credential = self.presented(request)
        caches = self._caches_at(store.read_epoch(conn, store.IAM_EPOCH))
        return self._verify(credential, self._stored(conn, caches, credential), project_id)

    async def authenticate_at(
        self, epoch: int, credential: Credential, project_id: str | None, off_loop: OffLoopRead
    ) -> Caller:
        """The same for a presented credential, given the IAM epoch read just before."""
        caches = self._caches_at(epoch)
        stored = self._cached(caches, credential)
        if stored is None:
            stored = await off_loop(functools.partial(self._stored, caches=caches, credential=credential))
        return self._verify(credential, stored, project_id)

    def principal(self, conn: Connection, user_id: str, via: str) -> Principal | None:
        """The principal ``user_id`` acts as (None if there is no such user), as of now."""
        return self._principal(conn, self._caches_at(store.read_epoch(conn, store.IAM_EPOCH)), user_id, via)

    # -- caches ------------------------------------------------------------------------------

    def _caches_at(self, epoch: int) -> _Caches:
        caches = self._caches
        if caches.epoch != epoch:
            with self._lock:
                if self._caches.epoch != epoch:
                    self._caches = _Caches(epoch=epoch)
                    signing.forget_keys()
                caches = self._caches
        return caches

    def _cached(self, caches: _Caches, credential: Credential) -> _Stored | None:
        """What the caches hold for the credential; None when something must be read."""
        if credential.token is not None:
            key = None
            user_id, via = credential.token.user_id, "token"
        else:
            assert credential.signature is not None
            key = caches.keys.get(credential.signature.access_key)
            if key is None:
                return None
            user_id, via = key.user_id, "aksk"
        principal_key = f"{via}:{user_id}"
        if principal_key not in caches.principals:
            return None
        return _Stored(key, caches.principals[principal_key])

    def _stored(self, conn: Connection, caches: _Caches, credential: Credential) -> _Stored:
        """What the database holds for the credential, through the caches."""
        if credential.token is not None:
            return _Stored(None, self._principal(conn, caches, credential.token.user_id, "token"))
        assert credential.signature is not None
        key = self._access_key(conn, caches, credential.signature.access_key)
        if key is None:
            return _Stored(None, None)
        return _Stored(key, self._principal(conn, caches, key.user_id, "aksk"))

    def _principal(self, conn: Connection, caches: _Caches, user_id: str, via: str) -> Principal | None:
        key = f"{via}:{user_id}"
        if key in caches.principals:
            return caches.principals[key]
        principal = self._load_principal(conn, user_id, via)
        if len(caches.principals) >= MAX_CACHE_ENTRIES:
            caches.principals.clear()
        caches.principals[key] = principal
        return principal

    def _load_principal(self, conn: Connection, user_id: str, via: str) -> Principal | None:
        record = store.get_user(conn, user_id)
        if record is None:
            return None
        grants = tuple(
            grant for row in store.user_policies(conn, user_id) if (grant := grant_of(row)) is not None
        )
        return Principal(
            account=record.account,
            user=record.user,
            grants=grants,
            projects=store.account_projects(conn, record.account.id),
            via=via,
        )

    def _access_key(self, conn: Connection, caches: _Caches, ak: str) -> AccessKey | None:
        key = caches.keys.get(ak)
        if key is not None:
            return key
        row = store.get_access_key(conn, ak)
        if row is None:
            return None
        key = AccessKey(
            ak=row.ak,
            user_id=row.user_id,
            secret_key=self.master_key.decrypt_sk(row.ak, row.sk_encrypted),
            security_token_sha256=row.security_token_sha256,
            expires_at=row.expires_at,
            enabled=row.enabled,
        )
        if len(caches.keys) >= MAX_CACHE_ENTRIES:
            caches.keys.clear()
        caches.keys[ak] = key
        return key

    # -- verification (pure) -------------------------------------------------------------------

    def _verify(self, credential: Credential, stored: _Stored, project_id: str | None) -> Caller:
        if credential.token is not None:
            return self._by_token(credential.token, stored.principal, project_id)
        assert credential.signature is not None
        return self._by_signature(credential.request, credential.signature, stored, project_id)

    def _by_token(self, claims: TokenClaims, principal: Principal | None, project_id: str | None) -> Caller:
        if principal is None or not _active(principal):
            raise AuthenticationFailed("the token is no longer valid")
        if principal.user.password_version != claims.password_version:
            raise AuthenticationFailed("the token was revoked by a password change")
        if project_id is not None and claims.project_id != project_id:
            scope = "unscoped" if claims.project_id is None else "scoped to another project"
            if claims.domain_scoped:
                scope = "domain-scoped"
            raise ProjectNotAllowed(
                f"the token is {scope}; a token scoped to project {_shown(project_id)} is required"
            )
        return Caller(principal, claims)

    def _by_signature(
        self,
        request: IncomingRequest,
        parsed: signing.ParsedAuthorization,
        stored: _Stored,
        project_id: str | None,
    ) -> Caller:
        key = stored.key
        if key is None:
            raise AuthenticationFailed("unknown access key")
        now = self.clock.now()
        if not key.enabled:
            raise AuthenticationFailed("the access key is disabled")
        if key.expires_at is not None and now >= key.expires_at:
            raise AuthenticationFailed("the access key has expired")
        security_token = request.headers.get("x-security-token")
        if key.security_token_sha256 is not None:
            if security_token is None:
                raise AuthenticationFailed("a temporary access key needs X-Security-Token")
            try:
                presented = hash_token(security_token.decode("ascii").strip())
            except UnicodeDecodeError as exc:
                raise AuthenticationFailed("X-Security-Token does not match the access key") from exc
            if not hmac.compare_digest(presented, key.security_token_sha256):
                raise AuthenticationFailed("X-Security-Token does not match the access key")
            expected_token: str | None = security_token.decode("ascii").strip()
        else:
            expected_token = None
        signing.verify(
            request, parsed, key.secret_key, now, window=self.clock_skew, security_token=expected_token
        )
        principal = stored.principal
        if principal is None or not _active(principal):
            raise AuthenticationFailed("the access key's user is disabled")
        if project_id is not None:
            if project_id not in principal.projects:
                raise ProjectNotAllowed(
                    f"project {_shown(project_id)} is not a project of the caller's account"
                )
            header_project = request.headers.get("x-project-id")
            if (
                header_project is not None
                and "x-project-id" in parsed.signed_headers
                and header_project.decode("latin-1").strip() != project_id
            ):
                raise ProjectNotAllowed("the signed X-Project-Id does not match the project in the path")
        return Caller(principal, None)

    # -- authorization -----------------------------------------------------------------------

    def _current_time(self) -> str:
        """``g:CurrentTime`` has second precision: format it once per second."""
        now = self.clock.now()
        second = int(now.timestamp())
        cached = self._time_text
        if cached[0] != second:
            cached = (second, rfc3339(now))
            self._time_text = cached
        return cached[1]

    def precheck(self, caller: Caller, action: Action, project_id: str) -> None:
        """403 before any lookup when no policy could allow the action anywhere: existence stays hidden."""
        principal = caller.principal
        if principal.user.is_root:
            return
        # A pure function of the principal's grants: remembered within the IAM epoch, as the
        # decisions are (the principal is kept in the value, so its id cannot be reused).
        key = (id(principal), action.name, project_id)
        prechecks = self._caches.prechecks
        known = prechecks.get(key)
        if known is not None and known[0] is principal:
            allowed = known[1]
        else:
            allowed = could_allow(principal.grants, action.name, project_id)
            if len(prechecks) >= MAX_CACHE_ENTRIES:
                prechecks.clear()
            prechecks[key] = (principal, allowed)
        if not allowed:
            raise Forbidden(
                f"IAM denies {action.name} in project {project_id} to user {principal.user.name} "
                "(implicit deny: no policy allows this action)"
            )

    def authorize(
        self,
        caller: Caller,
        action: Action,
        project_id: str,
        mesh: MeshFacts | None,
        source_ip: str,
        *,
        request_tags: Sequence[tuple[str, str]] | None = None,
        enterprise_project_id: str | None = None,
    ) -> None:
        principal = caller.principal
        if principal.user.is_root:
            return
        memo = None
        if mesh is not None and request_tags is None and enterprise_project_id is None:
            # The decision is a pure function of these (g:CurrentTime has second precision):
            # a polled resource is decided once a second per caller and address, not per request.
            tags = mesh.tags if isinstance(mesh.tags, tuple) else tuple(mesh.tags)
            memo = (
                id(principal),
                action.name,
                project_id,
                mesh.id,
                mesh.enterprise_project_id,
                tags,
                source_ip,
                self._current_time(),
            )
            decisions = self._caches.decisions
            known = decisions.get(memo)
            if known is not None and known[0] is principal:
                self._decided(known[1], caller, action, project_id, mesh)
                return
        decision = self._decide(
            caller, action, project_id, mesh, source_ip, request_tags, enterprise_project_id
        )
        if memo is not None:
            if len(decisions) >= MAX_CACHE_ENTRIES:
                decisions.clear()
            decisions[memo] = (principal, decision)
        self._decided(decision, caller, action, project_id, mesh)

    def _decide(
        self,
        caller: Caller,
        action: Action,
        project_id: str,
        mesh: MeshFacts | None,
        source_ip: str,
        request_tags: Sequence[tuple[str, str]] | None,
        enterprise_project_id: str | None,
    ) -> Decision:
        principal = caller.principal
        region = principal.projects.get(project_id, "")
        context: dict[str, str | Sequence[str]] = {
            "g:userid": principal.user.id,
            "g:username": principal.user.name,
            "g:domainname": principal.account.name,
            "g:projectname": region,
            "g:currenttime": self._current_time(),
            "g:sourceip": source_ip,
        }
        for tag_key, tag_value in principal.user.tags.items():
            context[f"g:principaltag/{tag_key.lower()}"] = tag_value
        resource = None
        ep = enterprise_project_id
        if mesh is not None:
            resource = mesh_urn(region, principal.account.id, mesh.id)
            ep = mesh.enterprise_project_id
            for tag_key, tag_value in mesh.tags:
                context[f"g:resourcetag/{tag_key.lower()}"] = tag_value
        if ep is not None:
            context["g:enterpriseprojectid"] = ep
        if request_tags is not None:
            for tag_key, tag_value in request_tags:
                context[f"g:requesttag/{tag_key.lower()}"] = tag_value
            context["g:tagkeys"] = [tag_key for tag_key, _ in request_tags]
        return evaluate(
            principal.grants,
            AuthzRequest(
                action=action.name,
                resource=resource,
                project_id=project_id,
                enterprise_project_id=ep,
                context=context,
            ),
        )

    @staticmethod
    def _decided(
        decision: Decision, caller: Caller, action: Action, project_id: str, mesh: MeshFacts | None
    ) -> None:
        if decision is Decision.ALLOW:
            return
        principal = caller.principal
        resource = (
            mesh_urn(principal.projects.get(project_id, ""), principal.account.id, mesh.id) if mesh else None
        )
        target = resource or f"project {project_id}"
        kind = (
            "explicit deny: a policy denies it"
            if decision is Decision.EXPLICIT_DENY
            else "implicit deny: no policy allows it"
        )
        raise Forbidden(f"IAM denies {action.name} on {target} to user {principal.user.name} ({kind})")


def grant_of(row: store.PolicyRow) -> Grant | None:
    """Policies were validated when stored; a document that no longer parses grants nothing."""
    try:
        if row.kind == "identity":
            return Grant(parse_identity_policy(row.document), Scope("identity"))
        policy = parse_role_policy(row.document)
    except PolicyError:
        return None
    if row.scope_kind == "project":
        return Grant(policy, Scope("project", row.scope_value))
    if row.scope_kind == "enterprise_project":
        return Grant(policy, Scope("enterprise_project", row.scope_value))
    return Grant(policy, Scope("account"))


def _active(principal: Principal) -> bool:
    return principal.user.enabled and principal.account.enabled


def _shown(value: str) -> str:
    """Echo a caller-supplied id in a message, bounded and printable."""
    clipped = value[:64]
    return clipped if clipped.isprintable() else repr(clipped)
