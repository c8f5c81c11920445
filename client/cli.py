"""Client commands of the ``blockdrive`` CLI: they talk to a blockdrive server over HTTP.

The server-side admin commands (``put``, ``get``, ``ls``, ``mkdir`` with ``--user``, direct
database access) keep their names; the client commands sit beside them:

    blockdrive login [URL] [--email EMAIL]            store a token (0600) for the commands below
    blockdrive logout                                  revoke the stored token and forget it
    blockdrive tokens list | revoke ID                 your tokens and admin sessions; revoke one
    blockdrive push LOCAL /remote/path                upload a file, sending only changed blocks
    blockdrive pull /remote/path LOCAL [--version ID] download, fetching only blocks LOCAL lacks
    blockdrive sync LOCAL_DIR /remote/dir             one-way mirror: new, changed, renamed, deleted (on the
                                                      server only what it uploaded or pulled, unchanged since)
    blockdrive bisync LOCAL_DIR /remote/dir [--watch] two-way sync (conflicts keep both copies)
    blockdrive remote ls [/path]                      list a remote folder (``ls`` is the admin one)
    blockdrive remote mkdir /path                     create a remote folder and its parents
    blockdrive mv /from /to                           rename or move
    blockdrive rm /path                               move to the trash
    blockdrive versions /path                         a file's versions, newest first
    blockdrive restore /path --version ID             make an old version current again
    blockdrive restore --trash /path                  the same as ``trash restore /path``
    blockdrive trash ls                               what the trash holds, by the path each entry had
    blockdrive trash restore /path                    bring back what was deleted at exactly that path
    blockdrive trash purge /path|ID | --all           delete it for good (``list``/``empty`` still work)
    blockdrive shared                                 folders and files others shared with you
    blockdrive account                                quota and what holds it
    blockdrive share /path EMAIL --role viewer|editor
    blockdrive link /path [--expires 7d] [--password]

Remote paths start at your own root; ``/Shared with me/NAME/…`` reaches what another user
shared with you as NAME, in every command that takes a remote path.

Server and token: ``BLOCKDRIVE_URL`` and ``BLOCKDRIVE_TOKEN``, else the file ``blockdrive
login`` wrote (``$XDG_CONFIG_HOME/blockdrive/credentials.json``, default ``~/.config``).
Every command takes ``--json`` (one JSON document on stdout) and ``-q`` (no progress bar;
bars are drawn on stderr only when it is a terminal).

Exit codes: 0 done; 1 error (for sync: some file was refused or skipped); 2 usage; 4 conflict (the server's copy changed: nothing was
overwritten); 5 server unreachable after retries; 6 not signed in / token refused; 7 not found.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import signal
import sys
import threading
from pathlib import Path

from .api import Api, AuthError, ClientError, ConflictError, normalize_url
from .sync import Client, Index, default_index_path, human_size, split_remote
from .sync.client import SHARED, shared_parts
from .sync.mirror import special_kind
from .trash import match, pick, trash_entries

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_CONFLICT = 0, 1, 2, 4


def credentials_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "blockdrive" / "credentials.json"


def save_credentials(url: str, token: str) -> Path:
    path = credentials_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"url": url, "token": token}, f)
    os.chmod(tmp, 0o600)  # in case it existed with wider rights
    os.replace(tmp, path)
    return path


def load_credentials() -> tuple[str, str]:
    url, token = os.environ.get("BLOCKDRIVE_URL"), os.environ.get("BLOCKDRIVE_TOKEN")
    if not (url and token):
        try:
            saved = json.loads(credentials_path().read_text())
        except (OSError, ValueError):
            saved = {}
        url, token = url or saved.get("url"), token or saved.get("token")
    if not url or not token:
        raise AuthError("not signed in: run `blockdrive login https://your.server --email you@example.com` "
                        "or set BLOCKDRIVE_URL and BLOCKDRIVE_TOKEN")
    return server_url(url), token


def server_url(url: str) -> str:
    """``url`` with a scheme, saying so on stderr when https:// was assumed."""
    url, note = normalize_url(url)
    if note:
        print(f"blockdrive: {note}", file=sys.stderr)
    return url


def _client(args) -> Client:
    url, token = load_credentials()
    show = not (args.json or args.quiet) and sys.stderr.isatty()
    return Client(Api(url, token, retries=args.retries), Index(default_index_path()), jobs=args.jobs, progress=show)


def _out(args, data: dict, text: str) -> None:
    if args.json:
        print(json.dumps(data, indent=2, default=str))
    elif text:
        print(text)


def parse_duration(text: str) -> int:
    """``7d``, ``12h``, ``30m``, ``90s`` or plain seconds -> seconds."""
    m = re.fullmatch(r"\s*(\d+)\s*([smhdw]?)\s*", text or "")
    if not m or int(m[1]) <= 0:
        raise ClientError(f"not a duration: {text!r} (examples: 7d, 12h, 30m)")
    return int(m[1]) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m[2]]


def _summary(stats) -> str:
    return (f"sent {human_size(stats.bytes_sent)} in {stats.blocks_sent} block(s), "
            f"skipped {human_size(stats.bytes_skipped)}")


# ---- commands ------------------------------------------------------------------------

def cmd_login(args) -> int:
    url = args.url or args.server or os.environ.get("BLOCKDRIVE_URL")
    if not url:
        raise ClientError("give the server's address: blockdrive login https://drive.example.com")
    url = server_url(url)
    email = args.email or input("email: ")
    password = os.environ.get("BLOCKDRIVE_PASSWORD") or getpass.getpass("password: ")
    token = Api(url, retries=args.retries).login(email, password)
    path = save_credentials(url, token)
    _out(args, {"url": url, "credentials": str(path)}, f"signed in to {url}; token stored in {path}")
    return EXIT_OK


def cmd_logout(args) -> int:
    url, token = load_credentials()
    Api(url, token, retries=args.retries).logout()
    path = credentials_path()
    saved = False
    if path.exists():
        try:
            with open(path) as f:
                saved = json.load(f).get("token") == token
        except (OSError, ValueError):
            saved = False
    if saved:  # the token came from the file, not from $BLOCKDRIVE_TOKEN: forget it too
        path.unlink()
    _out(args, {"url": url, "forgotten": str(path) if saved else None},
         f"signed out of {url}" + (f"; removed {path}" if saved else ""))
    return EXIT_OK


def cmd_tokens_list(args) -> int:
    url, token = load_credentials()
    items = Api(url, token, retries=args.retries).tokens()
    lines = [f"{t['id']:>6}  {t['kind']:<7}  {t['name'] or '-':<16}  created {t['created_at']}  "
             f"used {t['last_used_at'] or 'never'}  expires {t['expires_at'] or 'never'}"
             + ("  (this one)" if t["current"] else "") for t in items]
    _out(args, {"items": items}, "\n".join(lines) if lines else "no tokens")
    return EXIT_OK


def cmd_tokens_revoke(args) -> int:
    url, token = load_credentials()
    Api(url, token, retries=args.retries).revoke_token(args.id)
    _out(args, {"revoked": args.id}, f"token {args.id} revoked")
    return EXIT_OK


def cmd_push(args) -> int:
    kind = special_kind(args.local) if os.path.lexists(args.local) else None
    if kind:
        raise ClientError(f"skipped {args.local}: {kind}")
    c = _client(args)
    stats = c.push(args.local, args.remote, force=args.force, checksum=args.checksum)
    state = "unchanged" if stats.unchanged else "pushed"
    _out(args, {"status": state, **stats.as_dict()}, f"{state} {args.local} -> {args.remote}: {_summary(stats)}")
    return EXIT_OK


def cmd_pull(args) -> int:
    c = _client(args)
    stats = c.pull(args.remote, args.local, checksum=args.checksum, force=args.force, version=args.version)
    state = "unchanged" if stats.unchanged else "pulled"
    if args.version is not None:
        state += f" version {args.version} of"
    _out(args, {"status": state, **stats.as_dict()},
         f"{state} {args.remote} -> {args.local}: fetched {human_size(stats.bytes_received)}, "
         f"reused {human_size(stats.bytes_skipped)} from the local copy")
    return EXIT_OK


def cmd_sync(args) -> int:
    c = _client(args)
    plan, stats = c.sync(args.local, args.remote, force=args.force, checksum=args.checksum, dry_run=args.dry_run)
    data = {"dry_run": args.dry_run, **stats.as_dict()}
    if args.dry_run:
        data["plan"] = {"mkdirs": plan.mkdirs, "moves": [[a, b] for a, b, _ in plan.moves],
                        "uploads": [r for r, _ in plan.uploads], "deletes": [r for r, _ in plan.deletes],
                        "replace": [r for r, _ in plan.replace], "kept": [k["path"] for k in plan.kept]}
        text = (f"would create {len(plan.mkdirs)} folder(s), upload {len(plan.uploads)} file(s), move "
                f"{len(plan.moves)}, delete {len(plan.deletes) + len(plan.replace)}, keep {len(plan.kept)} on the "
                f"server; {len(plan.conflicts)} conflict(s)")
    else:
        text = (f"synced {args.local} -> {args.remote}: {len(stats.uploaded)} uploaded, {len(stats.moved)} moved, "
                f"{len(stats.deleted)} deleted, {len(stats.kept)} kept on the server, {len(stats.unchanged)} "
                f"unchanged; {_summary(stats)}")
    for cf in stats.conflicts:
        print(f"blockdrive: conflict: {cf['path']}: " + (cf.get("error") or
              f"changed on the server since the last sync (last synced {cf.get('last_synced')}, server has "
              f"{cf.get('remote_sha256')}, local {cf.get('local_sha256') or 'deleted'}); left as it is"),
              file=sys.stderr)
    for k in stats.kept:
        print(f"blockdrive: warning: {kept_line(k)}", file=sys.stderr)
    for err in stats.errors:
        print(f"blockdrive: error: {err['path']}: {err['error']}", file=sys.stderr)
    for sk in stats.skipped:
        print(f"blockdrive: skipped: {sk['path']}: {sk['reason']}", file=sys.stderr)
    if stats.skipped:
        print(f"blockdrive: {len(stats.skipped)} file(s) skipped; their copies on the server were left as they are",
              file=sys.stderr)
    _out(args, data, text)
    return EXIT_ERROR if stats.errors or stats.skipped else EXIT_CONFLICT if stats.conflicts else EXIT_OK


def cmd_bisync(args) -> int:
    from .bisync import Bisync

    c = _client(args)
    say = (lambda line: None) if args.json else (lambda line: print(line, flush=True))
    b = Bisync(c, args.local, args.remote, state=args.state, device=args.device, say=say)
    stop = threading.Event()

    def on_signal(signum, frame):
        if args.watch and not stop.is_set():
            stop.set()  # the round under way ends, then the watch
        else:
            raise KeyboardInterrupt
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    if args.watch:
        b.watch(stop)
        return EXIT_OK
    report = b.run(dry_run=args.dry_run)
    _out(args, {"dry_run": args.dry_run, "agreed": report.agreed, **{k: getattr(report, k) for k in
                ("up", "down", "moved", "deleted", "conflicts", "kept")}}, report.summary())
    return EXIT_OK if report.agreed or args.dry_run else EXIT_ERROR


def kept_line(k: dict) -> str:
    """The warning for a server node a sync did not remove although it is absent here."""
    what = "folder" if k.get("kind") == "folder" else "file"
    path = k["remote"]
    return (f"kept on the server: {path} ({k['reason']}; sync removes only what it uploaded or pulled here, "
            f"unchanged since: delete it on the server (`blockdrive rm {path}`) if it should go, or use "
            f"`blockdrive bisync` to bring the {what} here)")


def _node(c: Client, path: str) -> dict:
    return c.resolve("/" + path.strip("/"))


def cmd_ls(args) -> int:
    c = _client(args)
    if shared_parts(args.path) == [] and c.lookup_own(args.path) is None:
        items = c.api.shared_with_me()
    else:
        node = _node(c, args.path)
        items = list(c.api.children(node["id"])) if node["kind"] == "folder" else [node]
    lines = [f"{'d' if it['kind'] == 'folder' else '-'} {it['size'] if it['size'] is not None else '-':>12} "
             f"{(it.get('updated_at') or '')[:19]} {it['name']}{'/' if it['kind'] == 'folder' else ''}" for it in items]
    _out(args, {"items": items}, "\n".join(lines))
    return EXIT_OK


def cmd_mkdir(args) -> int:
    c = _client(args)
    node = c.ensure_folder("/" + args.path.strip("/"))
    _out(args, node, f"{args.path}: folder {node['id']}")
    return EXIT_OK


def cmd_mv(args) -> int:
    c = _client(args)
    src = _node(c, args.src)
    dst = c.lookup("/" + args.dst.strip("/")) if args.dst.strip("/") else _node(c, "/")
    if dst is not None and dst["kind"] == "folder":
        res = c.api.move(src["id"], parent_id=dst["id"])
    elif dst is not None:
        raise ClientError(f"{args.dst} exists; remove it first")
    else:
        parent_path, name = split_remote(args.dst)
        parent = _node(c, parent_path)
        res = c.api.move(src["id"], name=name, parent_id=parent["id"] if parent["id"] != src["parent_id"] else None)
    _out(args, res, f"moved {args.src} -> {args.dst}")
    return EXIT_OK


def cmd_rm(args) -> int:
    c = _client(args)
    res = c.api.delete(_node(c, args.path)["id"])
    _out(args, res, f"{args.path} moved to the trash (node {res['id']}; `blockdrive restore --trash` brings it back)")
    return EXIT_OK


def cmd_versions(args) -> int:
    c = _client(args)
    items = c.api.versions(_node(c, args.path)["id"])
    lines = [f"{v['id']:>8} {'*' if v['current'] else ' '} {v['size']:>12} {v['created_at'][:19]} {v['sha256']}"
             for v in items]
    _out(args, {"items": items}, "\n".join(lines))
    return EXIT_OK


def cmd_shared(args) -> int:
    c = _client(args)
    items = c.api.shared_with_me()
    lines = [f"{'d' if n['kind'] == 'folder' else '-'} {n.get('owner') or '-':<28} "
             f"{_role(n):<7} /{SHARED}/{n['name']}" for n in items]
    _out(args, {"items": items}, "\n".join(lines) or "nothing is shared with you")
    return EXIT_OK


def _role(n: dict) -> str:
    p = n.get("permissions") or {}
    return "owner" if p.get("share") else "editor" if p.get("write") else "viewer"


def restore_from_trash(args, c: Client) -> int:
    """Bring back the trash entry deleted at exactly ``args.path`` (the newest, if several)."""
    entries = trash_entries(c)
    hits = [pick(entries, args.path)] if args.path.isdigit() else match(entries, args.path)
    res = c.api.restore(hits[0]["id"])
    where = c.path_of(res["id"]) or res["name"]
    text = f"restored {hits[0]['path']} (node {res['id']})" + (f" as {where}" if where != hits[0]["path"] else "")
    if len(hits) > 1:
        text += (f"; it was the newest of {len(hits)} entries deleted at that path (deleted "
                 f"{(hits[0].get('deleted_at') or '')[:19]}); the others: "
                 f"{', '.join(str(h['id']) for h in hits[1:])} (`blockdrive trash purge ID`)")
    _out(args, {**res, "path": where, "candidates": [h["id"] for h in hits]}, text)
    return EXIT_OK


def cmd_restore(args) -> int:
    c = _client(args)
    if args.trash:
        return restore_from_trash(args, c)
    if args.version is None:
        raise ClientError("give --version ID (see `blockdrive versions PATH`) or --trash")
    node = _node(c, args.path)
    res = c.api.restore_version(node["id"], args.version)
    _out(args, res, f"{args.path}: version {args.version} is current again (as version {res['version_id']})")
    return EXIT_OK


def cmd_account(args) -> int:
    c = _client(args)
    a = c.api.account()
    u = a.get("usage", {})
    rows = [("current files", u.get("current_bytes", 0)), ("old versions", u.get("old_versions_bytes", 0)),
            ("trash", u.get("trash_bytes", 0)), ("pending uploads", u.get("pending_bytes", 0))]
    lines = [f"{a['email']} ({a['plan']}): {human_size(a['used_bytes'] + a.get('pending_bytes', 0))} of "
             f"{human_size(a['quota_bytes'])}"] + [f"  {k:<16}{human_size(v):>12}" for k, v in rows]
    _out(args, a, "\n".join(lines))
    return EXIT_OK


def cmd_trash(args) -> int:
    c = _client(args)
    if args.action in ("list", "ls"):
        items = trash_entries(c)
        lines = [f"{n['id']:>8} {'d' if n['kind'] == 'folder' else '-'} "
                 f"{n['size'] if n['size'] is not None else '-':>12} {(n.get('deleted_at') or '')[:19]} "
                 f"{n['path'] or '(folder gone) ' + n['name']}" for n in items]
        _out(args, {"items": items}, "\n".join(lines) or "the trash is empty")
        return EXIT_OK
    if args.action == "empty" or (args.action == "purge" and args.all):
        if args.item:
            raise ClientError("give a path or --all, not both")
        res = c.api.empty_trash()
        _out(args, res, f"purged {res['purged']} trash entries ({res['versions']} versions)")
        return EXIT_OK
    if not args.item:
        raise ClientError(f"give the trash entry to {args.action}: the path it had, or its id (see "
                          f"`blockdrive trash ls`)" + (", or --all" if args.action == "purge" else ""))
    if args.action == "restore":
        args.path = args.item
        return restore_from_trash(args, c)
    hit = pick(trash_entries(c), args.item)
    res = c.api.purge(hit["id"])
    _out(args, {**res, "id": hit["id"], "path": hit["path"]},
         f"purged {hit['path'] or hit['name']} (node {hit['id']}) for good")
    return EXIT_OK


def cmd_share(args) -> int:
    c = _client(args)
    res = c.api.share(_node(c, args.path)["id"], args.email, args.role)
    _out(args, res, f"{args.path} shared with {args.email} as {args.role}")
    return EXIT_OK


def cmd_link(args) -> int:
    c = _client(args)
    password = None
    if args.password:
        password = os.environ.get("BLOCKDRIVE_LINK_PASSWORD") or getpass.getpass("link password: ")
    res = c.api.link(_node(c, args.path)["id"], parse_duration(args.expires) if args.expires else None, password)
    _out(args, res, res["url"])
    return EXIT_OK


def run(fn):
    """Wrap a command: client errors become a message on stderr and their exit code."""
    def wrapped(args) -> int:
        try:
            return fn(args)
        except ClientError as exc:
            print(f"blockdrive: {'conflict' if isinstance(exc, ConflictError) else 'error'}: {exc}", file=sys.stderr)
            if getattr(args, "json", False):
                print(json.dumps({"error": str(exc), "exit_code": exc.exit_code, "status": exc.status}))
            return exc.exit_code
        except OSError as exc:
            print(f"blockdrive: error: {exc}", file=sys.stderr)
            return EXIT_ERROR
    return wrapped


def register_cli(sub) -> None:
    def add(name, fn, help_, parser=sub):
        sp = parser.add_parser(name, help=help_, description=help_)
        sp.set_defaults(fn=run(fn))
        sp.add_argument("--json", action="store_true", help="print one JSON document")
        sp.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
        sp.add_argument("--retries", type=int, default=5, help="retries per request on network errors (default 5)")
        sp.add_argument("--jobs", type=int, default=4, help="requests in flight (default 4)")
        return sp

    sp = add("login", cmd_login, "sign in to a blockdrive server and store the token")
    sp.add_argument("server", nargs="?", help="the server, e.g. https://drive.example.com (no scheme: https://)")
    sp.add_argument("--url", help="the same as SERVER (default: $BLOCKDRIVE_URL)")
    sp.add_argument("--email")
    add("logout", cmd_logout, "revoke the stored token on the server and forget it")
    tp = sub.add_parser("tokens", help="list or revoke your API tokens and admin sessions",
                        description="list or revoke your API tokens and admin sessions")
    tsub = tp.add_subparsers(dest="tokens_command", required=True, metavar="ACTION")
    add("list", cmd_tokens_list, "list your tokens (never their secrets)", tsub)
    sp = add("revoke", cmd_tokens_revoke, "revoke one of your tokens by id", tsub)
    sp.add_argument("id", type=int)
    sp = add("push", cmd_push, "upload a local file, sending only the blocks the server lacks")
    sp.add_argument("local")
    sp.add_argument("remote", help="/remote/path (a folder, or ending in /: keeps the file's name)")
    sp.add_argument("--force", action="store_true", help="push even if the server's copy changed since your last sync")
    sp.add_argument("--checksum", action="store_true", help="rehash the file even if its size and mtime are unchanged")
    sp = add("pull", cmd_pull, "download a remote file, fetching only blocks the local copy lacks")
    sp.add_argument("remote")
    sp.add_argument("local")
    sp.add_argument("--force", action="store_true", help="replace a local copy that has unpushed changes")
    sp.add_argument("--checksum", action="store_true")
    sp.add_argument("--version", type=int, metavar="ID", help="an older version (its id in `blockdrive versions`)")
    sp = add("sync", cmd_sync, "mirror a local folder to a remote folder, one way")
    sp.add_argument("local")
    sp.add_argument("remote")
    sp.add_argument("--dry-run", action="store_true", help="print the plan; change nothing")
    sp.add_argument("--force", action="store_true", help="overwrite remote files changed since the last sync")
    sp.add_argument("--checksum", action="store_true")
    sp = add("bisync", cmd_bisync, "two-way sync of a local folder and a remote folder")
    sp.add_argument("local")
    sp.add_argument("remote")
    sp.add_argument("--watch", action="store_true", help="keep syncing: a round on every local or remote change")
    sp.add_argument("--dry-run", action="store_true", help="print what a run would do; change nothing")
    sp.add_argument("--state", help="the state database (default: one per pair under $XDG_CACHE_HOME/blockdrive)")
    sp.add_argument("--device", help="this computer's name in conflicted copies (default: the host name)")
    rp = sub.add_parser("remote", help="list and create remote folders over HTTP",
                        description="list and create remote folders over HTTP")
    rsub = rp.add_subparsers(dest="remote_command", required=True, metavar="ACTION")
    sp = add("ls", cmd_ls, "list a remote folder", rsub)
    sp.add_argument("path", nargs="?", default="/")
    sp = add("mkdir", cmd_mkdir, "create a remote folder and its parents", rsub)
    sp.add_argument("path")
    sp = add("mv", cmd_mv, "rename or move a remote file or folder")
    sp.add_argument("src")
    sp.add_argument("dst")
    sp = add("rm", cmd_rm, "move a remote file or folder to the trash")
    sp.add_argument("path")
    sp = add("versions", cmd_versions, "list a remote file's versions")
    sp.add_argument("path")
    sp = add("restore", cmd_restore, "restore a version of a file, or a node from the trash")
    sp.add_argument("path")
    sp.add_argument("--version", type=int)
    sp.add_argument("--trash", action="store_true")
    sp = add("trash", cmd_trash, "list the trash, restore an entry by its path, purge one or all for good")
    sp.add_argument("action", choices=["ls", "list", "restore", "purge", "empty"])
    sp.add_argument("item", nargs="?", help="restore, purge: the full path the entry had, or its id")
    sp.add_argument("--all", action="store_true", help="purge: the whole trash")
    add("shared", cmd_shared, f"what others shared with you (reach it as /{SHARED}/NAME/...)")
    add("account", cmd_account, "your quota and what holds it: files, old versions, trash, pending uploads")
    sp = add("share", cmd_share, "share a remote file or folder with another user")
    sp.add_argument("path")
    sp.add_argument("email")
    sp.add_argument("--role", choices=["viewer", "editor"], required=True)
    sp = add("link", cmd_link, "create a public link")
    sp.add_argument("path")
    sp.add_argument("--expires", help="e.g. 7d, 12h, 30m")
    sp.add_argument("--password", action="store_true", help="protect it ($BLOCKDRIVE_LINK_PASSWORD or a prompt)")
