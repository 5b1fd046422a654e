"""`eyeops console serve|users add` and `eyeops review export-crops`."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from eyeops.settings import Settings


def _credentials() -> Path:
    return Settings().data_dir / "credentials"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("console", help="the review console (web): serve it, manage its users")
    csub = p.add_subparsers(dest="console_command", required=True)
    serve = csub.add_parser("serve", help="serve the review console")
    serve.add_argument("--database-url", default=None, help="the results database (default: settings)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8090)
    serve.add_argument(
        "--users-file",
        type=Path,
        default=None,
        help="local sign-in: the users file (default <data>/credentials/console-users.txt)",
    )
    serve.add_argument(
        "--session-secret-file",
        type=Path,
        default=None,
        help="signs session cookies; shared by replicas (default <data>/credentials/console-session.key,"
        " made on first start)",
    )
    serve.add_argument("--session-hours", type=float, default=8.0, help="a sign-in lasts this long")
    serve.add_argument(
        "--forwarded-user-header",
        default=None,
        help="behind an OIDC proxy (e.g. oauth2-proxy): the header naming the signed-in person, e.g."
        " X-Forwarded-User; then no local sign-in. Only the proxy may reach the console",
    )
    serve.add_argument("--forwarded-groups-header", default="X-Forwarded-Groups")
    serve.add_argument(
        "--proxy-secret-file",
        type=Path,
        default=None,
        help="with --forwarded-user-header (required there): the secret the proxy sends in"
        " --proxy-secret-header to prove that it, and no other caller, names the person",
    )
    serve.add_argument("--proxy-secret-header", default="X-Eyeops-Proxy-Secret")
    serve.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="serve /metrics on this port alone (not on --port), so Prometheus reaches nothing else",
    )
    serve.add_argument(
        "--group-role",
        action="append",
        default=[],
        metavar="GROUP=ROLE",
        help="an OIDC group and the role it gives (reviewer, device_admin); repeat",
    )
    serve.add_argument("--secure-cookies", action="store_true", help="cookies only over HTTPS (behind TLS)")
    serve.add_argument(
        "--crops-dir",
        type=Path,
        default=None,
        help="the labelled crop set for ocr-training (default <data>/registry/crops; reviewed.npz)",
    )
    serve.add_argument(
        "--layouts-dir",
        type=Path,
        default=None,
        help="where devices onboarded in the console are written (default <data>/layouts)",
    )
    serve.add_argument(
        "--finetune-registry",
        type=Path,
        default=None,
        help="run device fine-tunes from the Devices page, registering into this model registry"
        " (e.g. <data>/registry; the machine then trains for ~30 min a fine-tune); off without it",
    )
    serve.add_argument(
        "--finetune-dir",
        type=Path,
        default=None,
        help="where fine-tunes started here keep their records (default <data>/finetune-jobs)",
    )
    serve.add_argument(
        "--finetune-option",
        action="append",
        default=[],
        metavar="OPTION",
        help="an option passed to `eyeops devices finetune`, e.g. --finetune-option=--budget-minutes=20",
    )
    serve.add_argument(
        "--triton-url", default=None, help="the recogniser, to read an exam again from marked corners"
    )
    serve.add_argument("--triton-key-file", type=Path, default=None, help="the key Triton's APIs expect")
    serve.add_argument("--monitor-url", default=None, help="shows the monitor's drift and performance")
    serve.add_argument("--monitor-token-file", type=Path, default=None)
    serve.add_argument(
        "--second-look-share",
        type=float,
        default=0.05,
        help="share of releases another reviewer checks blind (reviewer agreement); 0 turns it off",
    )
    serve.add_argument(
        "--review-max-wait-minutes", type=float, default=240.0,
        help="the longest an exam should wait for review (exported; an alert fires beyond it)",
    )  # fmt: skip
    serve.set_defaults(func=_serve)

    users = csub.add_parser("users", help="people who sign in to the console locally")
    usub = users.add_subparsers(dest="users_command", required=True)
    add = usub.add_parser("add", help="add or replace a person (the password is read from stdin or asked)")
    add.add_argument("name")
    add.add_argument("--role", action="append", required=True, choices=("reviewer", "device_admin"))
    add.add_argument("--users-file", type=Path, default=None)
    add.add_argument("--password-file", type=Path, default=None, help="read the password from this file")
    add.set_defaults(func=_add_user)
    rm = usub.add_parser("remove", help="remove a person; their open sessions end on their next request")
    rm.add_argument("name")
    rm.add_argument("--users-file", type=Path, default=None)
    rm.set_defaults(func=_remove_user)

    review = sub.add_parser("review", help="what reviewers produced: the labelled crop set")
    rsub = review.add_subparsers(dest="review_command", required=True)
    export = rsub.add_parser(
        "export-crops",
        help="write the newest version of the labelled crop set (reviewed.npz) for ocr-training",
    )
    export.add_argument("--database-url", default=None)
    export.add_argument("--out", type=Path, default=None, help="default <data>/registry/crops")
    export.set_defaults(func=_export)


def _group_roles(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        group, sep, role = pair.partition("=")
        if not sep or role not in ("reviewer", "device_admin") or not group:
            raise SystemExit(f"--group-role {pair!r}: send GROUP=reviewer or GROUP=device_admin")
        out[group] = role
    return out


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from eyeops.console.app import ConsoleConfig, create_app
    from eyeops.console.users import Sessions, User, UsersFile, read_secret
    from eyeops.db.review import ReviewStore
    from eyeops.db.store import ResultsStore, migrate
    from eyeops.devices.layout import extra_layout_dirs, load_layouts
    from eyeops.review.reread import TritonRecognizer

    if not 0.0 <= args.second_look_share <= 1.0:
        raise SystemExit("--second-look-share takes a share between 0 and 1, e.g. 0.05")
    settings = Settings()
    url = args.database_url or settings.resolved_database_url()
    users: Mapping[str, User] = {}
    if args.forwarded_user_header is None:
        users = UsersFile(args.users_file or _credentials() / "console-users.txt")
        if not users:
            raise SystemExit(
                "the users file lists nobody: add someone with"
                " `eyeops console users add NAME --role reviewer`"
            )
    proxy_secret = None
    if args.forwarded_user_header is not None:
        if args.proxy_secret_file is None:
            raise SystemExit(
                "--forwarded-user-header needs --proxy-secret-file: the secret the sign-in proxy sends,"
                " so that no other caller can name a user"
            )
        proxy_secret = args.proxy_secret_file.read_bytes().strip()
        if len(proxy_secret) < 16:
            raise SystemExit("--proxy-secret-file: use a random secret of at least 16 characters")
    secret = read_secret(args.session_secret_file or _credentials() / "console-session.key")
    layouts_dir = args.layouts_dir or settings.data_dir / "layouts"
    layouts_dir.mkdir(parents=True, exist_ok=True)
    extra = [*extra_layout_dirs()]
    if layouts_dir.resolve() not in [d.resolve() for d in extra]:
        extra.append(layouts_dir)
    finetunes = None
    if args.finetune_registry is not None:
        from eyeops.devices.finetune_jobs import FinetuneJobs, finetune_argv
        from eyeops.devices.layout import LAYOUT_DIRS_ENV

        finetunes = FinetuneJobs(
            args.finetune_dir or settings.data_dir / "finetune-jobs",
            finetune_argv(sys.executable, args.finetune_registry, args.finetune_option),
            env={LAYOUT_DIRS_ENV: os.pathsep.join(map(str, extra))},
        )
    config = ConsoleConfig(
        sessions=Sessions(secret, ttl_s=args.session_hours * 3600),
        users=users,
        forwarded_user_header=args.forwarded_user_header,
        forwarded_groups_header=args.forwarded_groups_header,
        proxy_secret=proxy_secret,
        proxy_secret_header=args.proxy_secret_header,
        metrics_on_main_port=args.metrics_port is None,
        group_roles=_group_roles(args.group_role),
        secure_cookies=args.secure_cookies,
        crops_dir=args.crops_dir or settings.data_dir / "registry" / "crops",
        layouts_dir=layouts_dir,
        finetunes=finetunes,
        monitor_url=args.monitor_url,
        monitor_token=args.monitor_token_file.read_text().strip() if args.monitor_token_file else None,
        review_max_wait_s=args.review_max_wait_minutes * 60,
        second_look_share=args.second_look_share,
    )
    migrate(url)
    store = ReviewStore(ResultsStore.from_url(url).engine)
    recognizer = None
    if args.triton_url:
        key = args.triton_key_file.read_text().strip() if args.triton_key_file else None
        recognizer = TritonRecognizer(args.triton_url, settings.ocr_model_name, key)
    app = create_app(store, lambda: load_layouts(extra=extra), config, settings, recognizer)
    print(f"review console: http://{args.host}:{args.port}/", flush=True)
    if args.metrics_port is None:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
        return 0
    import asyncio

    from eyeops.console.app import metrics_app

    servers = [
        uvicorn.Server(uvicorn.Config(app, host=args.host, port=args.port, log_level="warning")),
        uvicorn.Server(
            uvicorn.Config(metrics_app(app), host=args.host, port=args.metrics_port, log_level="warning")
        ),
    ]

    async def both() -> None:  # one process; either server stopping stops the other
        tasks = [asyncio.create_task(s.serve()) for s in servers]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for server in servers:
            server.should_exit = True
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(both())
    return 0


def _add_user(args: argparse.Namespace) -> int:
    from eyeops.console.users import add_user

    if args.password_file is not None:
        password = args.password_file.read_text(encoding="utf-8").strip()
    elif sys.stdin.isatty():
        password = getpass.getpass(f"password for {args.name}: ")
        if getpass.getpass("again: ") != password:
            raise SystemExit("the two passwords differ")
    else:
        password = sys.stdin.readline().strip()
    path = args.users_file or _credentials() / "console-users.txt"
    user = add_user(path, args.name, args.role, password)
    print(f"{user.name} ({', '.join(sorted(user.roles))}) in {path}")
    return 0


def _remove_user(args: argparse.Namespace) -> int:
    from eyeops.console.users import UsersFileError, remove_user

    path = args.users_file or _credentials() / "console-users.txt"
    if not remove_user(path, args.name):
        raise UsersFileError(f"no user {args.name!r} in {path}")
    print(f"removed {args.name} from {path}; their sessions end on their next request")
    return 0


def _export(args: argparse.Namespace) -> int:
    import json

    from eyeops.db.review import ReviewStore
    from eyeops.db.store import ResultsStore, migrate
    from eyeops.review.cropset import export_crops

    settings = Settings()
    url = args.database_url or settings.resolved_database_url()
    migrate(url)
    out = args.out or settings.data_dir / "registry" / "crops"
    manifest = export_crops(ReviewStore(ResultsStore.from_url(url).engine), out)
    print(json.dumps({**manifest, "folder": os.fspath(out)}))
    return 0
