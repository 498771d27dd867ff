"""Schemathesis hooks: AK/SK request signing and one body filter, loaded by ``schemathesis run`` (SCHEMATHESIS_HOOKS).

With ``MESHUP_FUZZ_AK`` and ``MESHUP_FUZZ_SK`` set, every request is signed as the official SDK
signs it (SDK-HMAC-SHA256 over Host, X-Sdk-Date and Content-Type), on the prepared request, so
the signature covers exactly the path, query and body bytes that go on the wire.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from urllib.parse import urlsplit

import requests
import schemathesis

from meshup.iam.signing import sign


class SdkSignature(requests.auth.AuthBase):
    def __init__(self, ak: str, sk: str, project_id: str = "") -> None:
        self.ak = ak
        self.sk = sk
        self.project_id = project_id

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        assert request.url is not None and request.method is not None
        date = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        request.headers["Host"] = urlsplit(request.url).netloc
        request.headers["X-Sdk-Date"] = date
        signed = {"Host": request.headers["Host"], "X-Sdk-Date": date}
        if self.project_id:  # the official SDK always sends (and signs) the project it was given
            request.headers["X-Project-Id"] = self.project_id
            signed["X-Project-Id"] = self.project_id
        if "Content-Type" in request.headers:
            signed["Content-Type"] = str(request.headers["Content-Type"])
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode("utf-8")
        request.headers["Authorization"] = sign(
            request.method, request.path_url, signed, body, self.ak, self.sk, sdk_date=date
        )
        return request


if os.environ.get("MESHUP_FUZZ_AK") and os.environ.get("MESHUP_FUZZ_SK"):
    schemathesis.auth.set_from_requests(  # type: ignore[attr-defined]
        SdkSignature(
            os.environ["MESHUP_FUZZ_AK"],
            os.environ["MESHUP_FUZZ_SK"],
            os.environ.get("MESHUP_FUZZ_PROJECT_ID", ""),
        )
    )


def _unique(items: object, key: str) -> bool:
    if not isinstance(items, list):
        return True
    keys = [item.get(key) for item in items if isinstance(item, dict) and isinstance(item.get(key), str)]
    return len(keys) == len(set(keys))


def _nothing_given_twice(body: object) -> bool:
    """Tag keys and cluster ids are unique by key within their lists."""
    spec = body.get("spec") if isinstance(body, dict) else None
    if not isinstance(spec, dict):
        return True
    extend = spec.get("extendParams")
    clusters = extend.get("clusters") if isinstance(extend, dict) else None
    return _unique(spec.get("tags"), "key") and _unique(clusters, "clusterID")


def _known_enterprise_project(body: object) -> bool:
    spec = body.get("spec") if isinstance(body, dict) else None
    extend = spec.get("extendParams") if isinstance(spec, dict) else None
    value = extend.get("enterpriseProjectId") if isinstance(extend, dict) else None
    known = os.environ.get("MESHUP_FUZZ_ENTERPRISE_PROJECTS", "0").split(",")
    return not isinstance(value, str) or value in known


@schemathesis.hook
def filter_case(context: schemathesis.HookContext, case: schemathesis.Case) -> bool:
    """Leave out the two kinds of mesh body whose refusal depends on more than the schema can say:
    one tag key or cluster id given twice ("unique by key" is no JSON-schema rule; Huawei refuses
    it, and so does meshup) and an enterprise project the account does not have (which projects
    exist is data, not schema). Both are 400s tested elsewhere. Every other generated request,
    valid or not, is sent, in every phase (this hook sees the coverage phase's cases too)."""
    return _nothing_given_twice(case.body) and _known_enterprise_project(case.body)
