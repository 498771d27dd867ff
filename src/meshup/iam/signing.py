"""AK/SK request signing as the Huawei Cloud SDKs do it (auth contract §3).

Pure functions on bytes: no I/O, no web framework. The HTTP layer builds a :class:`SignedRequest`
from the ASGI scope (``raw_path`` and ``query_string`` still percent-encoded, never the decoded
path), calls :func:`parse_authorization`, looks up the access key, then calls :func:`verify`.
Every failure is :class:`~meshup.errors.AuthenticationFailed` with a short reason that never
contains a secret or the expected signature.

Ground truth is ``huaweicloudsdkcore/signer/signer.py``: ``Signer`` (SDK-HMAC-SHA256),
``SM3Signer`` (SDK-HMAC-SM3) and ``DerivationAKSKSigner`` (V11-HMAC-SHA256).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from typing import Final, NamedTuple, Protocol

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac

from meshup.errors import AuthenticationFailed

__all__ = [
    "ALGORITHMS",
    "ParsedAuthorization",
    "Signed",
    "SignedRequest",
    "canonical_request",
    "forget_keys",
    "parse_authorization",
    "parse_sdk_date",
    "sign",
    "verify",
]

ALGORITHMS: Final = ("SDK-HMAC-SHA256", "SDK-HMAC-SM3", "V11-HMAC-SHA256")
_V11: Final = "V11-HMAC-SHA256"

MAX_AUTHORIZATION_BYTES: Final = 4096
_UNSIGNED_PAYLOAD: Final = b"UNSIGNED-PAYLOAD"


class Signed(Protocol):
    """What verification reads of a request (``SignedRequest``, or the server's own request)."""

    @property
    def method(self) -> str: ...  # upper-case
    @property
    def raw_path(self) -> bytes: ...  # ASGI raw_path (still percent-encoded, no query)
    @property
    def query_string(self) -> bytes: ...  # ASGI query_string (raw)
    @property
    def headers(self) -> Mapping[str, bytes]: ...  # lower-case name -> raw value (first occurrence)
    @property
    def body(self) -> bytes: ...


@dataclass(frozen=True, slots=True)
class SignedRequest:
    method: str  # upper-case
    raw_path: bytes  # ASGI raw_path (still percent-encoded, no query)
    query_string: bytes  # ASGI query_string (raw)
    headers: Mapping[str, bytes]  # lower-case header name -> raw value bytes (first occurrence)
    body: bytes


class ParsedAuthorization(NamedTuple):
    algorithm: str
    access_key: str
    signed_headers: tuple[str, ...]  # lower-case, as listed
    signature: str  # lower-case hex
    scope: str | None  # "<yyyymmdd>/<region>/<service>" for V11, else None


# --- hash schemes --------------------------------------------------------------------------------


def _sha256_hex(data: bytes) -> bytes:
    return hashlib.sha256(data).hexdigest().encode("ascii")


# HMAC-SHA256 states with the key already absorbed, by key: a copy and one update per request
# instead of hashing the padded key twice. Bounded; emptied whenever the IAM epoch changes
# (``forget_keys``), so a secret is held no longer than the credential caches hold it.
_KEYED: dict[bytes, hmac.HMAC] = {}
_MAX_KEYED: Final = 4096


def _hmac_sha256_hex(key: bytes, msg: bytes) -> bytes:
    keyed = _KEYED.get(key)
    if keyed is None:
        keyed = hmac.new(key, digestmod=hashlib.sha256)
        if len(_KEYED) >= _MAX_KEYED:
            _KEYED.clear()
        _KEYED[key] = keyed
    mac = keyed.copy()
    mac.update(msg)
    return mac.hexdigest().encode("ascii")


def forget_keys() -> None:
    """Drop the keyed HMAC states (their keys are secrets)."""
    _KEYED.clear()


# SM3 through `cryptography` (bundled OpenSSL): hashlib only has "sm3" if the system OpenSSL does.
def _sm3_hex(data: bytes) -> bytes:
    h = hashes.Hash(hashes.SM3())
    h.update(data)
    return h.finalize().hex().encode("ascii")


def _hmac_sm3_hex(key: bytes, msg: bytes) -> bytes:
    m = crypto_hmac.HMAC(key, hashes.SM3())
    m.update(msg)
    return m.finalize().hex().encode("ascii")


class _Scheme(NamedTuple):
    hash_hex: Callable[[bytes], bytes]
    hmac_hex: Callable[[bytes, bytes], bytes]
    content_header: str  # header whose value "UNSIGNED-PAYLOAD" replaces the body hash
    empty_hash: bytes


_SCHEMES: Final[Mapping[str, _Scheme]] = {
    "SDK-HMAC-SHA256": _Scheme(_sha256_hex, _hmac_sha256_hex, "x-sdk-content-sha256", _sha256_hex(b"")),
    # The SDK's SM3Signer looks for X-Sdk-Content-Sm3, not X-Sdk-Content-Sha256.
    "SDK-HMAC-SM3": _Scheme(_sm3_hex, _hmac_sm3_hex, "x-sdk-content-sm3", _sm3_hex(b"")),
    _V11: _Scheme(_sha256_hex, _hmac_sha256_hex, "x-sdk-content-sha256", _sha256_hex(b"")),
}


# --- percent-encoding on bytes -------------------------------------------------------------------

_UNRESERVED: Final = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~"
_UNRESERVED_OR_SLASH: Final = _UNRESERVED + b"/"
_QUOTED: Final = tuple(bytes((i,)) if i in _UNRESERVED else b"%%%02X" % i for i in range(256))
_HEXDIGITS: Final = "0123456789abcdefABCDEF"
_UNHEX: Final[Mapping[bytes, bytes]] = {
    (a + b).encode("ascii"): bytes((int(a + b, 16),)) for a in _HEXDIGITS for b in _HEXDIGITS
}


def _quote(data: bytes) -> bytes:
    """Percent-encode everything but ``A-Za-z0-9-_.~`` (upper-case hex), like ``quote(s, safe='~')``."""
    if not data.translate(None, _UNRESERVED):
        return data
    quoted = _QUOTED
    return b"".join([quoted[b] for b in data])


def _unquote(data: bytes) -> bytes:
    """Percent-decode once; ``+`` stays ``+`` and undecodable escapes (``%zz``) stay literal."""
    if b"%" not in data:
        return data
    head, *chunks = data.split(b"%")
    out = [head]
    unhex = _UNHEX
    for chunk in chunks:
        byte = unhex.get(chunk[:2])
        if byte is None:
            out.append(b"%")
            out.append(chunk)
        else:
            out.append(byte)
            out.append(chunk[2:])
    return b"".join(out)


def _canonical_uri(raw_path: bytes) -> bytes:
    if raw_path.translate(None, _UNRESERVED_OR_SLASH):  # something to decode or encode
        raw_path = b"/".join([_quote(segment) for segment in _unquote(raw_path).split(b"/")])
    return raw_path if raw_path.endswith(b"/") else raw_path + b"/"


def _query_pairs(query_string: bytes) -> list[tuple[bytes, bytes]]:
    """Decoded ``(key, value)`` pairs in wire order; empty items (``a=1&&b=2``) are skipped."""
    if not query_string:
        return []
    pairs = []
    for item in query_string.split(b"&"):
        if item:
            key, _, value = item.partition(b"=")
            pairs.append((_unquote(key), _unquote(value)))
    return pairs


def _encode_query(pairs: list[tuple[bytes, bytes]]) -> bytes:
    return b"&".join([_quote(key) + b"=" + _quote(value) for key, value in pairs])


_by_key = itemgetter(0)


def _query_orders(query_string: bytes) -> tuple[bytes, bytes | None]:
    """The canonical query sorted by (key, value), and sorted by key only if that differs.

    The Python SDK sorts by the parameters' original values (``n=9`` before ``n=10`` for ints)
    and sends them in that order, so keeping the wire order within a key reproduces it.
    """
    pairs = _query_pairs(query_string)
    by_value = sorted(pairs)
    pairs.sort(key=_by_key)  # stable: wire order within a key
    return _encode_query(by_value), (None if pairs == by_value else _encode_query(pairs))


# --- Authorization header and X-Sdk-Date -----------------------------------------------------------

_ACCESS_KEY_RE: Final = re.compile(r"[A-Za-z0-9]{1,128}")
_HEADER_NAME_RE: Final = re.compile(r"[a-z0-9!#$%&'*+.^_`|~-]+")
_SIGNATURE_RE: Final = re.compile(r"[0-9a-f]{64}")
_SCOPE_RE: Final = re.compile(r"([0-9]{8})/([A-Za-z0-9._-]{1,64})/([A-Za-z0-9._-]{1,64})")
_FIELDS: Final = {
    "Access": frozenset(("Access", "SignedHeaders", "Signature")),
    "Credential": frozenset(("Credential", "SignedHeaders", "Signature")),
}


def _fail(why: str) -> AuthenticationFailed:
    return AuthenticationFailed(why)


def _ascii_text(value: bytes | str, limit: int, what: str) -> str:
    if isinstance(value, bytes):
        if len(value) > limit:
            raise _fail(f"{what} is too long")
        if not value.isascii():
            raise _fail(f"{what} is not ASCII")
        return value.decode("ascii")
    if isinstance(value, str):
        if len(value) > limit:
            raise _fail(f"{what} is too long")
        if not value.isascii():
            raise _fail(f"{what} is not ASCII")
        return value
    raise _fail(f"{what} is malformed")


# What a client's Authorization header says before its signature, parsed once: a client sends the
# same head with every request, only the signature changes. Bounded; cleared when full.
_HEADS: dict[str, ParsedAuthorization] = {}
_MAX_HEADS: Final = 4096
_SIGNATURE_FIELD: Final = ", Signature="
_PLACEHOLDER: Final = "0" * 64


def parse_authorization(value: bytes | str) -> ParsedAuthorization:
    """Parse ``<ALG> Access=<AK>, SignedHeaders=<h1;h2>, Signature=<hex>`` (V11: ``Credential=``)."""
    text = _ascii_text(value, MAX_AUTHORIZATION_BYTES, "Authorization header").strip(" \t")
    head, field, signature = text.rpartition(_SIGNATURE_FIELD)
    signature = signature.lower()
    if not field or _SIGNATURE_RE.fullmatch(signature) is None:
        return _parse_authorization(text)  # and its reason for refusing it
    # The head parsed with a placeholder signature is the whole value's parse but for the
    # signature: its last field is the signature, so the rest is the same text either way.
    known = _HEADS.get(head)
    if known is None:
        known = _parse_authorization(head + _SIGNATURE_FIELD + _PLACEHOLDER)
        if len(_HEADS) >= _MAX_HEADS:
            _HEADS.clear()
        _HEADS[head] = known
    return ParsedAuthorization(
        known.algorithm, known.access_key, known.signed_headers, signature, known.scope
    )


def _parse_authorization(text: str) -> ParsedAuthorization:
    algorithm, _, rest = text.partition(" ")
    if algorithm not in _SCHEMES:
        raise _fail("unsupported Authorization scheme")
    fields: dict[str, str] = {}
    for item in rest.split(","):
        name, eq, field = item.strip(" \t").partition("=")
        if not eq or not field:
            raise _fail("malformed Authorization header")
        if name in fields:
            raise _fail("duplicate field in Authorization header")
        fields[name] = field
    key_field = "Credential" if algorithm == _V11 else "Access"
    if fields.keys() != _FIELDS[key_field]:
        raise _fail(f"Authorization header needs exactly {key_field}, SignedHeaders and Signature")

    scope: str | None = None
    access_key = fields[key_field]
    if key_field == "Credential":
        access_key, _, scope = access_key.partition("/")
        if _SCOPE_RE.fullmatch(scope) is None:
            raise _fail("malformed Credential in Authorization header")
    if _ACCESS_KEY_RE.fullmatch(access_key) is None:
        raise _fail("malformed access key in Authorization header")

    signed_headers = tuple(fields["SignedHeaders"].split(";"))
    for name in signed_headers:
        if _HEADER_NAME_RE.fullmatch(name) is None:
            raise _fail("malformed SignedHeaders in Authorization header")
    if len(set(signed_headers)) != len(signed_headers):
        raise _fail("duplicate name in SignedHeaders")

    signature = fields["Signature"].lower()
    if _SIGNATURE_RE.fullmatch(signature) is None:
        raise _fail("Signature must be 64 hex digits")
    return ParsedAuthorization(algorithm, access_key, signed_headers, signature, scope)


# The last date parsed: every request signed in the same second carries the same one.
_last_date: tuple[bytes | str | None, datetime] = (None, datetime.min.replace(tzinfo=UTC))


def parse_sdk_date(value: bytes | str) -> datetime:
    """``YYYYMMDDTHHMMSSZ`` strictly, as a tz-aware UTC datetime."""
    global _last_date
    last = _last_date  # one read: another thread may replace it (a tuple, so never half-written)
    if value == last[0]:
        return last[1]
    when = _parse_sdk_date(value)
    _last_date = (value, when)
    return when


def _parse_sdk_date(value: bytes | str) -> datetime:
    text = _ascii_text(value, 16, "X-Sdk-Date")
    if not (
        len(text) == 16
        and text[8] == "T"
        and text[15] == "Z"
        and text[:8].isdigit()  # ASCII-only here, so isdigit() means 0-9
        and text[9:15].isdigit()
    ):
        raise _fail("X-Sdk-Date must look like YYYYMMDDTHHMMSSZ")
    try:
        return datetime(
            int(text[0:4]),
            int(text[4:6]),
            int(text[6:8]),
            int(text[9:11]),
            int(text[11:13]),
            int(text[13:15]),
            tzinfo=UTC,
        )
    except ValueError:
        raise _fail("X-Sdk-Date is not a valid date") from None


# --- canonical request -----------------------------------------------------------------------------


def _scheme(algorithm: str) -> _Scheme:
    scheme = _SCHEMES.get(algorithm)
    if scheme is None:
        raise _fail("unsupported Authorization scheme")
    return scheme


class _SignedNames(NamedTuple):
    """A SignedHeaders list as the canonical request writes it, built once per list."""

    labels: tuple[bytes, ...]  # b"name:" for each header, in order
    line: bytes  # b"name1;name2"


_SIGNED_NAMES: dict[tuple[str, ...], _SignedNames] = {}
# "METHOD\nURI\n" by method and raw path: a client polls the same few paths.
_PREFIXES: dict[tuple[str, bytes], bytes] = {}
_MAX_REMEMBERED_PATH: Final = 512


def _signed_names(names: tuple[str, ...]) -> _SignedNames:
    known = _SIGNED_NAMES.get(names)
    if known is None:
        known = _SignedNames(
            tuple(name.encode("ascii") + b":" for name in names), ";".join(names).encode("ascii")
        )
        if len(_SIGNED_NAMES) >= _MAX_HEADS:
            _SIGNED_NAMES.clear()
        _SIGNED_NAMES[names] = known
    return known


def _prefix(method: str, raw_path: bytes) -> bytes:
    prefix = _PREFIXES.get((method, raw_path))
    if prefix is None:
        if not method.isascii():
            raise _fail("invalid request method")
        prefix = b"%s\n%s\n" % (method.upper().encode("ascii"), _canonical_uri(raw_path))
        if len(raw_path) <= _MAX_REMEMBERED_PATH:  # memory stays small whatever paths are sent
            if len(_PREFIXES) >= _MAX_HEADS:
                _PREFIXES.clear()
            _PREFIXES[(method, raw_path)] = prefix
    return prefix


def _canonical_parts(req: Signed, parsed: ParsedAuthorization, scheme: _Scheme) -> tuple[bytes, bytes]:
    """The canonical request before and after its query line."""
    prefix = _prefix(req.method, req.raw_path)
    headers = req.headers
    signed = _signed_names(parsed.signed_headers)
    lines = [b""]
    for name, label in zip(parsed.signed_headers, signed.labels, strict=True):
        value = headers.get(name)
        if value is None:
            raise _fail(f"signed header {name} is missing from the request")
        value = value.strip()
        if not value.isascii():
            try:
                value.decode("utf-8")
            except UnicodeDecodeError:
                raise _fail(f"header {name} is not valid UTF-8") from None
        lines.append(label + value)
    lines.append(b"")
    lines.append(signed.line)

    body = req.body
    if not body:
        lines.append(scheme.empty_hash)
    else:
        content = headers.get(scheme.content_header)
        if content is not None and content.strip() == _UNSIGNED_PAYLOAD:
            lines.append(_UNSIGNED_PAYLOAD)
        else:
            lines.append(scheme.hash_hex(body))
    return prefix, b"\n".join(lines)


def canonical_request(req: Signed, parsed: ParsedAuthorization, *, sort_query_by_value: bool = True) -> bytes:
    """``METHOD\\nURI\\nQUERY\\nHEADERS\\nSIGNED\\nPAYLOADHASH`` as bytes.

    ``sort_query_by_value=False`` sorts the query by key only and keeps the wire order within a key.
    """
    prefix, suffix = _canonical_parts(req, parsed, _scheme(parsed.algorithm))
    pairs = _query_pairs(req.query_string)
    if sort_query_by_value:
        pairs.sort()
    else:
        pairs.sort(key=_by_key)
    return prefix + _encode_query(pairs) + suffix


def _string_to_sign(algorithm: str, sdk_date: bytes, scope: str | None, canonical_hash: bytes) -> bytes:
    head = algorithm.encode("ascii") + b"\n" + sdk_date + b"\n"
    if scope is not None:
        head += scope.encode("ascii") + b"\n"
    return head + canonical_hash


def _signing_key(algorithm: str, access_key: str, secret_key: str, scope: str | None) -> bytes:
    if algorithm != _V11:
        return secret_key.encode("utf-8")
    # HKDF-SHA256 as the SDK's hkdf.get_der_key_sha256: salt = AK, ikm = SK, one expand block;
    # the HMAC key is the hex string of the result.
    if scope is None:
        raise _fail("V11 signature without a credential scope")
    prk = hmac.digest(access_key.encode("utf-8"), secret_key.encode("utf-8"), "sha256")
    okm = hmac.digest(prk, scope.encode("utf-8") + b"\x01", "sha256")
    return okm.hex().encode("ascii")


def _window_text(window: timedelta) -> str:
    minutes, seconds = divmod(window.total_seconds(), 60)
    return f"±{int(minutes)} minute" if not seconds else f"±{window}"


def verify(
    req: Signed,
    parsed: ParsedAuthorization,
    secret_key: str,
    now: datetime | None,
    *,
    window: timedelta = timedelta(minutes=15),
    security_token: str | None = None,
) -> None:
    """Check date, token, scope and signature; raise :class:`AuthenticationFailed` on any failure.

    ``now`` must be tz-aware; ``None`` skips the freshness check (fixed-date test vectors only).
    ``security_token`` is the temporary key's token, which the request must carry and sign.
    """
    scheme = _scheme(parsed.algorithm)
    signed = parsed.signed_headers

    if "x-sdk-date" not in signed:
        raise _fail("X-Sdk-Date is not signed")
    raw_date = req.headers.get("x-sdk-date")
    if raw_date is None:
        raise _fail("X-Sdk-Date header is missing")
    raw_date = raw_date.strip()
    when = parse_sdk_date(raw_date)
    if now is not None and abs(now - when) > window:
        raise _fail(f"X-Sdk-Date outside the {_window_text(window)} window")

    if security_token is not None:
        if "x-security-token" not in signed:
            raise _fail("X-Security-Token is not signed")
        token = req.headers.get("x-security-token")
        if token is None:
            raise _fail("X-Security-Token header is missing")
        if not hmac.compare_digest(token.strip(), security_token.encode("utf-8")):
            raise _fail("security token mismatch")

    scope = parsed.scope
    if parsed.algorithm == _V11:
        if scope is None:
            raise _fail("V11 signature without a credential scope")
        if not scope.isascii():
            raise _fail("malformed credential scope")
        if scope[:8].encode("ascii") != raw_date[:8]:
            raise _fail("credential date does not match X-Sdk-Date")
    else:
        scope = None

    signature = parsed.signature
    if not signature.isascii():
        raise _fail("signature mismatch")
    given = signature.encode("ascii")

    prefix, suffix = _canonical_parts(req, parsed, scheme)
    key = _signing_key(parsed.algorithm, parsed.access_key, secret_key, scope)
    query_string = req.query_string
    for query in _query_orders(query_string) if query_string else _NO_QUERY:
        if query is None:
            continue
        canonical_hash = scheme.hash_hex(prefix + query + suffix)
        expected = scheme.hmac_hex(key, _string_to_sign(parsed.algorithm, raw_date, scope, canonical_hash))
        if hmac.compare_digest(expected, given):
            return
    raise _fail("signature mismatch")


_NO_QUERY: Final = (b"",)


def sign(
    method: str,
    url_path_and_query: str,
    headers: Mapping[str, str],
    body: bytes,
    ak: str,
    sk: str,
    *,
    algorithm: str = "SDK-HMAC-SHA256",
    sdk_date: str,
    scope: str | None = None,
) -> str:
    """The Authorization header value the official SDK would send (for tests and benchmarks).

    Like the SDK it signs every header whose name has no ``_`` and adds ``X-Sdk-Date`` (the
    caller must send it too); it does not add ``Host`` or ``X-Sdk-Content-Sha256`` itself. The
    query is taken in wire order, which is the SDK's own sorted order, so repeated keys keep it.
    ``scope`` (``<yyyymmdd>/<region>/<service>``) is required for V11 and refused otherwise.
    """
    if algorithm not in _SCHEMES:
        raise ValueError(f"unknown signing algorithm {algorithm!r}")
    if (scope is None) == (algorithm == _V11):
        raise ValueError("scope is required for V11-HMAC-SHA256 and only for it")
    try:
        parse_sdk_date(sdk_date)
    except AuthenticationFailed as exc:
        raise ValueError(exc.why) from None

    signed_values: dict[str, bytes] = {}
    for name, value in headers.items():
        signed_values[name.lower()] = value.strip().encode("utf-8")
    date = signed_values.setdefault("x-sdk-date", sdk_date.encode("ascii"))
    if date != sdk_date.encode("ascii"):
        raise ValueError("headers carry an X-Sdk-Date different from sdk_date")
    signed_headers = tuple(sorted(name for name in signed_values if "_" not in name))

    path, _, query = url_path_and_query.partition("?")
    req = SignedRequest(method.upper(), path.encode("utf-8"), query.encode("utf-8"), signed_values, body)
    parsed = ParsedAuthorization(algorithm, ak, signed_headers, "", scope)
    canonical = canonical_request(req, parsed, sort_query_by_value=False)
    scheme = _SCHEMES[algorithm]
    string_to_sign = _string_to_sign(algorithm, sdk_date.encode("ascii"), scope, scheme.hash_hex(canonical))
    signature = scheme.hmac_hex(_signing_key(algorithm, ak, sk, scope), string_to_sign).decode("ascii")
    credential = f"Credential={ak}/{scope}" if algorithm == _V11 else f"Access={ak}"
    return f"{algorithm} {credential}, SignedHeaders={';'.join(signed_headers)}, Signature={signature}"
