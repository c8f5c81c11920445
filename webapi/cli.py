"""The operator commands of ``blockdrive``: set up, serve and operate a blockdrive server.

They plug into the ``blockdrive`` command (:mod:`client.main`) through the entry-point group
``blockdrive.commands`` (:func:`register_cli`) and need the server's packages.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path

from storage.config import load_config
from storage.errors import BlockdriveError, ConfigError

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_PROBLEMS = 0, 1, 2, 3


def _drive(args, migrate: bool = False):
    from storage.db import check_ready, make_engine, migrate as run_migrations
    from storage.drive import Drive
    cfg = load_config(args.config)
    engine = make_engine(cfg.database_url, pool_size=cfg["database"]["pool_size"])
    if migrate:
        run_migrations(engine)
    else:
        check_ready(engine)
    return Drive(cfg, engine=engine)


@contextmanager
def _progress(total: int | None, desc: str, enabled: bool):
    if not enabled:
        yield lambda n: None
        return
    from tqdm import tqdm
    with tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024,
              file=sys.stderr, leave=False) as bar:
        yield bar.update


def _show_progress(args) -> bool:
    return not getattr(args, "quiet", False) and sys.stderr.isatty()


def _program() -> str:
    """How the user ran us (``.venv/bin/blockdrive`` after ``make run``), to quote it back."""
    prog = sys.argv[0] if sys.argv and sys.argv[0].endswith("blockdrive") else "blockdrive"
    return os.path.relpath(prog) if os.path.isabs(prog) and not prog.startswith("/usr") else prog


def cmd_init(args) -> int:
    from storage.db import make_engine, migrate
    from storage.backends import open_backend
    cfg = load_config(args.config)
    rev = migrate(make_engine(cfg.database_url))
    backend = open_backend(cfg.storage_url, cfg["storage"]["timeout_seconds"])
    next(iter(backend.list("packs")), None)  # proves the backend answers
    from storage.config import mask_url
    print(f"database ready at schema {rev}: {mask_url(cfg.database_url)}")
    print(f"packs stored at: {mask_url(cfg.storage_url)}")
    return EXIT_OK


def _probe_backend(url: str, timeout: float) -> None:
    """List the packs folder once: proves the backend answers."""
    from storage.backends import open_backend
    next(iter(open_backend(url, timeout).list("packs")), None)


def cmd_serve(args) -> int:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from storage.db import check_ready, make_engine
    from storage.config import mask_url
    from .serve import serve
    cfg = load_config(args.config)
    # A clear error now, not on the first request: the schema is current, the backend answers.
    check_ready(make_engine(cfg.database_url))
    # In a child process: a client library's threads (hdfs-native's runtime) do not survive
    # gunicorn's fork of the workers, which then hang on their first storage call.
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as pool:
        pool.submit(_probe_backend, cfg.storage_url, cfg["storage"]["timeout_seconds"]).result()
    host = args.host or cfg["server"]["host"]
    port = args.port or cfg["server"]["port"]
    workers = args.workers or cfg["server"]["workers"]
    print(f"blockdrive listening on http://{host}:{port} ({workers} workers)\n"
          f"  database: {mask_url(cfg.database_url)}\n  packs:    {mask_url(cfg.storage_url)}\n"
          f"  create the first user with:  {_program()} user create you@example.com --password '...'",
          flush=True)
    serve(cfg, host, port, workers)
    return EXIT_OK


def cmd_user_create(args) -> int:
    drive = _drive(args)
    password = args.password or os.environ.get("BLOCKDRIVE_PASSWORD")
    if not password:
        import getpass
        password = getpass.getpass("password: ")
    user, token = drive.create_user(args.email, password, premium=args.premium, admin=args.admin)
    print(f"created user {user.email} (id {user.id}, plan {user.plan}, quota {user.quota_bytes} bytes"
          f"{', admin' if user.is_admin else ''}); API token:")
    print(token)
    return EXIT_OK


def cmd_user_revoke_tokens(args) -> int:
    from storage.accounts import Accounts
    drive = _drive(args)
    user = drive.user_by_email(args.email)
    n = Accounts(drive).revoke_all(user.id)
    print(f"revoked {n} token(s) and session(s) of {user.email}")
    return EXIT_OK


def _user_admin(args):
    """The account operations, and the id of the user ``args.user_ref`` names (email or id)."""
    from storage.useradmin import UserAdmin
    ua = UserAdmin(_drive(args))
    return ua, ua.find(args.user_ref)


def _user_line(u) -> str:
    from .admin.dashboard import fmt_bytes
    return (f"{u.id:>6}  {u.email:<40} {u.plan:<8} {fmt_bytes(u.used_bytes):>11} of {fmt_bytes(u.quota_bytes):<11} "
            f"{u.status}{', admin' if u.is_admin else ''}")


def cmd_user_list(args) -> int:
    from storage.useradmin import UserAdmin
    ua = UserAdmin(_drive(args))
    rows, cursor = ua.list(args.query or "", limit=500)
    while cursor:
        more, cursor = ua.list(args.query or "", cursor=cursor, limit=500)
        rows += more
    if args.json:
        print(json.dumps([u.as_dict() for u in rows]))
    else:
        for u in rows:
            print(_user_line(u))
    return EXIT_OK


def cmd_user_show(args) -> int:
    from .admin.dashboard import fmt_bytes
    ua, uid = _user_admin(args)
    d = ua.show(uid)
    if args.json:
        print(json.dumps(d.as_dict()))
        return EXIT_OK
    u, use = d.user, d.usage
    print(_user_line(u))
    print(f"  created {u.created_at:%Y-%m-%d %H:%M} UTC; {d.nodes} files and folders; {d.tokens} tokens and sessions")
    print(f"  used {fmt_bytes(use.used)}: current {fmt_bytes(use.current)}, old versions {fmt_bytes(use.old_versions)}, "
          f"trash {fmt_bytes(use.trash)}; pending {fmt_bytes(use.pending)}")
    return EXIT_OK


def cmd_user_set(args) -> int:
    if args.plan is None and args.quota is None and args.admin is None:
        raise ConfigError("nothing to set: give --plan, --quota or --admin/--no-admin")
    ua, uid = _user_admin(args)
    print(_user_line(ua.update(uid, plan=args.plan, quota_bytes=args.quota, is_admin=args.admin)))
    return EXIT_OK


def cmd_user_disable(args) -> int:
    ua, uid = _user_admin(args)
    n = ua.disable(uid)
    print(f"disabled {args.user_ref}; revoked {n} token(s) and session(s)")
    return EXIT_OK


def cmd_user_enable(args) -> int:
    ua, uid = _user_admin(args)
    ua.enable(uid)
    print(f"enabled {args.user_ref}")
    return EXIT_OK


def cmd_user_delete(args) -> int:
    ua, uid = _user_admin(args)
    if not args.yes:
        if not sys.stdin.isatty():
            raise ConfigError("deleting an account needs --yes (or a terminal to confirm on)")
        if input(f"delete {args.user_ref} (files to its trash, purged by gc)? type yes: ").strip() != "yes":
            print("not deleted")
            return EXIT_ERROR
    n = ua.delete(uid)
    print(f"deleted {args.user_ref}: disabled, {n} item(s) moved to its trash; gc removes the account "
          "after the trash retention")
    return EXIT_OK


def _drive_and_user(args):
    """The drive, and the user named by ``--user``, for the commands that act as one."""
    drive = _drive(args)
    return drive, drive.user_by_email(args.user)


def _parent_and_name(drive, user_id: int, remote: str):
    from storage.names import split_path
    parts = split_path(remote)
    if not parts:
        raise ConfigError("give a file path, not /")
    parent = drive.mkdirs(user_id, "/" + "/".join(parts[:-1]))
    return parent.id, parts[-1]


def cmd_put(args) -> int:
    drive, user = _drive_and_user(args)
    local = Path(args.local)
    if not local.is_file():
        raise ConfigError(f"{local}: not a readable file")
    remote = args.remote
    if remote.endswith("/"):
        remote += local.name
    parent_id, name = _parent_and_name(drive, user.id, remote)
    size = local.stat().st_size
    with open(local, "rb") as fh, _progress(size, f"put {name}", _show_progress(args)) as tick:
        res = drive.put(user.id, parent_id, name, fh, size_hint=size, on_progress=tick)
    out = {"id": res.node.id, "path": remote, "size": res.node.size, "sha256": res.node.sha256,
           "version": res.version_id, "created": res.created, "new_bytes": res.new_bytes}
    print(json.dumps(out) if args.json else
          f"{'created' if res.created else 'updated'} {remote}: {res.node.size} bytes, "
          f"version {res.version_id}, {res.new_bytes} new bytes stored, sha256 {res.node.sha256}")
    return EXIT_OK


def cmd_get(args) -> int:
    import hashlib
    drive, user = _drive_and_user(args)
    node = drive.resolve(user.id, args.remote)
    info, version, chunks = drive.open(user.id, node.id)
    dest = Path(args.local)
    if dest.is_dir():
        dest = dest / info.name
    tmp = dest.with_name(f".{dest.name}.blockdrive-tmp")
    h = hashlib.sha256()
    try:
        with open(tmp, "wb") as out, _progress(version.size, f"get {info.name}", _show_progress(args)) as tick:
            for data in chunks:
                out.write(data)
                h.update(data)
                tick(len(data))
            out.flush()
            os.fsync(out.fileno())
        if h.hexdigest() != version.sha256:
            raise BlockdriveError(f"downloaded bytes do not match the stored SHA-256 of {args.remote}")
        os.replace(tmp, dest)  # never leave a half-written file under the real name
    finally:
        tmp.unlink(missing_ok=True)
    print(f"{args.remote} -> {dest}: {version.size} bytes, sha256 {version.sha256}")
    return EXIT_OK


def cmd_ls(args) -> int:
    drive, user = _drive_and_user(args)
    node = drive.resolve(user.id, args.remote)
    items, cursor = ([node], None) if node.kind == "file" else drive.list_children(user.id, node.id, limit=1000)
    rows = []
    while True:
        rows += items
        if not cursor:
            break
        items, cursor = drive.list_children(user.id, node.id, limit=1000, cursor=cursor)
    if args.json:
        print(json.dumps([{"id": n.id, "kind": n.kind, "name": n.name, "size": n.size,
                           "updated_at": n.updated_at.isoformat(), "sha256": n.sha256} for n in rows]))
    else:
        for n in rows:
            size = "-" if n.size is None else str(n.size)
            print(f"{n.kind[0]} {size:>14} {n.updated_at:%Y-%m-%d %H:%M} {n.name}{'/' if n.kind == 'folder' else ''}")
    return EXIT_OK


def cmd_mkdir(args) -> int:
    drive, user = _drive_and_user(args)
    node = drive.mkdirs(user.id, args.remote)
    print(f"{args.remote}: folder {node.id}")
    return EXIT_OK


def cmd_fsck(args) -> int:
    from storage.fsck import fsck
    drive = _drive(args)
    state = {}

    def progress(done, total):
        if _show_progress(args):
            print(f"\rchecking packs: {done * 100 // max(total, 1)}%", end="", file=sys.stderr)
        state["done"] = done
    rep = fsck(drive, deep=args.deep, progress=progress)
    if _show_progress(args):
        print(file=sys.stderr)
    st = rep.stats
    summary = (f"checked {st['versions']} versions, {st['refs']} refs, {st['blocks']} blocks, "
               f"{st['packs']} packs ({st['bytes_read']} bytes read)")
    if args.json:
        print(json.dumps({"ok": rep.ok, "stats": dict(st), "problems": [p.__dict__ for p in rep.problems]}))
    else:
        print(summary)
        for p in rep.problems:
            print(f"PROBLEM {p}")
        print("fsck: clean" if rep.ok else f"fsck: {len(rep.problems)} problem(s)")
    return EXIT_OK if rep.ok else EXIT_PROBLEMS


def cmd_config_show(args) -> int:
    cfg = load_config(args.config)
    from storage.config import mask_url
    masked = cfg.masked()
    masked["effective"] = {"database_url": mask_url(cfg.database_url), "storage_url": mask_url(cfg.storage_url),
                           "cold_url": mask_url(cfg.cold_url or "")}
    if args.json:
        print(json.dumps(masked, indent=2))
    else:
        for section, values in masked.items():
            print(f"[{section}]")
            for k, v in values.items():
                print(f"{k} = {json.dumps(v)}")
            print()
    return EXIT_OK


def register_cli(sub) -> None:
    """Add the server's operator commands to the ``blockdrive`` parser's subparsers ``sub``
    (the ``blockdrive.commands`` entry point ``server``; the global ``--config`` is theirs)."""

    def add(name, fn, help_):
        sp = sub.add_parser(name, help=help_, description=help_)
        sp.set_defaults(fn=fn)
        return sp

    add("init", cmd_init, "create or upgrade the database schema and check the storage backend")
    sp = add("serve", cmd_serve, "run the HTTP server (gunicorn)")
    sp.add_argument("--host")
    sp.add_argument("--port", type=int)
    sp.add_argument("--workers", type=int)

    sp = add("user", None, "manage users")
    usub = sp.add_subparsers(dest="user_command", required=True, metavar="ACTION")
    up = usub.add_parser("create", help="create a user; prints the new API token on the last line")
    up.set_defaults(fn=cmd_user_create)
    up.add_argument("email")
    up.add_argument("--password", help="(default: $BLOCKDRIVE_PASSWORD, else prompt)")
    up.add_argument("--premium", action="store_true")
    up.add_argument("--admin", action="store_true")
    up = usub.add_parser("revoke-tokens", help="sign a user out everywhere: revoke all their API tokens and "
                                                "admin sessions (a stolen laptop, a leaked token)")
    up.set_defaults(fn=cmd_user_revoke_tokens)
    up.add_argument("email")
    up = usub.add_parser("list", help="list users (by email), or those whose email contains --query")
    up.set_defaults(fn=cmd_user_list)
    up.add_argument("--query", "-q")
    up.add_argument("--json", action="store_true")
    up = usub.add_parser("show", help="one user: plan, quota and its split, files, tokens, status")
    up.set_defaults(fn=cmd_user_show)
    up.add_argument("user_ref", metavar="EMAIL|ID")
    up.add_argument("--json", action="store_true")
    up = usub.add_parser("set", help="change a user's plan (and that plan's quota), quota or admin flag")
    up.set_defaults(fn=cmd_user_set)
    up.add_argument("user_ref", metavar="EMAIL|ID")
    up.add_argument("--plan", choices=["free", "premium"])
    up.add_argument("--quota", help="bytes, or e.g. 20G, 500M (decimal), 1Ti (binary)")
    up.add_argument("--admin", action=argparse.BooleanOptionalAction, default=None)
    for name, fn, help_ in [
        ("disable", cmd_user_disable, "stop a user signing in by any door; revokes their tokens and sessions"),
        ("enable", cmd_user_enable, "let a disabled user sign in again"),
        ("delete", cmd_user_delete, "delete a user: disabled at once, files to their trash, removed by gc "
                                    "after the trash retention"),
    ]:
        up = usub.add_parser(name, help=help_)
        up.set_defaults(fn=fn)
        up.add_argument("user_ref", metavar="EMAIL|ID")
        if name == "delete":
            up.add_argument("--yes", action="store_true", help="do not ask")

    for name, fn, help_, a, b in [
        ("put", cmd_put, "upload a local file to /remote/path", "local", "remote"),
        ("get", cmd_get, "download /remote/path to a local file", "remote", "local"),
    ]:
        sp = add(name, fn, help_)
        sp.add_argument(a)
        sp.add_argument(b)
        sp.add_argument("--user", required=True, help="email of the user acting")
        sp.add_argument("--json", action="store_true")
        sp.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    for name, fn, help_ in [("ls", cmd_ls, "list a remote folder"),
                            ("mkdir", cmd_mkdir, "create a remote folder and its parents")]:
        sp = add(name, fn, help_)
        sp.add_argument("remote", nargs="?" if name == "ls" else None, default="/")
        sp.add_argument("--user", required=True)
        sp.add_argument("--json", action="store_true")
    sp = add("fsck", cmd_fsck, "check metadata and every stored block; exit 3 on any problem")
    sp.add_argument("--deep", action="store_true", help="also verify each block's SHA-256")
    sp.add_argument("--json", action="store_true")
    sp = add("config", None, "configuration")
    csub = sp.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    cp = csub.add_parser("show", help="print the effective configuration, secrets masked")
    cp.set_defaults(fn=cmd_config_show)
    cp.add_argument("--json", action="store_true")


def main(argv: list[str] | None = None) -> int:
    """The ``blockdrive`` command (:func:`client.main.main`), for console scripts installed
    before it moved to the client package."""
    from client.main import main as blockdrive
    return blockdrive(argv)
