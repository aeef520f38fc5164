"""``python -m race ml train --until ISO``: train the ML agent's model on stored candles
closed before that time and print its held-out metrics."""

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
