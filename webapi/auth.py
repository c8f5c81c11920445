"""Bearer-token authentication."""

from __future__ import annotations

import functools

from flask import current_app, g, request

from storage.errors import Unauthorized


def current_user():
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("send an API token: Authorization: Bearer <token>")
    return current_app.extensions["drive"].user_for_token(token.strip())


def login_required(view):
    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        g.user = current_user()
        return view(*args, **kwargs)
    return wrapped
