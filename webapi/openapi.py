"""The OpenAPI 3.1 document of the HTTP API, built from a compact table of operations below
with the body schemas of the models in :mod:`webapi.schemas` and :mod:`webapi.responses`,
and a docs page that renders it. Keep the table in step with the blueprints: a test checks
that every Flask route appears here."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from .responses import response_schemas
from .schemas import NAME_SCHEMA, PATH_PATTERN, SHA256, clean_schema, request_schemas

bp = Blueprint("openapi", __name__, url_prefix="/api/v1")

PROBLEM = {"$ref": "#/components/responses/Problem"}
ERRORS = {  # status -> description
    400: "Invalid input (bad name, path, field or header)", 401: "Missing or invalid credentials",
    403: "Visible to the caller but not theirs to change", 404: "Not found, or not visible to the caller",
    409: "Conflict (name taken, cycle, wrong upload offset)", 410: "Gone (expired or revoked link or upload)",
    412: "Precondition failed (If-Match, unsupported tus version)", 413: "Quota exceeded or body too large",
    415: "Unsupported media type", 416: "Range not satisfiable",
    422: "Content does not match its hash, or a tree limit (depth, nodes per user or per copy) would be passed",
    429: "Too many failed attempts (see Retry-After)", 460: "tus checksum mismatch",
    503: "Temporarily unavailable",
}


def _schema(name):
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema):
    return {"content": {"application/json": {"schema": schema}}}


def _op(summary, ok, errors=(), body=None, params=(), auth=True, body_type="application/json",
        body_required=True):
    op = {"summary": summary, "responses": {}, "parameters": list(params)}
    for status, resp in ok.items():
        op["responses"][str(status)] = resp
    for status in (*errors, *((401,) if auth else ())):
        op["responses"][str(status)] = {"description": ERRORS[status], **PROBLEM_CONTENT}
    if body is not None:
        op["requestBody"] = {"required": body_required, "content": {body_type: {"schema": body}}}
    if not auth:
        op["security"] = []
    return op


PROBLEM_CONTENT = {"content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}


def _path(name, desc, schema=None, where="path", required=True):
    return {"name": name, "in": where, "required": required, "description": desc,
            "schema": schema or ({"type": "integer", "minimum": 1, "maximum": 2**63 - 1} if where == "path" else {"type": "string"})}


NODE_ID = _path("id", "node id")
QUERY_ID = {"type": "integer", "minimum": 1, "maximum": 2**53}  # util.int_arg's bound for ids in a query
CHECKSUM = {"type": "string", "pattern": r"^(sha1|sha256) (?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"}
NAME = _path("name", "file name", NAME_SCHEMA)
TOKEN = _path("token", "link token", {"type": "string"})
SID = _path("sid", "upload id", {"type": "string"})
LINK_PW = _path("X-Link-Password", "the link's password, if it has one", where="header", required=False)
TUS = _path("Tus-Resumable", "tus protocol version", {"type": "string", "enum": ["1.0.0"]}, where="header")
# A browser's answer to a protected link's page (GET /s/{token} with Accept: text/html): a
# right password unlocks the link for that browser session. Its refusals are pages, except a
# missing or wrong CSRF token (the form's, from the session that showed it).
_PAGE = {"content": {"text/html": {"schema": {"type": "string"}}}}
LINK_PASSWORD_FORM = {
    "summary": "A browser's password form for a protected link (HTML pages, not the JSON API)",
    "security": [], "parameters": [],
    "requestBody": {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": {
        "type": "object", "required": ["csrf", "password"],
        "properties": {"csrf": {"type": "string"}, "password": {"type": "string"}}}}}},
    "responses": {"303": {"description": "Unlocked: to the link's page"},
                  "401": {"description": "The form again: wrong or missing password", **_PAGE},
                  "403": {"description": ERRORS[403] + " (the CSRF token)", **PROBLEM_CONTENT},
                  "404": {"description": "A page: no such link", **_PAGE},
                  "410": {"description": "A page: the link was revoked or has expired", **_PAGE},
                  "429": {"description": "The form again: too many wrong passwords", **_PAGE}},
}
NODE_OK = {"description": "The node", **_json(_schema("Node"))}
BIN = {"content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}
DOWNLOAD_PARAMS = [_path("Range", "bytes=a-b", where="header", required=False),
                   _path("If-Range", "an ETag", where="header", required=False),
                   _path("If-None-Match", "ETags", where="header", required=False)]
DOWNLOAD_OK = {200: {"description": "The content, as an attachment", **BIN},
               206: {"description": "Part of the content", **BIN}, 304: {"description": "Not modified"}}


def _list(item):
    return {"type": "object", "properties": {"items": {"type": "array", "items": _schema(item)}}}


def paths() -> dict:
    n = NODE_ID
    sort = [_path("sort", "name|updated|size", {"type": "string", "enum": ["name", "updated", "size"]},
                  "query", False),
            _path("order", "asc|desc", {"type": "string", "enum": ["asc", "desc"]}, "query", False),
            _path("limit", "page size", {"type": "integer", "minimum": 1, "maximum": 1000}, "query", False),
            _path("cursor", "from next_cursor", where="query", required=False)]
    return {
        "/api/v1/auth/tokens": {
            "post": _op("Sign in: email and password for an API token (throttled per client address and "
                        "account: 429 with Retry-After while a wait runs)",
                        {201: {"description": "A new token", **_json(_schema("Token"))}},
                        (400, 401, 429, 503), _schema("Credentials"), auth=False),
            "get": _op("The caller's live tokens and admin sessions (never their secrets)",
                       {200: {"description": "Tokens", **_json(_list("TokenInfo"))}})},
        "/api/v1/auth/tokens/{token_id}": {
            "parameters": [_path("token_id", "token id")],
            "delete": _op("Revoke one of the caller's tokens (and admin sessions opened with it)",
                          {204: {"description": "Revoked"}}, (404,))},
        "/api/v1/auth/logout": {"post": _op("Revoke the calling token (and admin sessions opened with it)",
                                            {204: {"description": "Signed out"}})},
        "/api/v1/account/password": {
            "post": _op("Change the password; revokes every other token and session of the caller, keeps this one",
                        {200: {"description": "Changed", **_json(_schema("PasswordChanged"))}},
                        (400, 403, 429, 503), _schema("PasswordChange"))},
        "/api/v1/account": {"get": _op("The caller's account", {200: {"description": "Account",
                                                                      **_json(_schema("Account"))}})},
        "/api/v1/nodes/{id}": {
            "parameters": [n],
            "get": _op("A file's or folder's metadata", {200: NODE_OK}, (404,)),
            "patch": _op("Rename and/or move", {200: NODE_OK}, (400, 403, 404, 409, 422), _schema("NodePatch")),
            "delete": _op("Move to the trash (folders recursively)", {200: NODE_OK}, (400, 403, 404)),
        },
        "/api/v1/nodes/{id}/children": {
            "parameters": [n],
            "get": _op("A folder's children, one page", {200: {"description": "A page",
                                                               **_json(_schema("Page"))}}, (400, 404), params=sort),
            "post": _op("Create a folder", {201: NODE_OK}, (400, 403, 404, 409, 422), _schema("NewFolder")),
        },
        "/api/v1/nodes/{id}/children/{name}": {
            "parameters": [n, NAME],
            "put": _op("Upload (streamed): a new file (201) or a new version (200)", {200: NODE_OK, 201: NODE_OK},
                       (400, 403, 404, 409, 412, 413, 422), {"type": "string", "format": "binary"},
                       params=[_path("If-Match", "the ETag or version id last seen", where="header", required=False),
                               _path("If-None-Match", "* : only if absent", where="header", required=False)],
                       body_type="application/octet-stream", body_required=False),
        },
        "/api/v1/nodes/{id}/children/{name}/commit": {
            "parameters": [n, NAME],
            "post": _op("Commit a new file or version from sent blocks", {200: NODE_OK, 201: NODE_OK},
                        (400, 403, 404, 409, 412, 413, 422), _schema("Commit")),
        },
        "/api/v1/nodes/{id}/content": {
            "parameters": [n],
            "get": _op("Download", DOWNLOAD_OK, (400, 404, 416),
                       params=[*DOWNLOAD_PARAMS, _path("version", "a version id", QUERY_ID,
                                                       "query", False)]),
        },
        "/api/v1/nodes/{id}/copy": {"parameters": [n], "post": _op(
            "Copy (references the same blocks)", {201: NODE_OK}, (400, 403, 404, 409, 413, 422), _schema("Copy"))},
        "/api/v1/nodes/{id}/restore": {"parameters": [n], "post": _op(
            "Restore from the trash", {200: NODE_OK}, (400, 404, 422))},
        "/api/v1/nodes/{id}/versions": {"parameters": [n], "get": _op(
            "A file's versions, newest first", {200: {"description": "Versions", **_json(_list("Version"))}}, (404,))},
        "/api/v1/nodes/{id}/versions/{vid}": {
            "parameters": [n, _path("vid", "version id")],
            "delete": _op("Delete an old version for good (owner only; not the current one)",
                          {200: {"description": "Purged", **_json(_schema("VersionPurged"))}}, (403, 404, 409))},
        "/api/v1/nodes/{id}/versions/{vid}/restore": {
            "parameters": [n, _path("vid", "version id")],
            "post": _op("Make an old version current (as a new version)", {200: NODE_OK}, (403, 404, 409, 413))},
        "/api/v1/nodes/{id}/shares": {
            "parameters": [n],
            "get": _op("Grants on the node (owner only)", {200: {"description": "Shares", **_json(_list("Share"))}},
                       (403, 404)),
            "post": _op("Grant a role to the user with an email address, or invite the address if it has no "
                        "account yet (the same answer either way)",
                        {200: {"description": "Updated", **_json(_schema("Granted"))},
                         201: {"description": "Granted or invited", **_json(_schema("Granted"))}},
                        (400, 403, 404), _schema("Grant")),
        },
        "/api/v1/nodes/{id}/invitations/{invitation_id}": {
            "parameters": [n, _path("invitation_id", "pending invitation's id (from the share list)")],
            "delete": _op("Revoke a pending invitation", {204: {"description": "Revoked"}}, (403, 404))},
        "/api/v1/nodes/{id}/shares/{user_id}": {
            "parameters": [n, _path("user_id", "grantee's user id")],
            "delete": _op("Revoke a grant", {204: {"description": "Revoked"}}, (403, 404))},
        "/api/v1/nodes/{id}/links": {
            "parameters": [n],
            "get": _op("Public links of the node (owner only)", {200: {"description": "Links",
                                                                       **_json(_list("Link"))}}, (403, 404)),
            "post": _op("Create a public link", {201: {"description": "The link, with its token",
                                                       **_json(_schema("NewLink"))}}, (400, 403, 404),
                        _schema("LinkRequest"), body_required=False),
        },
        "/api/v1/nodes/{id}/links/{link_id}": {
            "parameters": [n, _path("link_id", "link id")],
            "delete": _op("Revoke a link", {204: {"description": "Revoked"}}, (403, 404))},
        "/api/v1/trash": {
            "get": _op("The caller's trash", {200: {"description": "Trash", **_json(_list("Node"))}}),
            "delete": _op("Empty the trash for good (up to 1000 entries a request; `more` says to ask again)",
                          {200: {"description": "Purged", **_json(_schema("Purged"))}})},
        "/api/v1/trash/{id}": {"parameters": [n], "delete": _op(
            "Delete a trash entry (and what was deleted with it) for good", {200: {"description": "Purged", **_json(
                _schema("Purged"))}}, (400, 404))},
        "/api/v1/shared-with-me": {"get": _op("Nodes shared with the caller",
                                              {200: {"description": "Shared", **_json(_list("Node"))}})},
        "/api/v1/shared-with-me/{id}": {"parameters": [n], "delete": _op(
            "Leave a share: remove the caller's own share of this node (the owner's files stay)",
            {204: {"description": "Left"}}, (404,))},
        "/api/v1/search": {"get": _op(
            "Search by name in the caller's files and what is shared with them: every word of q, each as a "
            "word start; best matches first", {200: {"description": "A page", **_json(_schema("SearchPage"))}},
            (400,), params=[_path("q", "words to find (1-200 characters)", where="query"),
                            _path("limit", "page size", {"type": "integer", "minimum": 1, "maximum": 100},
                                  "query", False),
                            _path("cursor", "from next_cursor", where="query", required=False)])},
        "/api/v1/changes/latest": {"get": _op(
            "A change-feed cursor at the end of everything the caller can see now",
            {200: {"description": "A cursor", **_json(_schema("ChangeCursor"))}})},
        "/api/v1/changes": {"get": _op(
            "What changed in the caller's files and in what is shared with them since the cursor, in commit "
            "order; 410 with type .../reset when the cursor expired (list the tree again)",
            {200: {"description": "A page", **_json(_schema("ChangePage"))}}, (400, 410),
            params=[_path("cursor", "from /changes/latest or a previous page", where="query"),
                    _path("limit", "page size", {"type": "integer", "minimum": 1, "maximum": 1000},
                          "query", False)])},
        "/api/v1/changes/wait": {"get": _op(
            "Long-poll: answers as soon as something changes after the cursor, or false after the timeout",
            {200: {"description": "Whether anything changed", **_json(_schema("ChangeWait"))}}, (400, 410, 503),
            params=[_path("cursor", "from /changes/latest or a page", where="query"),
                    _path("timeout", "seconds to wait (capped by changes.wait_max_seconds)",
                          {"type": "integer", "minimum": 1, "maximum": 3600}, "query", False)])},
        "/api/v1/resolve": {"get": _op("Path to node, from the caller's root", {200: NODE_OK}, (400, 404),
                                       params=[_path("path", "/a/b/c", {"type": "string", "pattern": PATH_PATTERN}, "query")])},
        "/api/v1/uploads": {
            "options": _op("tus capabilities", {204: {"description": "Tus-Version, Tus-Extension, ..."}}, auth=False),
            "post": _op("tus: create an upload (creation, creation-with-upload)",
                        {201: {"description": "Created; Location is the upload's URL"}}, (400, 403, 404, 409, 412, 413,
                                                                                          415, 422, 460),
                        {"type": "string", "format": "binary"}, body_type="application/offset+octet-stream",
                        body_required=False,
                        params=[TUS, _path("Upload-Length", "total bytes", {"type": "string", "pattern": "^[0-9]+$"},
                                           where="header"),
                                _path("Upload-Metadata", "filename and parent_id, base64", where="header")]),
        },
        "/api/v1/uploads/{sid}": {
            "parameters": [SID],
            "options": _op("tus capabilities", {204: {"description": "Tus-Version, Tus-Extension, ..."}}, auth=False),
            "head": _op("tus: the upload's offset", {200: {"description": "Upload-Offset, Upload-Length"}},
                        (404, 410, 412), params=[TUS]),
            "patch": _op("tus: append bytes at Upload-Offset", {204: {"description": "Appended; new Upload-Offset"}},
                         (400, 404, 409, 410, 412, 413, 415, 422, 460), {"type": "string", "format": "binary"},
                         body_type="application/offset+octet-stream",
                         params=[TUS, _path("Upload-Offset", "where these bytes go",
                                            {"type": "string", "pattern": "^[0-9]+$"}, where="header"),
                                 _path("Upload-Checksum", "sha1|sha256 <base64 digest>", CHECKSUM, where="header",
                                       required=False)]),
            "delete": _op("tus: terminate the upload", {204: {"description": "Terminated"}}, (404, 410, 412),
                          params=[TUS]),
        },
        "/api/v1/blocks/missing": {"post": _op(
            "Which of these blocks must the caller send; with `files` (the size, block count and folder of "
            "each file they are for), 413 quota-exceeded (needed, available) first when those cannot fit",
            {200: {"description": "Missing hashes", **_json(_schema("Missing"))}}, (400, 403, 404, 413),
            _schema("Hashes"))},
        "/api/v1/blocks/{sha256}": {
            "parameters": [_path("sha256", "the block's SHA-256", SHA256)],
            "put": _op("Send one block", {200: {"description": "Known already"}, 201: {"description": "Stored"}},
                       (400, 404, 413, 422), {"type": "string", "format": "binary"}, body_type="application/octet-stream")},
        "/api/v1/batch/blocks": {"post": _op(
            "Send many blocks: repeated frames of a 32-byte SHA-256, a 4-byte big-endian length, the bytes",
            {200: {"description": "Received", **_json(_schema("BlocksReceived"))}}, (400, 413, 422),
            {"type": "string", "format": "binary"}, body_type="application/octet-stream", body_required=False)},
        "/api/v1/batch/commit": {"post": _op(
            "Commit many files from sent blocks in one transaction; one result per file",
            {200: {"description": "Per-file results", **_json(_schema("BatchResults"))}}, (400, 409, 413, 422),
            _schema("BatchCommit"))},
        "/api/v1/batch/folders": {"post": _op(
            "Create many folders (existing ones are kept); one result per folder",
            {200: {"description": "Per-folder results", **_json(_schema("BatchResults"))}}, (400, 409, 422),
            _schema("BatchFolders"))},
        "/api/v1/nodes/{id}/tree": {"parameters": [n], "get": _op(
            "Every live node below a folder, parents first (truncated past 100,000 nodes)",
            {200: {"description": "The subtree", **_json(_schema("Tree"))}}, (400, 404))},
        "/api/v1/nodes/{id}/blocks": {"parameters": [n], "get": _op(
            "A file version's block map: [sha256, offset, size] per block, in order",
            {200: {"description": "Block map", **_json(_schema("BlockMap"))}}, (400, 404),
            params=[_path("version", "a version id", QUERY_ID, "query", False)])},
        "/s/{token}": {"parameters": [TOKEN], "get": _op(
            "A public link: metadata (and listing, for a folder)", {200: {"description": "Linked node",
                                                                          **_json(_schema("LinkView"))}},
            (400, 401, 403, 404, 410, 429), auth=False,
            params=[LINK_PW, _path("node_id", "a node below a linked folder", QUERY_ID,
                                   "query", False), *sort]),
            "post": LINK_PASSWORD_FORM},
        "/s/{token}/content": {"parameters": [TOKEN], "get": _op(
            "A public link: download", DOWNLOAD_OK, (400, 401, 403, 404, 410, 416, 429), auth=False,
            params=[LINK_PW, *DOWNLOAD_PARAMS, _path("node_id", "a file below a linked folder",
                                                     QUERY_ID, "query", False)])},
        "/s/{token}/files/{name}": {"parameters": [TOKEN, NAME], "put": _op(
            "A file-drop link: add a file (a taken name gets a free one; the stored name is not told)",
            {201: {"description": "Received", **_json({"type": "object", "required": ["received", "size"], "properties": {
                "received": {"type": "string"}, "size": {"type": "integer"}, "sha256": {"type": "string"}}})}},
            (400, 401, 403, 404, 410, 412, 413, 429), {"type": "string", "format": "binary"}, params=[LINK_PW],
            auth=False, body_type="application/octet-stream", body_required=False)},
        # Admin reports (webapi/admin.py): JSON for admins' bearer tokens, and the dashboard.
        "/api/v1/admin/reports/latest": {"get": _op(
            "Admin: the latest report snapshot (headline figures, tiers, top users, traffic, job runs)",
            {200: {"description": "The snapshot", **_json({"type": "object", "required": ["id", "taken_at", "headline"]})}},
            (403, 404))},
        "/api/v1/admin/reports": {"get": _op(
            "Admin: report snapshots' headlines and tier splits since a time, oldest first (trends)",
            {200: {"description": "Snapshots", **_json({"type": "object", "properties": {"items": {"type": "array"}}})}},
            (400, 403), params=[_path("since", "ISO 8601 date or time", where="query", required=False),
                                _path("limit", "at most this many (newest)", {"type": "integer", "minimum": 1,
                                                                               "maximum": 10000}, "query", False)])},
        "/admin": {"get": _op("Admin dashboard (HTML; session cookie from /admin/login, or a bearer token)",
                              {200: {"description": "HTML"}, 303: {"description": "Not signed in: to /admin/login"}},
                              (403,))},
        "/admin/login": {"get": _op("Admin sign-in form (HTML)", {200: {"description": "HTML"}}, auth=False),
                         "post": _op("Admin sign-in: an admin's API token and the form's CSRF token",
                                     {200: {"description": "Not an admin's token: the form again (HTML)"},
                                      303: {"description": "Signed in: to /admin"}}, (403,), auth=False,
                                     body={"type": "object", "properties": {"token": {"type": "string"},
                                                                             "csrf": {"type": "string"}}},
                                     body_type="application/x-www-form-urlencoded")},
        "/admin/logout": {"post": _op("Admin sign-out (needs the page's CSRF token)",
                                      {200: {"description": "Signed out: the sign-in form (HTML)"}}, (403,), auth=False,
                                      body={"type": "object", "properties": {"csrf": {"type": "string"}}},
                                      body_type="application/x-www-form-urlencoded")},
        **admin_user_paths(),
        "/api/v1/openapi.json": {"get": _op("This document", {200: {"description": "OpenAPI 3.1",
                                                                    **_json({"type": "object"})}}, auth=False)},
        "/api/v1/docs": {"get": _op("API documentation page", {200: {"description": "HTML"}}, auth=False)},
        "/healthz": {"get": _op("Liveness", {200: {"description": "Up", **_json({"type": "object"})}}, auth=False)},
        "/readyz": {"get": _op("Readiness (database and storage)", {200: {"description": "Ready"},
                                                                    503: {"description": "Not ready"}}, auth=False)},
        "/metrics": {"get": _op("Prometheus metrics", {200: {"description": "text exposition format"}}, auth=False)},
    }


# Admin user management (webapi/admin/users.py) and the dashboard's "run now" (webapi/admin/runs.py).
ADMIN_USER_OPS = {
    "/api/v1/admin/users": {"get": "adminListUsers", "post": "adminCreateUser"},
    "/api/v1/admin/users/{user_id}": {"get": "adminGetUser", "patch": "adminPatchUser", "delete": "adminDeleteUser"},
    "/api/v1/admin/users/{user_id}/password": {"post": "adminResetPassword"},
}


def admin_user_paths() -> dict:
    from .admin.users import NewUser, PasswordReset, UserPatch
    user = {"description": "The user (status active, disabled or deleted; with usage, node_count and token_count "
                           "when one user is asked for)", **_json({"type": "object"})}
    uid = {"parameters": [_path("user_id", "user id")]}
    ops = {
        "/api/v1/admin/users": {
            "get": _op("Admin: users by email, those containing q; a page and the next page's cursor",
                       {200: {"description": "Users", **_json({"type": "object"})}}, (400, 403),
                       params=[_path("q", "part of an email", where="query", required=False),
                               _path("cursor", "next_cursor of the page before", where="query", required=False)]),
            "post": _op("Admin: create a user (without password, one is generated and returned once)",
                        {201: user}, (400, 403, 409), body=clean_schema(NewUser.model_json_schema()))},
        "/api/v1/admin/users/{user_id}": {**uid, "get": _op("Admin: one user", {200: user}, (403, 404)),
            "patch": _op("Admin: set plan, quota, admin flag; disable or enable", {200: user}, (400, 403, 404, 409),
                         body=clean_schema(UserPatch.model_json_schema())),
            "delete": _op("Admin: delete a user (disabled, files to its trash; gc removes it after the retention)",
                          {200: user}, (403, 404, 409))},
        "/api/v1/admin/users/{user_id}/password": {**uid, "post": _op(
            "Admin: set a user's password, or generate one (returned once); revokes their tokens and sessions",
            {200: {"description": "The generated password, if one was", **_json({"type": "object"})}},
            (400, 403, 404, 409), body=clean_schema(PasswordReset.model_json_schema()))},
    }
    return ops


# operationId of every operation, by (path, method): the names the links below use.
OPERATION_IDS = {
    ("/api/v1/auth/tokens", "post"): "createToken", ("/api/v1/account", "get"): "getAccount",
    ("/api/v1/auth/tokens", "get"): "listTokens", ("/api/v1/auth/tokens/{token_id}", "delete"): "revokeToken",
    ("/api/v1/auth/logout", "post"): "logout", ("/api/v1/account/password", "post"): "changePassword",
    ("/api/v1/nodes/{id}/invitations/{invitation_id}", "delete"): "revokeInvitation",
    ("/api/v1/nodes/{id}", "get"): "getNode", ("/api/v1/nodes/{id}", "patch"): "patchNode",
    ("/api/v1/nodes/{id}", "delete"): "deleteNode", ("/api/v1/nodes/{id}/children", "get"): "listChildren",
    ("/api/v1/nodes/{id}/children", "post"): "createFolder",
    ("/api/v1/nodes/{id}/children/{name}", "put"): "upload",
    ("/api/v1/nodes/{id}/children/{name}/commit", "post"): "commitBlocks",
    ("/api/v1/nodes/{id}/content", "get"): "download", ("/api/v1/nodes/{id}/copy", "post"): "copyNode",
    ("/api/v1/nodes/{id}/restore", "post"): "restoreNode", ("/api/v1/nodes/{id}/versions", "get"): "listVersions",
    ("/api/v1/nodes/{id}/versions/{vid}/restore", "post"): "restoreVersion",
    ("/api/v1/nodes/{id}/versions/{vid}", "delete"): "purgeVersion",
    ("/api/v1/trash", "delete"): "emptyTrash", ("/api/v1/trash/{id}", "delete"): "purgeTrashEntry",
    ("/api/v1/nodes/{id}/shares", "get"): "listShares", ("/api/v1/nodes/{id}/shares", "post"): "grantShare",
    ("/api/v1/nodes/{id}/shares/{user_id}", "delete"): "revokeShare",
    ("/api/v1/nodes/{id}/links", "get"): "listLinks", ("/api/v1/nodes/{id}/links", "post"): "createLink",
    ("/api/v1/nodes/{id}/links/{link_id}", "delete"): "revokeLink", ("/api/v1/trash", "get"): "listTrash",
    ("/api/v1/shared-with-me", "get"): "sharedWithMe", ("/api/v1/shared-with-me/{id}", "delete"): "leaveShare", ("/api/v1/resolve", "get"): "resolvePath",
    ("/api/v1/search", "get"): "searchNodes",
    ("/api/v1/changes/latest", "get"): "latestChangeCursor", ("/api/v1/changes", "get"): "listChanges",
    ("/api/v1/changes/wait", "get"): "waitForChanges",
    ("/api/v1/uploads", "options"): "tusOptions", ("/api/v1/uploads", "post"): "tusCreate",
    ("/api/v1/uploads/{sid}", "options"): "tusUploadOptions", ("/api/v1/uploads/{sid}", "head"): "tusHead",
    ("/api/v1/uploads/{sid}", "patch"): "tusPatch", ("/api/v1/uploads/{sid}", "delete"): "tusTerminate",
    ("/api/v1/blocks/missing", "post"): "missingBlocks", ("/api/v1/blocks/{sha256}", "put"): "putBlock",
    ("/api/v1/batch/blocks", "post"): "putBlocks", ("/api/v1/batch/commit", "post"): "commitMany",
    ("/api/v1/batch/folders", "post"): "createFolders", ("/api/v1/nodes/{id}/tree", "get"): "getTree",
    ("/api/v1/nodes/{id}/blocks", "get"): "getBlockMap", ("/s/{token}", "get"): "viewLink",
    ("/s/{token}/content", "get"): "downloadLink",
    ("/s/{token}/files/{name}", "put"): "dropFile", ("/s/{token}", "post"): "unlockLinkForm", ("/api/v1/admin/reports/latest", "get"): "adminLatestReport",
    ("/api/v1/admin/reports", "get"): "adminReports", ("/admin", "get"): "adminDashboard",
    ("/admin/login", "get"): "adminLoginForm", ("/admin/login", "post"): "adminLogin",
    ("/admin/logout", "post"): "adminLogout", ("/api/v1/openapi.json", "get"): "openapiDocument",
    **{(p, m): op_id for p, ops in ADMIN_USER_OPS.items() for m, op_id in ops.items()},
    ("/api/v1/docs", "get"): "docsPage", ("/healthz", "get"): "healthz", ("/readyz", "get"): "readyz",
    ("/metrics", "get"): "metrics",
}

# OpenAPI links: what a response lets the client do next (create -> read, change, delete),
# by (operationId, status) -> {link name: (target operationId, {parameter: runtime expression})}.
# Stateful fuzzing follows them, so it works on objects that exist instead of made-up ids.
NEW_ID = "$response.body#/id"
SAME_ID = "$request.path.id"
_ON_NODE = {"get": ("getNode", {"id": NEW_ID}), "rename_or_move": ("patchNode", {"id": NEW_ID}),
            "delete": ("deleteNode", {"id": NEW_ID}), "copy": ("copyNode", {"id": NEW_ID}),
            "shares": ("listShares", {"id": NEW_ID}), "share": ("grantShare", {"id": NEW_ID}),
            "links": ("listLinks", {"id": NEW_ID}), "link": ("createLink", {"id": NEW_ID})}
_ON_FOLDER = {**_ON_NODE, "children": ("listChildren", {"id": NEW_ID}), "mkdir": ("createFolder", {"id": NEW_ID}),
              "upload": ("upload", {"id": NEW_ID}), "commit": ("commitBlocks", {"id": NEW_ID}),
              "tree": ("getTree", {"id": NEW_ID})}
_ON_FILE = {**_ON_NODE, "download": ("download", {"id": NEW_ID}), "versions": ("listVersions", {"id": NEW_ID}),
            "block_map": ("getBlockMap", {"id": NEW_ID}),
            "new_version": ("upload", {"id": "$response.body#/parent_id", "name": "$response.body#/name"})}
_FIRST_ITEM = {"get": ("getNode", {"id": "$response.body#/items/0/id"})}
LINKS = {
    ("getAccount", 200): {"root": ("getNode", {"id": "$response.body#/root_id"}),
                          "root_children": ("listChildren", {"id": "$response.body#/root_id"}),
                          "mkdir_in_root": ("createFolder", {"id": "$response.body#/root_id"}),
                          "upload_to_root": ("upload", {"id": "$response.body#/root_id"})},
    ("createFolder", 201): _ON_FOLDER,
    ("upload", 201): _ON_FILE, ("upload", 200): _ON_FILE,
    ("commitBlocks", 201): _ON_FILE, ("commitBlocks", 200): _ON_FILE,
    ("copyNode", 201): _ON_NODE, ("patchNode", 200): {"get": ("getNode", {"id": NEW_ID})},
    ("deleteNode", 200): {"restore": ("restoreNode", {"id": SAME_ID}), "get_deleted": ("getNode", {"id": SAME_ID})},
    ("restoreNode", 200): {"get": ("getNode", {"id": NEW_ID})},
    ("listChildren", 200): _FIRST_ITEM, ("sharedWithMe", 200): _FIRST_ITEM,
    ("listTrash", 200): {"restore": ("restoreNode", {"id": "$response.body#/items/0/id"})},
    ("resolvePath", 200): {"get": ("getNode", {"id": NEW_ID})},
    ("getTree", 200): _FIRST_ITEM,
    ("listVersions", 200): {"restore": ("restoreVersion", {"id": SAME_ID, "vid": "$response.body#/items/0/id"}),
                            "download": ("download", {"id": SAME_ID, "query.version": "$response.body#/items/0/id"})},
    ("restoreVersion", 200): {"versions": ("listVersions", {"id": NEW_ID})},
    # A grant's answer does not say whom it reached (see storage.sharing): the list does.
    ("grantShare", 201): {"shares": ("listShares", {"id": SAME_ID})},
    ("grantShare", 200): {"shares": ("listShares", {"id": SAME_ID})},
    ("createLink", 201): {"revoke": ("revokeLink", {"id": SAME_ID, "link_id": NEW_ID}),
                          "view": ("viewLink", {"token": "$response.body#/token"}),
                          "download": ("downloadLink", {"token": "$response.body#/token"}),
                          "links": ("listLinks", {"id": SAME_ID})},
    # tus: the upload's id is the last segment of its Location (a schemathesis regex extractor)
    ("tusCreate", 201): {name: (target, {"sid": "$response.header.Location#regex:/uploads/([^/?]+)$"})
                         for name, target in (("head", "tusHead"), ("append", "tusPatch"),
                                              ("terminate", "tusTerminate"))},
}


def _annotate(paths: dict) -> dict:
    """Give every operation its operationId and every listed response its links."""
    ids = {}
    for path, item in paths.items():
        for method, op in item.items():
            if method != "parameters":
                op["operationId"] = ids[(path, method)] = OPERATION_IDS[(path, method)]
    by_id = {op_id: key for key, op_id in ids.items()}
    for (op_id, status), links in LINKS.items():
        path, method = by_id[op_id]
        responses = paths[path][method]["responses"]
        responses[str(status)] = {**responses[str(status)], "links": {  # a copy: NODE_OK & co. are shared
            name: {"operationId": target, "parameters": dict(params)} for name, (target, params) in links.items()}}
    return paths


def _obj(props: dict, required=()):
    return {"type": "object", "properties": props, "required": list(required), "additionalProperties": False}


STR, INT = {"type": "string"}, {"type": "integer"}
NULL_INT, NULL_STR = {"type": ["integer", "null"]}, {"type": ["string", "null"]}
SCHEMAS = {
    "Problem": {"type": "object", "required": ["type", "title", "status"], "properties": {
        "type": {"type": "string", "format": "uri"}, "title": STR, "status": INT, "detail": STR,
        "clashes_with": {**STR, "description": "409 on a name: the name already in the folder that this one equals "
                                               "exactly or under case folding"}}},
    "PasswordChanged": {"type": "object", "properties": {"revoked": INT}},
    "Token": {"type": "object", "properties": {"token": STR, "token_type": STR}, "required": ["token"]},
    "Purged": {"type": "object", "properties": {"purged": INT, "versions": INT, "more": {"type": "boolean"}},
               "required": ["purged", "versions"]},
    "VersionPurged": {"type": "object", "properties": {"version_id": INT, "freed_bytes": INT}},
    "Page": {"type": "object", "properties": {"items": {"type": "array", "items": {"$ref": "#/components/schemas/Node"}},
                                              "next_cursor": NULL_STR}},
    "SearchPage": {"type": "object", "properties": {"items": {"type": "array", "items": {"allOf": [
        {"$ref": "#/components/schemas/Node"}, {"type": "object", "properties": {
            "path": STR, "shared": {"type": "boolean"}, "folders": {"type": "array", "items": {
                "type": "object", "properties": {"id": INT, "name": STR}}}}}]}}, "next_cursor": NULL_STR}},
    "LinkView": {"type": "object", "properties": {"node": {"$ref": "#/components/schemas/Node"}, "link": {
        "type": "object"}, "items": {"type": "array", "items": {"$ref": "#/components/schemas/Node"}},
        "next_cursor": NULL_STR}},
    "Missing": {"type": "object", "properties": {"missing": {"type": "array", "items": STR},
                                                 "chunking": {"type": "object"}}},
    "BlocksReceived": {"type": "object", "properties": {"received": INT, "received_bytes": INT}},
    "BatchResults": {"type": "object", "properties": {"results": {"type": "array", "items": {
        "type": "object", "properties": {"ok": {"type": "object"}, "error": {"type": "object"}}}}}},
    "Tree": {"type": "object", "properties": {"node_id": INT, "truncated": {"type": "boolean"}, "items": {
        "type": "array", "items": {"type": "object", "properties": {
            "id": INT, "parent_id": INT, "kind": {"enum": ["file", "folder"]}, "name": STR, "size": NULL_INT,
            "sha256": NULL_STR}}}}},
    "ChangeCursor": {"type": "object", "properties": {"cursor": STR}, "required": ["cursor"]},
    "ChangePage": {"type": "object", "required": ["entries", "cursor", "has_more"], "properties": {
        "entries": {"type": "array", "items": {"type": "object", "required": ["kind", "node", "at"], "properties": {
            "kind": {"enum": ["create", "version", "move", "delete", "restore", "purge", "share_gained",
                              "share_changed", "share_lost"]},
            "node": {"$ref": "#/components/schemas/Node"}, "old_parent_id": NULL_INT, "old_name": STR,
            "at": STR}}},
        "cursor": STR, "has_more": {"type": "boolean"}}},
    "ChangeWait": {"type": "object", "properties": {"changes": {"type": "boolean"}}, "required": ["changes"]},
    "BlockMap": {"type": "object", "properties": {"node_id": INT, "version_id": INT, "size": INT, "sha256": STR,
                                                  "blocks": {"type": "array", "items": {"type": "array"}}}},
}


def document() -> dict:
    return {
        "openapi": "3.1.0",
        "info": {"title": "blockdrive", "version": "1",
                 "description": "A self-hostable file drive on a deduplicating block store. Every error is "
                                "RFC 9457 problem+json with a stable type https://blockdrive.dev/problems/<code>."},
        "paths": _annotate(paths()),
        "components": {"schemas": {**SCHEMAS, **request_schemas(), **response_schemas()},
                       "responses": {"Problem": {"description": "A problem", **PROBLEM_CONTENT}},
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}],
    }


@bp.get("/openapi.json")
def openapi_json():
    return jsonify(document())


def docs_html(doc: dict) -> str:
    """The API reference as one self-contained page, rendered from the OpenAPI document on the
    server: no script and nothing fetched from elsewhere, so it works on an offline install."""
    from html import escape
    rows = []
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method == "parameters" or not isinstance(op, dict):
                continue
            codes = ", ".join(str(c) for c in op.get("responses", {}))
            auth = "" if op.get("security") == [] else " &#128274;"
            rows.append(f"<tr><td><code>{method.upper()}</code></td><td><code>{escape(path)}</code>{auth}</td>"
                        f"<td>{escape(op.get('summary', ''))}</td><td>{codes}</td></tr>")
    return ("<!doctype html><html><head><meta charset='utf-8'><title>blockdrive API</title><style>"
            "body{font:14px system-ui,sans-serif;margin:2em}table{border-collapse:collapse}"
            "td,th{border-bottom:1px solid #ddd;padding:4px 10px;text-align:left}</style></head><body>"
            f"<h1>{escape(doc['info']['title'])} {escape(doc['info']['version'])}</h1>"
            "<p>Machine-readable: <a href='/api/v1/openapi.json'>openapi.json</a>. "
            "&#128274; needs <code>Authorization: Bearer &lt;token&gt;</code>. Errors are "
            "<code>application/problem+json</code>.</p><table><tr><th></th><th>path</th><th>what</th>"
            "<th>responses</th></tr>" + "".join(rows) + "</table></body></html>")


@bp.get("/docs")
def docs():
    return Response(docs_html(document()), mimetype="text/html")
