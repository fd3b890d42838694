"""``feedback``: look at recorded alerts, mark one a false positive or confirm it, or mark a
template the serving version never learnt normal (all its alerts at once)."""

from __future__ import annotations

import argparse

from client.alerts import Check
from client.cli.args import add_store_argument, program


def add_parsers(sub: argparse._SubParsersAction) -> None:
    fb = sub.add_parser("feedback", help="mark an alert a false positive or confirm it")
    add_store_argument(fb)
    fb_sub = fb.add_subparsers(dest="action", required=True)
    fb_list = fb_sub.add_parser("list", help="the newest alerts and their feedback")
    fb_list.add_argument("--limit", type=int, default=50)
    fb_list.add_argument("--session", help="only this session's alerts")
    fb_list.add_argument(
        "--check", choices=[c.value for c in Check], help="only alerts of this check"
    )
    fp = fb_sub.add_parser("false-positive", help="the alert was wrong: the models learn it")
    fp.add_argument("alert_id")
    ok = fb_sub.add_parser("confirm", help="the alert was right (for a diagnosis: --label)")
    ok.add_argument("alert_id")
    ok.add_argument("--label", default=None, help="the right class of a diagnosis alert")
    nt = fb_sub.add_parser(
        "normal-template",
        help="a new template is normal: the next version learns it (all its alerts answered)",
    )
    nt.add_argument(
        "template", metavar="KEY_OR_ALERT_ID", help="its name (new-...) or an alert's id"
    )
    for action in (fb_list, fp, ok, nt):
        add_store_argument(action, top=False)


def cmd_feedback(args: argparse.Namespace) -> int:
    from client.feedback import CONFIRMED, FALSE_POSITIVE, FeedbackStore

    with FeedbackStore(args.store) as store:
        if args.action == "list":
            check = Check(args.check) if args.check else None
            _print_alerts(store.alerts(args.limit, args.session, check))
            return 0
        if args.action == "normal-template":
            marked = store.mark_template_normal(args.template)
            print(
                f"template {marked.name} '{marked.template}' marked normal "
                f"({marked.alerts} alert(s) of it marked false_positive); the next "
                f"{program()} retrain learns it"
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


def _print_alerts(rows: list) -> None:
    """One alert per line: id, check, reason, template, session, where, model, verdict."""
    table = [("ALERT", "CHECK", "REASON", "TEMPLATE", "SESSION", "WHERE", "MODEL", "FEEDBACK")]
    for stored, verdict in rows:
        facts = stored.alert.facts()
        template = facts.template if len(facts.template) <= 60 else facts.template[:57] + "..."
        table.append(
            (
                stored.id,
                stored.check.value,
                facts.reason,
                template or "-",
                stored.session,
                facts.where,
                f"{stored.model} v{stored.model_version}",
                verdict or "-",
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


COMMANDS = {"feedback": cmd_feedback}
