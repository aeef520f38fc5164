"""``python -m race ml``: the ML agent's models, stored in the database.

- ``train --until ISO``: train on stored candles closed before that time, store the model,
  promote it by the rule of :mod:`race.ml_service`, print its held-out metrics.
- ``list``: the stored models (newest first), the promoted one marked.
- ``show VERSION``: one model's windows, features, metrics and status.
- ``promote VERSION``: make it the model the agent decides with.
- ``rollback``: back to the previously promoted model (the next cycle uses it)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from race.cli._common import iso_arg, open_app


def register(commands: Any) -> None:
    ml = commands.add_parser("ml", help="the ML agent's model")
    sub = ml.add_subparsers(dest="ml_command", metavar="ACTION", required=True)
    train = sub.add_parser("train", help="train on candles before --until and save an artifact")
    train.add_argument(
        "--until",
        type=iso_arg,
        required=True,
        help="ISO-8601 time (UTC): only candles closed strictly before it are used",
    )
    train.add_argument("--symbols", help="comma-separated assets (default: all enabled)")
    train.add_argument(
        "--horizon", type=int, default=None, help="label horizon in candles (default 4)"
    )
    train.add_argument(
        "--days",
        type=int,
        default=None,
        help="days of history before --until to train on (default 365; 0 = all)",
    )
    train.add_argument("--name", default=None, help="artifact name (default direction-gb)")
    train.add_argument("--json", action="store_true", help="print the report as JSON")
    train.set_defaults(handler=cmd_train)

    listing = sub.add_parser("list", help="the stored models, newest first")
    listing.add_argument("--name", default=None, help="only this model name")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(handler=cmd_list)
    show = sub.add_parser("show", help="one stored model")
    show.add_argument("version")
    show.add_argument("--name", default=None, help="model name (when versions collide)")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(handler=cmd_show)
    promote = sub.add_parser("promote", help="make a stored model the one the agent uses")
    promote.add_argument("version")
    promote.add_argument("--name", default=None, help="model name (when versions collide)")
    promote.set_defaults(handler=cmd_promote)
    rollback = sub.add_parser("rollback", help="back to the previously promoted model")
    rollback.add_argument("--name", default=None, help="model name (default direction-gb)")
    rollback.set_defaults(handler=cmd_rollback)


def cmd_train(args: argparse.Namespace) -> int:
    from datetime import timedelta

    from agents.ml import DEFAULT_MODEL_NAME
    from race.ml_service import DEFAULT_HISTORY, DEFAULT_HORIZON, train_model

    app = open_app()
    symbols = [s.strip() for s in args.symbols.split(",") if s.strip()] if args.symbols else None
    report = train_model(
        app,
        args.until,
        symbols=symbols,
        horizon=args.horizon if args.horizon is not None else DEFAULT_HORIZON,
        name=args.name or DEFAULT_MODEL_NAME,
        history=(
            DEFAULT_HISTORY
            if args.days is None
            else None
            if args.days == 0
            else timedelta(days=args.days)
        ),
    )
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print(report.describe())
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from race.store import ml_models
    from race.store.reads.ml_models import model_view

    app = open_app()
    with app.db.read() as session:
        views = [model_view(row) for row in ml_models.listing(session, args.name)]
    if args.json:
        print(json.dumps(views, indent=2))
        return 0
    if not views:
        print("no stored models: run `python -m race ml train --until ISO`")
        return 0
    for view in views:
        mark = "*" if view["status"] == "promoted" else " "
        edge = view["heldOutEdge"]
        print(
            f"{mark} {view['name']}@{view['version']}  {view['status']:<11}  "
            f"trained until {view['trainedUntil']}  accuracy "
            f"{_number(view['metrics'].get('accuracy'))}  edge {_number(edge, signed=True)}"
        )
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from race.store import ml_models
    from race.store.reads.ml_models import model_view

    app = open_app()
    with app.db.read() as session:
        view = model_view(ml_models.by_version(session, args.version, args.name), full=True)
    if args.json:
        print(json.dumps(view, indent=2))
        return 0
    print(f"{view['name']}@{view['version']}: {view['status']}")
    for key in ("reason", "trainedUntil", "trainWindow", "testWindow", "horizon", "sha256"):
        print(f"  {key}: {view[key]}")
    print(f"  sizeBytes: {view['sizeBytes']:,}")
    print(f"  createdAt: {view['createdAt']}  promotedAt: {view['promotedAt']}")
    print(f"  features: {', '.join(view['features'])}")
    print(f"  heldOutEdge: {_number(view['heldOutEdge'], signed=True)}")
    print(f"  metrics: {json.dumps(view['metrics'], sort_keys=True)}")
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    from race.store import ml_models

    app = open_app()
    with app.db.write() as session:
        row = ml_models.by_version(session, args.version, args.name)
        ml_models.promote(
            session, row.name, row.version, at=app.clock.now(), reason="promoted by hand"
        )
        label = f"{row.name}@{row.version}"
    print(f"promoted {label}: the next cycle decides with it")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from agents.ml import DEFAULT_MODEL_NAME
    from race.store import ml_models

    app = open_app()
    name = args.name or DEFAULT_MODEL_NAME
    with app.db.write() as session:
        left, restored = ml_models.rollback(
            session, name, reason=f"rolled back at {app.clock.now().isoformat()}"
        )
        text = f"rolled back {name}@{left.version} → {name}@{restored.version}"
    print(f"{text}: the next cycle decides with {restored.version}")
    return 0


def _number(value: object, *, signed: bool = False) -> str:
    if not isinstance(value, int | float):
        return "n/a"
    return f"{value:+.4f}" if signed else f"{value:.4f}"
