"""Schemathesis hooks: AK/SK request signing, loaded by ``schemathesis run`` (SCHEMATHESIS_HOOKS).

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
    def __init__(self, ak: str, sk: str) -> None:
        self.ak = ak
        self.sk = sk

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        assert request.url is not None and request.method is not None
        date = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        request.headers["Host"] = urlsplit(request.url).netloc
        request.headers["X-Sdk-Date"] = date
        signed = {"Host": request.headers["Host"], "X-Sdk-Date": date}
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
        SdkSignature(os.environ["MESHUP_FUZZ_AK"], os.environ["MESHUP_FUZZ_SK"])
    )
