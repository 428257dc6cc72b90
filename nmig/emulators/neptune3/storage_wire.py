"""The wire side of the emulator's object storage: signed URLs as each provider shapes them, and each provider's
error answers.

The storage bridge's `SignedFile.provider` is one of `azure`, `gcp`, `aws` (storagebridge_openapi.json,
`Provider`); neptune-scale 0.30 uploads with the provider's own protocol (neptune_scale/sync/sync_process.py
608-633: Azure through azure-storage-blob's BlobClient, GCS through a resumable-upload session, S3 by
presigned PUTs) and neptune-query 1.x downloads likewise (neptune_query/internal/retrieval/files.py 145-152).
So a URL here has the shape of that provider's signed URL, pointing at this emulator:

- aws: ``/s3/<bucket>/<project>/<key>?X-Amz-Algorithm=...&X-Amz-Date=...&X-Amz-Expires=...&X-Amz-Signature=...``
  (multipart part URLs add ``partNumber`` and ``uploadId``, as S3's do);
- azure: ``/<account>/<container>/<project>/<key>?sv=...&se=...&sr=b&sp=r|cw&sig=...`` (a service SAS; the
  account is the first path segment, which is how azure-storage-blob parses a 127.0.0.1 URL:
  azure/storage/blob/_blob_client_helpers.py `_from_blob_url`);
- gcp: ``/gcs/<bucket>/<project>/<key>?X-Goog-Algorithm=...&X-Goog-Date=...&X-Goog-Expires=...&X-Goog-Signature=...``
  (a V4 signed URL; the resumable session URI it opens is the same URL with ``upload_id`` added, as GCS does).

Signatures are HMAC-SHA256 over what a URL allows (provider, method, project, key, expiry, part), with a
per-data-folder secret: a URL cannot be altered into another key, project or operation.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import time
import uuid
from dataclasses import dataclass
from email.utils import formatdate
from urllib.parse import quote, urlencode
from xml.sax.saxutils import escape

from nmig.emulators.http import Request, Response

PROVIDERS = ("aws", "azure", "gcp")
S3_PREFIX = "/s3/nmig-bucket/"
GCS_PREFIX = "/gcs/nmig-bucket/"
AZURE_ACCOUNT, AZURE_CONTAINER = "nmigstorage", "neptune"
AZURE_PREFIX = f"/{AZURE_ACCOUNT}/{AZURE_CONTAINER}/"
# The paths signed URLs live under: they carry their own signature and need no bearer token.
STORAGE_PREFIXES = (S3_PREFIX, GCS_PREFIX, AZURE_PREFIX)
# ASSUMPTION (no evidence of the service's setting): signed URLs live an hour.
URL_TTL_S = 3600
AZURE_API_VERSION = "2025-01-05"  # the x-ms-version / sv this emulator answers with


@dataclass(frozen=True)
class Grant:
    """What one signed URL allows: `method` on object `key` of project `project_pk` until `expires`."""

    provider: str
    method: str  # the HTTP method, or for Azure the SAS permission ("r" | "cw")
    project_pk: int
    key: str
    expires: int  # epoch seconds
    upload_id: str = ""
    part: int = 0


class UrlRefused(Exception):
    """A signed URL that does not verify: `kind` is "expired", "bad_signature" or "wrong_permission"."""

    def __init__(self, kind: str, expired_at: int = 0) -> None:
        super().__init__(kind)
        self.kind = kind
        self.expired_at = expired_at


def _amz_date(epoch: int) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(epoch))


def _parse_amz_date(text: str) -> int:
    return int(dt.datetime.strptime(text, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.timezone.utc).timestamp())


def _iso(epoch: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _parse_iso(text: str) -> int:
    return int(dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc).timestamp())


class UrlSigner:
    def __init__(self, secret: bytes, ttl_s: int = URL_TTL_S) -> None:
        self._secret = secret
        self.ttl_s = ttl_s

    def _signature(self, grant: Grant) -> bytes:
        text = "\n".join(
            (grant.provider, grant.method, str(grant.project_pk), grant.key, str(grant.expires), grant.upload_id, str(grant.part))
        )
        return hmac.new(self._secret, text.encode("utf-8"), hashlib.sha256).digest()

    # -- making URLs --------------------------------------------------------------------------------------------

    def url(self, base_url: str, provider: str, permission: str, project_pk: int, key: str, upload_id: str = "", part: int = 0) -> str:
        """A signed URL of `provider` granting `permission` ("read" | "write") on one object (or one part)."""
        now = int(time.time())
        expires = now + self.ttl_s
        object_path = f"{project_pk}/{quote(key, safe='/')}"
        if provider == "aws":
            grant = Grant("aws", "GET" if permission == "read" else "PUT", project_pk, key, expires, upload_id, part)
            query = {
                "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
                "X-Amz-Credential": f"NMIGEMULATOR/{time.strftime('%Y%m%d', time.gmtime(now))}/us-east-1/s3/aws4_request",
                "X-Amz-Date": _amz_date(now),
                "X-Amz-Expires": str(self.ttl_s),
                "X-Amz-SignedHeaders": "host",
            }
            if upload_id:
                query.update({"partNumber": str(part), "uploadId": upload_id})
            query["X-Amz-Signature"] = self._signature(grant).hex()
            return f"{base_url}{S3_PREFIX}{object_path}?{urlencode(query)}"
        if provider == "gcp":
            grant = Grant("gcp", "GET" if permission == "read" else "POST", project_pk, key, expires)
            query = {
                "X-Goog-Algorithm": "GOOG4-RSA-SHA256",
                "X-Goog-Credential": f"nmig-emulator/{time.strftime('%Y%m%d', time.gmtime(now))}/auto/storage/goog4_request",
                "X-Goog-Date": _amz_date(now),
                "X-Goog-Expires": str(self.ttl_s),
                "X-Goog-SignedHeaders": "host",
                "X-Goog-Signature": self._signature(grant).hex(),
            }
            return f"{base_url}{GCS_PREFIX}{object_path}?{urlencode(query)}"
        if provider == "azure":
            grant = Grant("azure", "r" if permission == "read" else "cw", project_pk, key, expires)
            query = {
                "sv": AZURE_API_VERSION,
                "st": _iso(now - 300),
                "se": _iso(expires),
                "sr": "b",
                "sp": grant.method,
                "sig": base64.b64encode(self._signature(grant)).decode(),
            }
            return f"{base_url}{AZURE_PREFIX}{object_path}?{urlencode(query)}"
        raise ValueError(f"unknown storage provider {provider!r}")

    # -- checking URLs ------------------------------------------------------------------------------------------

    def _check(self, grant: Grant, given: bytes, check_expiry: bool = True) -> Grant:
        if not hmac.compare_digest(self._signature(grant), given):
            raise UrlRefused("bad_signature")
        if check_expiry and grant.expires < time.time():
            raise UrlRefused("expired", grant.expires)
        return grant

    def verify_s3(self, request: Request, project_pk: int, key: str) -> Grant:
        try:
            expires = _parse_amz_date(request.arg("X-Amz-Date") or "") + int(request.arg("X-Amz-Expires") or "")
            given = bytes.fromhex(request.arg("X-Amz-Signature") or "")
            part = int(request.arg("partNumber") or 0)
        except ValueError:
            raise UrlRefused("bad_signature") from None
        return self._check(Grant("aws", request.method, project_pk, key, expires, request.arg("uploadId") or "", part), given)

    def verify_gcs(self, request: Request, project_pk: int, key: str, method: str, check_expiry: bool = True) -> Grant:
        try:
            expires = _parse_amz_date(request.arg("X-Goog-Date") or "") + int(request.arg("X-Goog-Expires") or "")
            given = bytes.fromhex(request.arg("X-Goog-Signature") or "")
        except ValueError:
            raise UrlRefused("bad_signature") from None
        return self._check(Grant("gcp", method, project_pk, key, expires), given, check_expiry)

    def verify_azure(self, request: Request, project_pk: int, key: str, needs: str) -> Grant:
        permission = request.arg("sp") or ""
        try:
            expires = _parse_iso(request.arg("se") or "")
            given = base64.b64decode(request.arg("sig") or "", validate=True)
        except ValueError:
            raise UrlRefused("bad_signature") from None
        grant = self._check(Grant("azure", permission, project_pk, key, expires), given)
        if not set(needs) <= set(permission):
            raise UrlRefused("wrong_permission")
        return grant


# -- error answers --------------------------------------------------------------------------------------------

# (status, code, message) per provider for each refusal kind (UrlRefused kinds and StorageError kinds).
# Sources: S3 "Error responses" (docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html; an expired
# presigned URL is 403 AccessDenied "Request has expired"); Azure "Blob service error codes"
# (learn.microsoft.com/rest/api/storageservices/blob-service-error-codes; an expired SAS is 403
# AuthenticationFailed, which azure-storage-blob raises as ClientAuthenticationError, response_handlers.py);
# GCS XML API status codes (cloud.google.com/storage/docs/xml-api/reference-status; an expired signed URL is
# 400 ExpiredToken, which neptune-scale's gcs.py retries and neptune-query's files.py treats as "expired").
_ANSWERS: dict[str, dict[str, tuple[int, str, str]]] = {
    "aws": {
        "expired": (403, "AccessDenied", "Request has expired"),
        "bad_signature": (
            403,
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided. Check your key and signing method.",
        ),
        "wrong_permission": (403, "AccessDenied", "Access Denied"),
        "no_such_object": (404, "NoSuchKey", "The specified key does not exist."),
        "no_such_upload": (404, "NoSuchUpload", "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed."),
        "invalid_part": (400, "InvalidPart", "One or more of the specified parts could not be found. The part may not have been uploaded, or the specified entity tag may not match the part's entity tag."),
        "invalid_range": (416, "InvalidRange", "The requested range is not satisfiable"),
        "bad_request": (400, "InvalidArgument", "Invalid Argument"),
        # Amazon S3 API Reference, "Error responses", list of error codes: throttling is 503 SlowDown, and
        # neither it nor the other two carries a Retry-After (the SDKs back off on their own).
        "throttled": (503, "SlowDown", "Please reduce your request rate."),
        "internal_error": (500, "InternalError", "We encountered an internal error. Please try again."),
        "unavailable": (503, "ServiceUnavailable", "Please reduce your request rate."),
    },
    "azure": {
        "expired": (403, "AuthenticationFailed", "Server failed to authenticate the request. Make sure the value of Authorization header is formed correctly including the signature."),
        "bad_signature": (403, "AuthenticationFailed", "Server failed to authenticate the request. Make sure the value of Authorization header is formed correctly including the signature."),
        "wrong_permission": (403, "AuthorizationPermissionMismatch", "This request is not authorized to perform this operation using this permission."),
        "no_such_object": (404, "BlobNotFound", "The specified blob does not exist."),
        "no_such_upload": (404, "BlobNotFound", "The specified blob does not exist."),
        "invalid_part": (400, "InvalidBlockList", "The specified block list is invalid."),
        "invalid_range": (416, "InvalidRange", "The range specified is invalid for the current size of the resource."),
        "bad_request": (400, "InvalidInput", "One of the request inputs is not valid."),
        # Azure Storage REST API, "Common REST API error codes": a busy or throttling account is 503 ServerBusy,
        # an internal failure 500 InternalError. ASSUMPTION: no Retry-After header (none documented).
        "throttled": (503, "ServerBusy", "The server is currently unable to receive requests. Please retry your request."),
        "internal_error": (500, "InternalError", "The server encountered an internal error. Please retry the request."),
        "unavailable": (503, "ServerBusy", "The server is currently unable to receive requests. Please retry your request."),
    },
    "gcp": {
        "expired": (400, "ExpiredToken", "The provided token has expired."),
        "bad_signature": (403, "SignatureDoesNotMatch", "Access denied."),
        "wrong_permission": (403, "AccessDenied", "Access denied."),
        "no_such_object": (404, "NoSuchKey", "The specified key does not exist."),
        # ASSUMPTION: an unknown resumable session is answered 404 (GCS's JSON API documents 404 for it).
        "no_such_upload": (404, "NoSuchUpload", "The requested upload was not found."),
        "invalid_part": (400, "InvalidArgument", "Invalid argument."),
        "invalid_range": (416, "InvalidRange", "The requested range cannot be satisfied."),
        "bad_request": (400, "InvalidArgument", "Invalid argument."),
        # Cloud Storage docs ("Improve performance by mitigating rate limited request errors"): a request over
        # the rate limits is answered 429 Too Many Requests. ASSUMPTION: the XML body's code is SlowDown, as
        # S3's (the XML API mirrors S3's error codes), and no Retry-After header.
        "throttled": (429, "SlowDown", "Please reduce your request rate."),
        "internal_error": (500, "InternalError", "We encountered an internal error. Please try again."),
        "unavailable": (503, "ServiceUnavailable", "Service Unavailable"),
    },
}

_PROVIDER_OF_PREFIX = {S3_PREFIX: "aws", GCS_PREFIX: "gcp", AZURE_PREFIX: "azure"}
_FAULT_KINDS = {429: "throttled", 500: "internal_error", 503: "unavailable"}


def storage_fault(path: str, fault: Response) -> Response:
    """An injected fault at `path` as the object storage behind it answers one (its status, its XML <Error>),
    instead of the Neptune API's JSON and Retry-After: the clients meet the provider's own throttling there.
    Paths outside the storage keep `fault`."""
    provider = next((p for prefix, p in _PROVIDER_OF_PREFIX.items() if path.startswith(prefix)), None)
    kind = _FAULT_KINDS.get(fault.status)
    return fault if provider is None or kind is None else error(provider, kind)


def error(provider: str, kind: str, detail: str = "", expired_at: int = 0) -> Response:
    """The answer `provider` gives for a refusal of `kind`: its status, and its XML <Error> body (Azure also
    names the code in the x-ms-error-code header, which azure-storage-blob reads first)."""
    status, code, message = _ANSWERS[provider][kind]
    request_id = str(uuid.uuid4())
    headers: dict[str, str] = {}
    if provider == "azure":
        now = formatdate(usegmt=True)
        message = f"{message}\nRequestId:{request_id}\nTime:{_iso(int(time.time()))}"
        extra = ""
        if kind == "expired":
            extra = (
                f"<AuthenticationErrorDetail>Signed expiry time [{formatdate(expired_at, usegmt=True)}] must be after "
                f"signed start time [{now}]</AuthenticationErrorDetail>"
            )
        elif kind == "bad_signature":
            extra = "<AuthenticationErrorDetail>Signature did not match.</AuthenticationErrorDetail>"
        body = f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{code}</Code><Message>{escape(message)}</Message>{extra}</Error>'
        headers = {"x-ms-error-code": code, "x-ms-request-id": request_id, "x-ms-version": AZURE_API_VERSION}
    elif provider == "gcp":
        details = f"Request signature expired at: {_iso(expired_at)}" if kind == "expired" else escape(detail)
        body = f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>{escape(message)}</Message><Details>{details}</Details></Error>"
    else:
        body = f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{escape(message)}</Message><RequestId>{request_id[:16].upper()}</RequestId></Error>'
        headers = {"x-amz-request-id": request_id[:16].upper()}
    if kind == "invalid_range" and provider != "gcp":
        headers["Content-Range"] = "bytes */0"
    return Response(status, body.encode("utf-8"), content_type="application/xml", headers=headers)
