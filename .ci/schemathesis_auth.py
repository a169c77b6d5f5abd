"""Signs schemathesis in the way a client does, for the role in ZG_ROLE.

talent: WeChat sign-in with a fresh `demo-talent.*` code (demo mode's WeChat stand-in);
staff and admin: password sign-in with the demo accounts (`seed-demo`). anonymous: no
provider, so every request goes without a token.

The token is fetched again every few minutes and whenever a request answers 401: the
fuzzer may sign its own session out (`POST /auth/logout`), and that must not turn the rest
of the run into 401s.
"""

import json
import os
import time
import urllib.error
import urllib.request
import uuid

import schemathesis

BASE = os.environ["ZG_BASE"]
ROLE = os.environ.get("ZG_ROLE", "anonymous")
ACCOUNTS = {
    "staff": ("demo.staff", "Demo-staff-2026"),
    "manager": ("demo.manager", "Demo-manager-2026"),
    "admin": ("demo.admin", "Demo-admin-2026"),
    "reviewer": ("demo.reviewer", "Demo-reviewer-2026"),
}


def _post(path, body):
    request = urllib.request.Request(
        BASE + path, data=json.dumps(body).encode(), headers={"content-type": "application/json"}, method="POST"
    )
    # Sign-in is rate limited per address, and the fuzzer signs in too: wait out a 429.
    for _ in range(30):
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.load(response)
        except urllib.error.HTTPError as e:
            if e.code != 429:
                raise RuntimeError(f"sign-in as {ROLE} failed: {e.code} {e.read()[:300]!r}") from e
            time.sleep(min(int(e.headers.get("retry-after") or 2), 10))
    raise RuntimeError(f"sign-in as {ROLE}: still rate limited")


def sign_in():
    if ROLE == "talent":
        return _post("/api/v1/auth/wechat/login", {"code": f"demo-talent.{uuid.uuid4().hex}"})["access_token"]
    username, password = ACCOUNTS[ROLE]
    return _post("/api/v1/auth/password/login", {"username": username, "password": password})["access_token"]


if ROLE != "anonymous":

    @schemathesis.auth(refresh_interval=300)
    class SignIn:
        def get(self, case, ctx):
            return sign_in()

        def set(self, case, data, ctx):
            case.headers = case.headers or {}
            case.headers["Authorization"] = f"Bearer {data}"


# positive_data_acceptance (ST202) sends requests that the schema allows and expects them
# accepted. A few rules of this API are facts no JSON schema can state; a request that
# breaks only those is refused with 422 (or 400/415) and is not a contract failure. Each
# such refusal is dropped here by its exact (field, code), with the reason; anything else
# the server refuses still fails the run. schemathesis reports the dropped count.
UNSTATABLE = {
    ("cursor", "invalid"): "a cursor is opaque: only a next_cursor the server handed out is valid",
    ("from_seq", "invalid"): "from_seq and from_hash of an audit checkpoint go together: a rule between two parameters",
    ("near", "invalid"): "lat,lng within ±90/±180 as Rust parses floats; a pattern would be stricter or looser than the server",
    ("id_number", "check_digit"): "GB 11643 MOD 11-2 check character",
    ("id_number", "birth_date"): "the birth date inside the ID number must be a real past date",
    ("real_name", "invalid"): "2–30 Unicode letters, '·' or spaces after trimming (Rust's is_alphabetic)",
    ("password", "too_weak"): "two of letters, digits and symbols (Unicode classes)",
    ("new_password", "too_weak"): "two of letters, digits and symbols (Unicode classes)",
    ("new_password", "unchanged"): "must differ from current_password",
    ("current_password", "incorrect"): "whether a password is right is not a schema matter",
    ("code", "invalid"): "whether a WeChat code is valid only WeChat knows",
    ("code", "other_app"): "the phone number WeChat returns is watermarked for another app",
    ("from", "range"): "from ≤ to and at most 366 days: a rule between two parameters",
    ("quota", "required"): "a quota is required unless period is unlimited: a rule between two fields",
    ("quota", "not_allowed"): "an unlimited benefit takes no quota: a rule between two fields",
    ("valid_until", "before_start"): "valid_until after valid_from: a rule between two fields",
    ("tiers", "required"): "a benefit as changed must keep its tiers",
    ("period", "required"): "a benefit as changed must keep its period",
    # OpenAPI 3.1 schemas are JSON Schema 2020-12, where `format` (date-time, date) is an
    # annotation: "" is schema-valid there, and only a real RFC 3339 instant or date is to us.
    ("valid_from", "invalid"): "format date-time is an annotation in OpenAPI 3.1",
    ("valid_until", "invalid"): "format date-time is an annotation in OpenAPI 3.1",
    ("from", "invalid"): "format date is an annotation in OpenAPI 3.1",
    ("to", "invalid"): "format date is an annotation in OpenAPI 3.1",
    ("document_ids", "unknown"): "documents must be ones this talent uploaded",
    ("role", "invalid"): "admin users take admin roles only",
    ("role", "not_allowed"): "a manager grants merchant_staff only; operators merchant roles only",
}
UNSTATABLE_CODES = {
    "qr_invalid": "a QR token must carry a valid Ed25519 signature",
    "unsupported_media_type": "an upload must be a PDF, JPEG or PNG by content",
    "idempotency_key_reused": "the same Idempotency-Key with another body is 422 (SPEC §6); the fuzzer "
    "repeats header values across cases, and which keys were used is state, not shape",
}

UNSTATABLE_OPERATION_CODES = {
    ("POST /api/v1/me/documents", "bad_request"): "a part name holding control characters makes a "
    "multipart body that cannot be read (RFC 7578 part headers); the schema's extra properties become such parts",
}


def _problem(case, response):
    if case.method.upper() != "HEAD":
        try:
            return response.json()
        except Exception:
            return None
    # HEAD answers without a body: ask the same as GET to see which rule refused it.
    import requests

    try:
        request = response.request
        return requests.get(request.url, headers=dict(request.headers), timeout=10).json()
    except Exception:
        return None


@schemathesis.hook
def filter_failure(context, failure, case, response):
    if getattr(failure, "code", None) != "ST202":
        return True
    problem = _problem(case, response)
    if not isinstance(problem, dict):
        return True
    if problem.get("code") in UNSTATABLE_CODES:
        return False
    operation = f"{case.method.upper()} {case.operation.path}"
    if (operation, problem.get("code")) in UNSTATABLE_OPERATION_CODES:
        return False
    errors = problem.get("errors") or []
    return not (errors and all((e.get("field"), e.get("code")) in UNSTATABLE for e in errors))
