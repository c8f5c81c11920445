"""schemathesis hooks for the fuzz test (tests/e2e/test_schemathesis.py), loaded by the
``schemathesis run`` it starts: a serializer for tus bodies, and the failures that are not
bugs, each with the reason the OpenAPI document cannot express.

An excuse is narrow: one kind of failure, the exact status and problem type the server
answered, and a look at the request or response that proves the reason holds. Anything else
a check reports stays a failure. Every excused failure is appended, with its reason, to the
file named by ``BLOCKDRIVE_FUZZ_EXCUSED`` (the test counts them)."""

from __future__ import annotations

import json
import os
import re

import schemathesis


@schemathesis.serializer("application/offset+octet-stream")
def _tus_bytes(ctx, value):  # tus chunks are raw bytes, like application/octet-stream
    return value if isinstance(value, bytes) else str(value).encode()


def _problem(response) -> dict:
    try:
        body = json.loads(response.content or b"{}")
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _code(response) -> str:
    return str(_problem(response).get("type", "")).rsplit("/", 1)[-1]


def _too_long(name) -> bool:
    return isinstance(name, str) and len(name.encode("utf-8", "surrogatepass")) > 255


def name_over_255_bytes(case, response) -> bool:
    names = [(case.path_parameters or {}).get("name")]
    if isinstance(case.body, dict):
        names.append(case.body.get("name"))
    path = (case.query or {}).get("path")
    if isinstance(path, str):
        names += path.split("/")
    return _code(response) == "invalid-name" and any(_too_long(n) for n in names)


def batch_entry_refused(case, response) -> bool:
    """The batch routes answer 200 with one result per entry; an entry that breaks the schema
    gets its own error result and is not committed, while the valid entries land. Excused only
    if every entry that breaks the entry schema has an error result."""
    import jsonschema
    key = {"POST /api/v1/batch/commit": "files", "POST /api/v1/batch/folders": "folders"}[case.operation.label]
    entries = case.body.get(key) if isinstance(case.body, dict) else None
    results = _problem(response).get("results")
    if not isinstance(entries, list) or not isinstance(results, list) or len(results) != len(entries):
        return False
    raw = case.operation.schema.raw_schema["components"]["schemas"]
    entry_schema = raw["BatchCommit" if key == "files" else "BatchFolders"]["properties"][key]["items"]
    validator = jsonschema.Draft202012Validator(entry_schema)
    return all("error" in r for e, r in zip(entries, results) if not validator.is_valid(e))


def sign_in_redirect(case, response) -> bool:
    return response.status_code == 303 and response.headers.get("location", [""])[0].endswith("/admin/login")


def breaks_declared_pattern(header: str):
    """The header sent does not match the pattern the document declares for it."""
    def check(case, response) -> bool:
        value = (case.headers or {}).get(header)
        params = case.operation.schema.raw_schema["paths"][case.operation.path][case.method.lower()]["parameters"]
        pattern = next(p["schema"]["pattern"] for p in params if p["name"] == header)
        return isinstance(value, str) and re.search(pattern, value) is None
    return check


def range_past_the_end(case, response) -> bool:
    """416 for a Range that starts at or past the end of the file, or asks for its last 0
    bytes (RFC 9110 14.1.1): the size is the file's, not the request's."""
    size = _problem(response).get("size")
    m = re.fullmatch(r"\s*bytes=\s*([0-9]*)-([0-9]*)\s*", str((case.headers or {}).get("Range", "")), re.ASCII)
    if _code(response) != "range-not-satisfiable" or not isinstance(size, int) or m is None:
        return False
    first, last = (_position(g) if g else None for g in m.groups())
    return first >= size if first is not None else last is not None and (last == 0 or size == 0)


def _position(digits: str) -> int:
    """A Range position; past 19 digits it is past any file (int() refuses 4,300+ digits)."""
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) <= 19 else 2**63


def problem(code: str, detail: str = ""):
    """The answer is the problem ``code`` with a detail matching ``detail``."""
    def check(case, response) -> bool:
        return _code(response) == code and re.search(detail, str(_problem(response).get("detail", ""))) is not None
    return check


def gone(case, response) -> bool:
    """410 ``gone``. A HEAD answer has no body (RFC 9110 9.3.2), so there the proof is the
    problem+json type with no bytes: the drive answers 410 only for ``storage.errors.Gone``."""
    if case.method.upper() == "HEAD":
        ctype = response.headers.get("content-type", [""])[0]
        return response.status_code == 410 and ctype == "application/problem+json" and not response.content
    return problem("gone")(case, response)


POSITIVE = "RejectedPositiveData"
STATE = "the drive's state decides, not the request's shape: "
# (failure class, operation label or "*", status, proof, why it is not a bug)
EXCUSES = [
    # Schema-valid requests refused because of the data the server holds, which no schema knows.
    (POSITIVE, "*", 400, name_over_255_bytes,
     "a name is at most 255 UTF-8 bytes; JSON Schema's maxLength counts characters"),
    (POSITIVE, "*", 400, problem("invalid-input", r"^node \d+ is (a|not a) folder$"),
     STATE + "a folder has no content, versions or block map; a file has no children or tree"),
    (POSITIVE, "*", 400, problem("invalid-input", r"^the root folder cannot be"),
     STATE + "the root folder is not deleted, renamed or moved"),
    (POSITIVE, "*", 400, problem("invalid-input", r"^node \d+ was deleted with its folder"),
     STATE + "a node trashed with its folder is restored with that folder"),
    (POSITIVE, "*", 400, problem("invalid-input", r"^invalid cursor"),
     "a cursor is opaque: only a listing's own next_cursor is one"),
    (POSITIVE, "*", 400, problem("invalid-input", r"^\d+ block\(s\) not sent yet$"),
     STATE + "a commit names blocks the caller sent or already has"),
    (POSITIVE, "*", 400, problem("invalid-input", r"^(no user with email|the owner already has every right)"),
     STATE + "a share goes to another existing user"),
    (POSITIVE, "POST /api/v1/nodes/{id}/links", 400, problem("invalid-input", r"^a file-drop link must be to a folder$"),
     STATE + "a file-drop link (role uploader) goes to a folder"),
    (POSITIVE, "POST /s/{token}", 403, problem("forbidden", r"CSRF"),
     "a browser's form: its CSRF token is the one of the session that showed the page, which no "
     "generated request has"),
    (POSITIVE, "POST /api/v1/batch/blocks", 400,
     problem("invalid-input", r"^(truncated block|a block is at most|at most \d+ blocks)"),
     "the body is frames of hash, length and bytes; a schema cannot describe a binary framing"),
    (POSITIVE, "POST /api/v1/uploads", 400, problem("invalid-input", r"^Upload-Metadata"),
     "tus Upload-Metadata is key and base64-value pairs that must carry a filename and may carry a "
     "parent_id: a grammar over decoded base64 that JSON Schema cannot state"),
    (POSITIVE, "POST /api/v1/uploads", 400, problem("invalid-name"),
     "the filename in Upload-Metadata is base64: its name rules apply to the decoded text"),
    (POSITIVE, "GET /api/v1/admin/reports", 400, problem("invalid-input", r"^since must be an ISO 8601"),
     "since takes any ISO 8601 form Python reads (dates, times, offsets); not restated as a pattern"),
    (POSITIVE, "PATCH /api/v1/uploads/{sid}", 400, breaks_declared_pattern("Upload-Checksum"),
     "not positive data: the Upload-Checksum sent breaks the document's own pattern "
     "(schemathesis' coverage phase sends a placeholder)"),
    (POSITIVE, "*", 413, problem("quota-exceeded"), STATE + "the account's quota is full"),
    (POSITIVE, "POST /api/v1/uploads", 413, problem("request-entity-too-large", r"^uploads are limited to"),
     "an Upload-Length past the server's configured upload limit (Tus-Max-Size, tus: 413)"),
    (POSITIVE, "*", 422, problem("hash-mismatch"),
     "a block's bytes must hash to its name; generated bytes never hash to a generated name"),
    (POSITIVE, "*", 422, problem("content-mismatch"),
     "a file's size and SHA-256 must be those of its blocks; generated ones never are"),
    (POSITIVE, "*", 460, problem("checksum-mismatch"),
     "a tus Upload-Checksum must be the digest of the bytes sent; a generated one never is"),
    (POSITIVE, "*", 416, range_past_the_end,
     "a Range starting past the end of the file it names (RFC 9110: 416); the size is the file's"),
    (POSITIVE, "*", 412, problem("precondition-failed"),
     "If-Match / If-None-Match name a version the file does not have (RFC 9110: 412)"),
    (POSITIVE, "*", 410, gone, STATE + "the link or upload was revoked, has expired or was terminated"),
    # The batch routes refuse a bad entry in its own result (200), and commit the others.
    ("AcceptedNegativeData", "POST /api/v1/batch/commit", 200, batch_entry_refused,
     "a malformed entry is refused in its own result; the batch's valid entries still land"),
    ("AcceptedNegativeData", "POST /api/v1/batch/folders", 200, batch_entry_refused,
     "a malformed entry is refused in its own result; the batch's valid entries still land"),
    # A browser without a session is sent to the sign-in form, not shown a 401 problem.
    ("AcceptedNegativeData", "GET /admin", 303, sign_in_redirect,
     "the dashboard is an HTML page: without credentials it redirects to /admin/login"),
    ("MissingHeaderNotRejected", "GET /admin", 303, sign_in_redirect,
     "the dashboard is an HTML page: without credentials it redirects to /admin/login"),
]


@schemathesis.hook
def filter_failure(context, failure, case, response) -> bool:
    """False (drop the failure) only when one excuse matches it exactly."""
    kind = type(failure).__name__
    for name, label, status, proof, why in EXCUSES:
        if (kind == name and label in ("*", case.operation.label) and response.status_code == status
                and proof(case, response)):
            log = os.environ.get("BLOCKDRIVE_FUZZ_EXCUSED")
            if log:
                with open(log, "a") as f:
                    f.write(json.dumps({"failure": kind, "operation": case.operation.label,
                                        "status": status, "why": why,
                                        "detail": str(_problem(response).get("detail", ""))[:200]}) + "\n")
            return False
    return True
