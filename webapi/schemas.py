"""Request bodies as typed objects, declared once: each model below validates a JSON body
(:func:`parse`) and writes its schema into the OpenAPI document (:func:`request_schemas`).

The schema library is pydantic v2, used directly. It reads JSON bodies into typed objects in
compiled code, and emits JSON Schema 2020-12, which OpenAPI 3.1 takes as is. The frameworks
built on it (spectree, flask-openapi3) and flask-smorest (marshmallow + apispec) would each
replace the route decorators, answer a bad body in their own error format (422 and their own
fields, where blockdrive answers 400 problem+json) and build their own document, losing the
hand-written operation ids, links and tus headers the fuzz tests follow; marshmallow would
also be a second schema dialect beside the pydantic the stack already carries.

What a model checks is what the views checked before it: field types (strict: no "5" for 5,
no true for 1), integers within 0..2^63-1, no unknown or read-only field, required fields.
The rest of a field's declared schema (name pattern, enums, lengths) documents the rule that
``storage`` enforces and reports as a domain error with its own message; it is not checked
twice. The name and path patterns are built from :mod:`storage.names`' own rule sets.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, WithJsonSchema

from storage.errors import InvalidInput
from storage.names import (MAX_NAME_BYTES, RESERVED_NAMES, SEPARATORS, invisible_ranges,
                           whitespace_ranges)
from storage.sharing import MAX_LINK_SECONDS
from storage.wire import MAX_BATCH_FILES, MAX_BATCH_FOLDERS, MAX_HASHES

from .util import MAX_ID, json_body



def _escape(cp: int) -> str:
    # JSON Schema's regex dialect (ECMA-262) has no \U escape: a code point past the BMP
    # goes in as itself
    return f"\\u{cp:04x}" if cp <= 0xFFFF else chr(cp)


def _char_class(ranges) -> str:
    """Ranges of code points as the inside of a regex character class. Surrogates are left
    out: no regex engine of JSON Schema's takes them in a class, and UTF-8 cannot carry them
    (the server refuses them all the same)."""
    return "".join(_escape(lo) if lo == hi else f"{_escape(lo)}-{_escape(hi)}"
                   for lo, hi in ranges if not 0xD800 <= lo <= 0xDFFF)


# storage.names.validate_name as a pattern: not a reserved name, no separator or invisible
# character, no whitespace at either end. Its byte limit is only bounded here (maxLength
# counts characters).
_WS = _char_class(whitespace_ranges())
_CHAR = "".join("\\" + c if c in "\\]^-" else c for c in SEPARATORS) + _char_class(invisible_ranges())
_RESERVED = "|".join(n.replace(".", r"\.") for n in sorted(RESERVED_NAMES, key=len, reverse=True))
_SEGMENT = rf"(?!(?:{_RESERVED})(?:/|$))[^{_WS}{_CHAR}](?:[^{_CHAR}]*[^{_WS}{_CHAR}])?"
NAME_PATTERN = rf"^{_SEGMENT}$"
PATH_PATTERN = rf"^/+(?:{_SEGMENT}(?:/+{_SEGMENT})*/*)?$"  # storage.names.split_path
# storage.accounts.normalize_email: whitespace around is trimmed, none inside, a domain with a dot
EMAIL_PATTERN = rf"^[{_WS}]*[^{_WS}]+@[^{_WS}@]*\.[^{_WS}@]*[{_WS}]*$"

NAME_SCHEMA = {"type": "string", "minLength": 1, "maxLength": MAX_NAME_BYTES, "pattern": NAME_PATTERN}
SHA256 = {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"}
ID = {"type": "integer", "minimum": 1, "maximum": MAX_ID}
SIZE = {"type": "integer", "minimum": 0, "maximum": MAX_ID}
HASH_LIST = {"type": "array", "maxItems": MAX_HASHES, "items": SHA256}

_Int = Annotated[int, Field(ge=0, le=MAX_ID)]
Id = Annotated[_Int | None, WithJsonSchema(ID)]
Size = Annotated[_Int | None, WithJsonSchema(SIZE)]
Name = Annotated[str | None, WithJsonSchema(NAME_SCHEMA)]
Text = Annotated[str | None, WithJsonSchema({"type": "string"})]
Email = Annotated[str | None, WithJsonSchema({"type": "string", "maxLength": 320, "pattern": EMAIL_PATTERN})]
Hashes = Annotated[list | None, WithJsonSchema(HASH_LIST)]
Sha256 = Annotated[str | None, WithJsonSchema(SHA256)]


class Body(BaseModel):
    """A JSON object body. Fields are declared ``X | None = None`` for pydantic; a null sent
    for any field is refused by :func:`parse` (no field of ours takes one), and a field
    without a default is required."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Credentials(Body):
    email: Text
    password: Text
    name: Annotated[str | None, WithJsonSchema({"type": "string", "maxLength": 100})] = None


class PasswordChange(Body):
    old_password: Text
    new_password: Annotated[str | None, WithJsonSchema({"type": "string", "minLength": 8})]


class NewFolder(Body):
    name: Name
    kind: Annotated[str | None, WithJsonSchema({"enum": ["folder"]})] = None


class NodePatch(Body):
    name: Name = None
    parent_id: Id = None


class Copy(Body):
    parent_id: Id
    name: Name = None


class PlannedFile(Body):
    """A file the client means to commit after sending its blocks (see :mod:`webapi.blocks`)."""

    size: Size
    blocks: Size
    parent_id: Id = None


class Commit(Body):
    blocks: Hashes
    size: Size
    sha256: Sha256


class Grant(Body):
    email: Email
    role: Annotated[str | None, WithJsonSchema({"enum": ["viewer", "editor"]})]


class LinkRequest(Body):
    role: Annotated[str | None, WithJsonSchema({"enum": ["viewer", "uploader"]})] = None
    expires_in: Annotated[_Int | None, WithJsonSchema(
        {"type": "integer", "minimum": 1, "maximum": MAX_LINK_SECONDS})] = None
    password: Annotated[str | None, WithJsonSchema({"type": "string", "minLength": 1, "maxLength": 1024})] = None


class FileEntry(Body):
    """One file of a batch commit; checked entry by entry (see :mod:`webapi.batch`)."""

    parent_id: Id
    name: Name
    blocks: Hashes
    size: Size
    sha256: Sha256
    if_match: Annotated[str | int | None, WithJsonSchema({"type": ["string", "integer"]})] = None
    if_none_match: Annotated[bool | None, WithJsonSchema({"type": "boolean"})] = None


class FolderEntry(Body):
    """One folder of a batch of folders."""

    parent_id: Id
    name: Name


def clean_schema(schema: dict) -> dict:
    """A model's JSON Schema as the document shows it: without pydantic's titles, the
    model's docstring (written for Python readers) and ``null`` defaults (a field left out
    is not a null sent)."""
    schema.pop("title", None)
    schema.pop("description", None)
    for prop in schema.get("properties", {}).values():
        prop.pop("title", None)
        if prop.get("default", 0) is None:
            del prop["default"]
    return schema


def _schema(model: type[BaseModel]) -> dict:
    return clean_schema({"required": [], **model.model_json_schema()})


class HashList(Body):
    hashes: Hashes
    files: Annotated[list | None, WithJsonSchema(
        {"type": "array", "maxItems": MAX_HASHES, "items": _schema(PlannedFile)})] = None


class BatchCommit(Body):
    files: Annotated[list | None, WithJsonSchema(
        {"type": "array", "maxItems": MAX_BATCH_FILES, "items": _schema(FileEntry)})]


class BatchFolders(Body):
    folders: Annotated[list | None, WithJsonSchema(
        {"type": "array", "maxItems": MAX_BATCH_FOLDERS, "items": _schema(FolderEntry)})]


REQUESTS: tuple[type[Body], ...] = (Credentials, PasswordChange, NewFolder, NodePatch, Copy, HashList,
                                    Commit, Grant, LinkRequest, BatchCommit, BatchFolders)


def request_schemas() -> dict[str, dict]:
    """The request bodies' schemas for the OpenAPI document's components, by name."""
    names = {HashList: "Hashes"}  # the document's name, older than the model's
    return {names.get(m, m.__name__): _schema(m) for m in REQUESTS}


M = TypeVar("M", bound=Body)


def refusal(model: type[Body], data: dict, exc: ValidationError | None) -> InvalidInput | None:
    """Why ``data`` is not a ``model``, as the first problem in the order the fields were
    sent (then the first required field missing); None if it is one."""
    errors = {e["loc"][0]: e["type"] for e in (exc.errors() if exc else ()) if e["loc"]}
    fields = model.model_fields
    for key, value in data.items():
        if key not in fields:
            return InvalidInput(f"unknown or read-only field {key!r}", field=key)
        if value is None or key in errors:
            if errors.get(key) in ("greater_than_equal", "less_than_equal"):
                return InvalidInput(f"field {key!r} is out of range", field=key)
            return InvalidInput(f"field {key!r} has the wrong type", field=key)
    for key, field in fields.items():
        if field.is_required() and key not in data:
            return InvalidInput(f"field {key!r} is required", field=key)
    return None


def validate(model: type[M], data: Any) -> M:
    """``data`` (a decoded JSON value) as a ``model``, or InvalidInput saying what is wrong."""
    if not isinstance(data, dict):
        raise InvalidInput("the body must be a JSON object")
    try:
        out, exc = model.model_validate(data), None
    except ValidationError as err:
        out, exc = None, err
    problem = refusal(model, data, exc)
    if problem is not None:
        raise problem
    if out is None:  # not reached: every pydantic error names a field refusal() reports
        raise InvalidInput("the body does not match its schema")
    return out


def parse(model: type[M]) -> M:
    """The request's JSON body as a ``model``: 400 (InvalidInput) for anything else."""
    return validate(model, json_body())
