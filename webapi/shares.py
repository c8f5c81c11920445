"""Shares (grants to other users) and public links, managed by a node's owner; a grantee may
leave a share."""

from __future__ import annotations

from flask import Blueprint, current_app, g, jsonify, request

from .auth import login_required
from .schemas import Grant, LinkRequest, parse
from .responses import Granted, Link, NewLink, Share, node_json
from .util import drive, sharing

bp = Blueprint("shares", __name__, url_prefix="/api/v1")


@bp.get("/nodes/<id:node_id>/shares")
@login_required
def list_shares(node_id):
    return jsonify(items=[Share.of(s).dump() for s in sharing().list_shares(g.user.id, node_id)])


@bp.post("/nodes/<id:node_id>/shares")
@login_required
def grant(node_id):
    data = parse(Grant)
    sh, created = sharing().grant(g.user.id, node_id, data.email, data.role)
    return jsonify(Granted.of(sh).dump()), 201 if created else 200


@bp.delete("/nodes/<id:node_id>/shares/<id:user_id>")
@login_required
def revoke(node_id, user_id):
    sharing().revoke(g.user.id, node_id, user_id)
    return "", 204


@bp.delete("/nodes/<id:node_id>/invitations/<id:invitation_id>")
@login_required
def revoke_invitation(node_id, invitation_id):
    sharing().revoke_invitation(g.user.id, node_id, invitation_id)
    return "", 204


@bp.get("/shared-with-me")
@login_required
def shared_with_me():
    # each item names its owner, so a client can tell two shares of the same name apart
    nodes = sharing().shared_with_me(g.user.id)
    owners = {uid: drive().account(uid).email for uid in {n.owner_id for n in nodes}}
    return jsonify(items=[{**node_json(n), "owner": owners[n.owner_id]} for n in nodes])


@bp.delete("/shared-with-me/<id:node_id>")
@login_required
def leave(node_id):
    sharing().leave(g.user.id, node_id)
    return "", 204


def public_base() -> str:
    base = current_app.config["BLOCKDRIVE"]["server"]["public_url"]
    return (base or request.host_url).rstrip("/")


@bp.get("/nodes/<id:node_id>/links")
@login_required
def list_links(node_id):
    return jsonify(items=[Link.of(li).dump() for li in sharing().list_links(g.user.id, node_id)])


@bp.post("/nodes/<id:node_id>/links")
@login_required
def create_link(node_id):
    data = parse(LinkRequest) if request.content_length else LinkRequest()
    li, token = sharing().create_link(g.user.id, node_id, "viewer" if data.role is None else data.role, data.expires_in, data.password)
    resp = jsonify(NewLink.of_new(li, token, f"{public_base()}/s/{token}").dump())
    resp.status_code = 201
    resp.headers["Cache-Control"] = "no-store"
    return resp


@bp.delete("/nodes/<id:node_id>/links/<id:link_id>")
@login_required
def revoke_link(node_id, link_id):
    sharing().revoke_link(g.user.id, node_id, link_id)
    return "", 204
