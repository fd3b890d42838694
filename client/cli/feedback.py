"""``feedback``: look at recorded alerts, mark one a false positive or confirm it."""

from __future__ import annotations

import argparse
from pathlib import Path

from client.cli.args import DEFAULT_STORE


def add_parsers(sub: argparse._SubParsersAction) -> None:
    fb = sub.add_parser("feedback", help="mark an alert a false positive or confirm it")
    fb.add_argument("--store", type=Path, default=DEFAULT_STORE)
    fb_sub = fb.add_subparsers(dest="action", required=True)
    fb_list = fb_sub.add_parser("list", help="the newest alerts and their feedback")
    fb_list.add_argument("--limit", type=int, default=50)
    fp = fb_sub.add_parser("false-positive", help="the alert was wrong: the models learn it")
    fp.add_argument("alert_id")
    ok = fb_sub.add_parser("confirm", help="the alert was right (for a diagnosis: --label)")
    ok.add_argument("alert_id")
    ok.add_argument("--label", default=None, help="the right class of a diagnosis alert")


def cmd_feedback(args: argparse.Namespace) -> int:
    from client.feedback import CONFIRMED, FALSE_POSITIVE, FeedbackStore

    with FeedbackStore(args.store) as store:
        if args.action == "list":
            for alert, verdict in store.alerts(args.limit):
                print(
                    f"{alert.id}  {alert.check.value:15s} {alert.session:28s} {alert.model} "
                    f"v{alert.model_version}  {verdict or '-'}"
                )
            return 0
        verdict = FALSE_POSITIVE if args.action == "false-positive" else CONFIRMED
        given = store.give(args.alert_id, verdict, getattr(args, "label", None))
    print(
        f"feedback #{given.id}: alert {given.alert.id} ({given.alert.check.value}, session "
        f"{given.alert.session}, {given.alert.model} v{given.alert.model_version}) marked "
        f"{given.verdict}{f' as {given.label}' if given.label else ''} at {given.given_at}"
    )
    return 0


COMMANDS = {"feedback": cmd_feedback}
