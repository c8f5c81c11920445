"""WebDAV dead properties in the database, for WsgiDAV: :class:`DbPropertyManager` has the
interface of WsgiDAV's in-memory ``PropertyManager`` over :mod:`storage.davstate`, so what a
client sets with PROPPATCH survives a restart and is seen by every worker.

WsgiDAV names a resource by its ref URL; ours are roots of the id namespace
(``/.ids/1/5/9``), and a property belongs to the node whose id ends it. So a property follows
its node: a move changes nothing stored, and a copy copies from node id to node id. A URL
outside the namespace (a virtual folder) has no properties and takes none.
"""

from __future__ import annotations

from wsgidav import util  # noqa: F401  (first: wsgidav.dav_error imported alone is a circular import)
from wsgidav.dav_error import HTTP_FORBIDDEN, HTTP_INSUFFICIENT_STORAGE, DAVError

from storage import davstate
from storage.errors import LimitExceeded


# environ key: (folder id, the ids among it and its children that have dead properties)
PREFETCHED = "blockdrive.dav.props"


def text(value) -> str:
    """A property value as WsgiDAV hands it in (XML as bytes or str) as text."""
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


class DbPropertyManager:
    """WsgiDAV's property manager interface over :mod:`storage.davstate` on ``drive``'s
    database. ``environ`` arguments are accepted and not used: who may change a resource
    is checked by the provider before WsgiDAV gets here."""

    def __init__(self, drive):
        self.drive = drive

    def __repr__(self):
        return self.__class__.__name__

    def get_properties(self, norm_url, environ=None):
        """The names of the resource's dead properties."""
        node_id = self.node_or_none(norm_url)
        if node_id is None or self.known_without(norm_url, environ):
            return []
        return self.drive.tx(lambda s: davstate.prop_names(s, node_id))

    def get_property(self, norm_url, name, environ=None):
        """The value (XML text) of property ``name``; None if the resource has none."""
        node_id = self.node_or_none(norm_url)
        if node_id is None or self.known_without(norm_url, environ):
            return None
        return self.drive.tx(lambda s: davstate.get_prop(s, node_id, name))

    def write_property(self, norm_url, name, property_value, dry_run=False, environ=None):
        """Set property ``name``; with ``dry_run``, only say whether it could be set. Past
        the bounds of what a property or a node's properties may hold: 507, as RFC 4918
        answers a PROPPATCH the server has no room for."""
        assert norm_url and norm_url.startswith("/")
        assert name
        assert property_value is not None
        node_id = self.node_of(norm_url)
        value = text(property_value)
        try:
            if dry_run:
                davstate.check_prop(name, value)
            else:
                self.drive.tx(lambda s: davstate.set_prop(s, node_id, name, value))
                if environ is not None:
                    environ.pop(PREFETCHED, None)  # what it says may no longer hold
        except LimitExceeded as exc:
            raise DAVError(HTTP_INSUFFICIENT_STORAGE, str(exc)) from None

    def remove_property(self, norm_url, name, dry_run=False, environ=None):
        """Remove property ``name``; removing one the resource does not have is no error."""
        node_id = self.node_of(norm_url)
        if not dry_run:
            self.drive.tx(lambda s: davstate.remove_prop(s, node_id, name))

    def remove_properties(self, norm_url, environ=None):
        """Remove every dead property of the resource."""
        node_id = self.node_or_none(norm_url)
        if node_id is not None:
            self.drive.tx(lambda s: davstate.remove_props(s, node_id))

    def copy_properties(self, src_url, dest_url, environ=None):
        """Make the destination's dead properties a copy of the source's."""
        src, dst = self.node_or_none(src_url), self.node_or_none(dest_url)
        if src is not None and dst is not None:
            self.drive.tx(lambda s: davstate.copy_props(s, src, dst))

    def move_properties(self, src_url, dest_url, with_children, environ=None):
        """Nothing to do: properties belong to the node, which keeps its id when it moves."""

    # ---- listings ----------------------------------------------------------------------

    def prefetch_children(self, environ: dict, folder_id: int) -> None:
        """Before listing folder ``folder_id``: find in one query which of it and its
        children have dead properties, so that for the others (usually all) this request
        asks the database nothing more."""
        environ[PREFETCHED] = (folder_id, self.drive.tx(lambda s: davstate.nodes_with_props(s, folder_id)))

    @staticmethod
    def known_without(norm_url: str, environ: dict | None) -> bool:
        """Whether this request's :meth:`prefetch_children` says the resource has no dead
        properties (it covers the listed folder and the nodes whose parent it is)."""
        seen = (environ or {}).get(PREFETCHED)
        if seen is None:
            return False
        folder_id, with_props = seen
        ids = davstate.root_ids(norm_url)
        return (ids[-1] == folder_id or (len(ids) > 1 and ids[-2] == folder_id)) and ids[-1] not in with_props

    # ---- the id namespace -------------------------------------------------------------

    @staticmethod
    def node_or_none(norm_url: str) -> int | None:
        """The node id ``norm_url`` ends with; None outside the id namespace."""
        try:
            return davstate.node_of(norm_url)
        except ValueError:
            return None

    def node_of(self, norm_url: str) -> int:
        """The node id ``norm_url`` ends with; outside the id namespace, 403 as WsgiDAV
        answers a property it cannot store."""
        node_id = self.node_or_none(norm_url)
        if node_id is None:
            raise DAVError(HTTP_FORBIDDEN, f"{norm_url} cannot hold properties")
        return node_id
