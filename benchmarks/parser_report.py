"""``python -m benchmarks parsers`` (``make bench-parsers``; ``make bench`` runs it too): our
parser against Drain3 on loghub's eleven samples, next to the published Drain and Brain
figures, and the template set's growth on a stream of ever-new numbers."""

from __future__ import annotations

import time
from pathlib import Path

from benchmarks import parsers, report
from benchmarks.parsers import DRAIN3, OURS, GrowthPoint, ParserResult

REPORTS = Path("benchmarks/reports")


def run_parser_bench(loghub: Path, growth_lines: int = 5_000_000, out: Path = REPORTS) -> Path:
    started = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    results = parsers.compare(loghub)
    growth = parsers.template_growth(growth_lines)
    report.write_csv(out / "parsers.csv", results)
    report.write_csv(out / "parser_growth.csv", growth)
    plot_accuracy(results, out / "parsers.png")
    text = (
        f"# Parser: ours against Drain3 (`make bench-parsers`)\n\nMeasured {started} UTC on "
        f"{report.machine('cpu')}.\n\n" + section(results) + "\n\n" + growth_section(growth) + "\n"
    )
    path = out / "parsers.md"
    path.write_text(text)
    return path


def section(results: list[ParserResult]) -> str:
    ours = {r.system: r for r in results if r.parser == OURS}
    drain = {r.system: r for r in results if r.parser == DRAIN3}
    lines = [
        "## Accuracy and speed on loghub's 2,000-line samples\n",
        "GA: grouping accuracy (a line counts when its group is exactly its true group); "
        "ours *final* with each line's template as it stands at the end of the one pass "
        "(what `parse` writes and training uses), *on arrival* as it was when the line came "
        "(before its template merged with its siblings). PA: the template text equals "
        "loghub's. Speeds: lines/s, best of three; learning from scratch, matching against the "
        "frozen templates learnt from the same lines (Drain3: `add_log_message`, `match`); "
        "*content* times the template step alone on the header-split content (Drain3's API), "
        "*line* the whole read from raw bytes (decode and the format's header regex on both "
        "sides: what `detect` pays per line). Drain3 "
        "runs with its defaults (no masks); ours with the format file's rules "
        "(`client/format_files/`). Published GA: logparser's benchmark tables.\n",
        "| system | GA ours (final / on arrival) | GA Drain3 | GA published Drain / Brain "
        "| PA ours / Drain3 | learn, content: ours / Drain3 | match, content: ours / Drain3 "
        "| learn, line | match, line |",
        "|---|---|---:|---|---|---|---|---|---|",
    ]
    for system, r in ours.items():
        d = drain[system]
        published_drain, brain = r.published
        mark = "" if r.grouping_accuracy >= brain else " (below Brain)"
        lines.append(
            f"| {system} | **{r.grouping_accuracy:.4f}**{mark} / "
            f"{r.grouping_accuracy_at_arrival:.4f} | {d.grouping_accuracy:.4f} | "
            f"{published_drain:.4f} / {brain:.4f} | {r.parsing_accuracy:.4f} / "
            f"{d.parsing_accuracy:.4f} | {_versus(r.learn_content_per_s, d.learn_content_per_s)} | "
            f"{_versus(r.match_content_per_s, d.match_content_per_s)} | "
            f"{_versus(r.learn_lines_per_s, d.learn_lines_per_s)} | "
            f"{_versus(r.match_lines_per_s, d.match_lines_per_s)} |"
        )
    lines.append("\n![grouping accuracy](parsers.png)")
    return "\n".join(lines)


def _versus(ours: float, theirs: float) -> str:
    return f"{ours:,.0f} / {theirs:,.0f} ({ours / theirs:.2f}x)"


def growth_section(growth: list[GrowthPoint]) -> str:
    lines = [
        f"## Template memory on {growth[-1].lines:,} generated lines\n",
        "Eight statements whose ids, sizes, times, addresses and hex handles never repeat, "
        "learnt in one pass (`parsers.numeric_stream`). The template set and the parser's memos "
        "must stay flat; RSS is the whole process's peak.\n",
        "| lines | templates | groups | tokens remembered | peak RSS MiB | lines/s |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for g in growth:
        lines.append(
            f"| {g.lines:,} | {g.templates} | {g.groups} | {g.tokens_remembered:,} | "
            f"{g.rss_mb:,.0f} | {g.lines_per_s:,.0f} |"
        )
    return "\n".join(lines)


def plot_accuracy(results: list[ParserResult], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ours = [r for r in results if r.parser == OURS]
    drain = {r.system: r for r in results if r.parser == DRAIN3}
    systems = [r.system for r in ours]
    x = range(len(systems))
    fig, ax = plt.subplots(figsize=(11, 4.5))
    width = 0.27
    ax.bar([i - width for i in x], [r.grouping_accuracy for r in ours], width, label="ours")
    ax.bar(x, [r.published[1] for r in ours], width, label="Brain (published)")
    ax.bar([i + width for i in x], [drain[s].grouping_accuracy for s in systems], width,
           label="Drain3 0.9.11 (this run)")  # fmt: skip
    ax.set_xticks(list(x), systems, rotation=30)
    ax.set(ylabel="grouping accuracy", ylim=(0.2, 1.01), title="loghub 2k samples")
    ax.legend(loc="lower left")
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
