"""``workflow``: draw a task's workflow as the served key model version holds it (SVG and
PNG, with Graphviz). With ``--alert ID`` of a log-key alert: the path that alert's session
took, the step where it left the workflow and what the workflow allowed there; of a
parameter-value alert: the step the parameter model flagged and the value out of bounds
(``--alert`` may be given several times, one log-key alert at most). Needs no torch.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from client.cli.args import BadArguments, add_server_arguments, add_store_argument, client_security
from client.workflow_picture import MIN_SHARE, Highlight, draw


def add_parsers(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "workflow",
        help="draw a task's workflow (SVG, PNG), or where an alert's session left it",
        description=__doc__,
    )
    add_server_arguments(parser)
    parser.add_argument("--version", type=int, help="the key model version (default: newest)")
    parser.add_argument("--task", type=int, help="which task (default: the first)")
    parser.add_argument(
        "--alert",
        metavar="ID",
        action="append",
        default=[],
        help="an alert in the store: a log-key alert's path and divergence point, a "
        "parameter-value alert's flagged step (repeatable)",
    )
    add_store_argument(parser)
    parser.add_argument(
        "--min-share",
        type=float,
        default=MIN_SHARE,
        help=f"leave out transitions rarer than this share of their step's (default {MIN_SHARE})",
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="the picture, without suffix: OUT.svg, OUT.png"
    )


def cmd_workflow(args: argparse.Namespace) -> int:
    from client.alerts import KeyAlert, ParamAlert
    from client.detection import served_key_meta
    from client.feedback import FeedbackStore
    from client.triton_client import TritonClient
    from export.contract.specs import DEEPLOG_KEYS

    highlight, flagged, version = None, [], args.version
    stored_alerts = []
    if args.alert:
        if not args.store.is_file():
            raise FileNotFoundError(f"no feedback store {args.store}")
        with FeedbackStore(args.store) as store:
            stored_alerts = [(alert_id, store.alert(alert_id)) for alert_id in args.alert]
    for alert_id, stored in stored_alerts:
        if isinstance(stored.alert, ParamAlert):
            flagged.append(stored.alert)
            continue
        if not isinstance(stored.alert, KeyAlert):
            raise BadArguments(f"alert {alert_id} is a {stored.check.value} alert")
        if highlight is not None:
            raise BadArguments("give one log-key alert at most: a picture shows one path")
        if stored.alert.workflow is None:
            raise BadArguments(
                f"alert {alert_id} has no workflow place: its version "
                f"v{stored.model_version} was published before workflows were"
            )
        highlight = Highlight(stored.alert, stored.session_keys)
        version = stored.model_version
    with TritonClient(args.url, security=client_security(args)) as triton:
        version = version if version is not None else triton.bind_version(DEEPLOG_KEYS.name)
        meta = served_key_meta(triton, version)
    if meta.workflow is None:
        raise BadArguments(f"{DEEPLOG_KEYS.name} v{version} was published before workflows were")
    if not args.out.parent.is_dir():
        raise FileNotFoundError(f"no folder {args.out.parent} for --out")
    try:
        written = draw(
            meta.workflow, meta.vocabulary, args.out, args.task, highlight, flagged, args.min_share
        )
    except ValueError as exc:
        raise BadArguments(str(exc)) from None
    if highlight is not None:
        print(f"{highlight.alert.session}: {highlight.alert.workflow.line()}")
    for alert in flagged:
        print(alert.headline())
    print(f"wrote {' and '.join(map(str, written))}", file=sys.stderr)
    return 0


COMMANDS = {"workflow": cmd_workflow}
