"""HTTP Basic authentication for WebDAV and the Nextcloud dialect: the account's email with an
app password (an API token) or the account password, throttled like the API's sign-in
(:meth:`storage.accounts.Accounts.basic`)."""

from __future__ import annotations

import base64
import binascii
import functools

from flask import g, request

from storage.errors import Unauthorized

from ..auth import accounts, client_address

REALM = "blockdrive"
CHALLENGE = f'Basic realm="{REALM}", charset="UTF-8"'
# The doors that sign in with Basic credentials: their 401s carry the Basic challenge
BASIC_PREFIXES = ("/dav", "/remote.php/", "/ocs/")


def credentials(header: str | None) -> tuple[str, str]:
    """(email, secret) from an ``Authorization: Basic`` header; Unauthorized otherwise."""
    scheme, _, value = (header or "").partition(" ")
    if scheme.lower() != "basic" or not value.strip():
        raise Unauthorized("sign in with your email and an app password (HTTP Basic)")
    try:
        raw = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise Unauthorized("the Basic credentials are not valid base64 of UTF-8 text") from None
    email, sep, secret = raw.partition(":")
    if not sep or not email or not secret:
        raise Unauthorized("the Basic credentials need an email and a password")
    return email, secret


def basic_user():
    """The user of the current request's Basic credentials (in a Flask request context)."""
    email, secret = credentials(request.headers.get("Authorization"))
    return accounts().basic(email, secret, client_address())


def basic_required(view):
    """A Flask view decorator: ``g.user`` from Basic credentials, or 401 with the challenge."""
    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        g.user = basic_user()
        return view(*args, **kwargs)
    return wrapped
