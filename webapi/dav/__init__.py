"""WebDAV (class 1 and 2) and the Nextcloud dialect, served by the same app as the JSON API:
WsgiDAV's request handling over a provider that calls storage's public API."""
