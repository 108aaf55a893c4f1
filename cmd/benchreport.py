"""What ``cmd/bench.py`` shows: medians over the rounds, the table, the targets, JSON, a chart.

Medians, because the machine is noisy and shared; ratios compare medians of one run, whose
rounds alternate the scenario order so that drift hits every scenario alike. Each target is
judged on every measure that bears on it (live load and drains for receiving; the peer's
receive work on the sender's CPU or, with RPS, on the other one for sending), and each
verdict names the measure it comes from.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # cmd/ is no package at run time (stdlib has a `cmd`); mypy knows it as one
    from cmd import drain
    from cmd.benchrun import Measurement, Scenario
else:
    import drain
    from benchrun import Measurement, Scenario

__all__ = ["Evidence", "Row", "Target", "chart", "format_table", "format_targets", "rows_from",
           "send_cost_ns", "send_costs", "target_lines", "write_json"]

#: Rows are grouped (a table section, a chart panel) and compared with their group's baseline.
BASELINE = {"rx": "AF_PACKET rx", "tx": "AF_PACKET tx", "tx (RPS)": "AF_PACKET tx (RPS)"}
GROUP_TITLES = {
    "rx": "receive, live load",
    "tx": "send: the peer's receive work on the sender's CPU",
    "tx (RPS)": "send: the peer's receive work on the other CPU (RPS)",
}
CHART_TITLES = {
    "rx": "receive, live load",
    "tx": "send: the peer's receive work\non the sender's CPU",
    "tx (RPS)": "send: the peer's receive\nwork on the other CPU (RPS)",
}
#: What each measure a target is judged on shows, and what it does not (one line each).
MEASURES = {
    "live load": "a receiver under the generator's bursty load (at most ~3.3 Mpps), the kernel's "
                 "receive work on the generator's CPU: what is captured of a live stream, but not "
                 "the reader's ceiling once it takes nearly all it is offered (then UNDECIDED)",
    "drain": "a reader emptying a ready backlog on one CPU, nothing arriving meanwhile: the "
             "reader's own cost per frame (Python and system calls), not capture while the "
             "kernel delivers, nor the kernel's receive work",
    "drain, batch ts": "the same drain with OptBatchTimestamps (frames of a read share its time "
                       "and one CaptureInfo): what the per-frame arrival time costs; not the "
                       "default, so not the verdict",
    "same core": "frames reaching the veth peer while its receive work runs on the sender's CPU "
                 "(veth's default): sender and receiver share one CPU, as they would not with a NIC",
    "RPS": "the same with the peer's receive work steered to the other CPU: each AF_PACKET send "
           "then pays a cross-CPU hand-off that a batch amortises; still veth copy mode, not a NIC",
}
#: Memory counts as flat when RSS grows by at most this much over the whole run.
FLAT_RSS_GROWTH_KIB = 1024
#: A receiver that loses less than this took about all it was offered: the generator, not
#: the receiver, set its figure, which is then only a lower bound of what it can drain.
OFFER_BOUND_LOSS = 0.05
OFFER_BOUND_NOTE = ("* the receiver took nearly all it was offered (loss < 5%): the generator set "
                    "this figure, so it and its ratio are lower bounds")


@dataclass(frozen=True)
class Row:
    """Median figures of one scenario over the rounds."""

    scenario: str
    call: str
    mode: str
    direction: str
    group: str
    rounds: int
    offered_pps: float
    received_pps: float
    received_pps_min: float
    received_pps_max: float
    loss: float
    cpu: float
    vs_af_packet: float | None

    @property
    def offer_bound(self) -> bool:
        return self.direction == "rx" and self.loss < OFFER_BOUND_LOSS

    @property
    def ratio_text(self) -> str:
        if self.scenario in BASELINE.values():
            return "baseline"
        if self.vs_af_packet is None:
            return "-"
        return f"{self.vs_af_packet:.2f}x"


@dataclass(frozen=True)
class Evidence:
    """One measure of a target: a row of the live table, or a reader of the drains."""

    measure: str
    """A key of ``MEASURES``."""
    name: str
    """The scenario, or with ``drain`` the drain reader."""
    drain: bool = False


@dataclass(frozen=True)
class Target:
    """A goal of the project: a call receives (or sends) ``factor`` times the baseline,
    judged separately on each measure of ``evidence``."""

    label: str
    factor: float
    evidence: tuple[Evidence, ...]


def rows_from(measurements: Sequence[Measurement], scenarios: Sequence[Scenario]) -> list[Row]:
    """One row per measured scenario, in first-measured order, with medians over the rounds."""
    by_name: dict[str, list[Measurement]] = {}
    for measurement in measurements:
        by_name.setdefault(measurement.scenario, []).append(measurement)
    medians = {name: statistics.median(m.received_pps for m in runs) for name, runs in by_name.items()}
    rows = []
    for name, runs in by_name.items():
        scenario = _scenario_of(name, scenarios)
        group = "tx (RPS)" if scenario.rps else runs[0].direction
        baseline = medians.get(BASELINE[group])
        rows.append(Row(
            scenario=name, call=scenario.call,
            mode={"afpacket": "-", "xdp": "native" if scenario.mode == "drv" else "generic"}[scenario.tool],
            direction=runs[0].direction, group=group, rounds=len(runs),
            offered_pps=statistics.median(m.offered_pps for m in runs),
            received_pps=medians[name],
            received_pps_min=min(m.received_pps for m in runs),
            received_pps_max=max(m.received_pps for m in runs),
            loss=statistics.median(m.loss for m in runs),
            cpu=statistics.median(m.cpu for m in runs),
            vs_af_packet=medians[name] / baseline if baseline else None,
        ))
    return rows


def _scenario_of(measurement_name: str, scenarios: Sequence[Scenario]) -> Scenario:
    """The scenario a measurement came from (a duplex run names its rx and tx halves)."""
    for scenario in scenarios:
        if measurement_name in (scenario.name, f"{scenario.name} rx", f"{scenario.name} tx"):
            return scenario
    raise LookupError(measurement_name)


def format_table(rows: Sequence[Row]) -> str:
    """The rows by group (receive, send, send with RPS), each group under its title."""
    header = ("scenario", "library call", "mode", "offered pps", "received pps", "loss", "CPU",
              "vs AF_PACKET")
    cells = []
    for row in _by_group(rows):
        mark = "*" if row.offer_bound else " "
        cells.append((row.scenario, row.call, row.mode, f"{row.offered_pps:,.0f}",
                      f"{row.received_pps:,.0f}{mark}", f"{row.loss:.1%}", f"{row.cpu:.0%}",
                      f"{row.ratio_text}{mark}"))
    widths = [max(len(line[i]) for line in [header, *cells]) for i in range(len(header))]
    numeric = {3, 4, 5, 6, 7}

    def line(values: Sequence[str]) -> str:
        return "  ".join(cell.rjust(width) if i in numeric else cell.ljust(width)
                         for i, (cell, width) in enumerate(zip(values, widths))).rstrip()

    text = [line(header), "  ".join("-" * width for width in widths)]
    group = None
    for row, values in zip(_by_group(rows), cells):
        if row.group != group:
            group = row.group
            text.append(f"[{GROUP_TITLES[group]}]")
        text.append(line(values))
    if any(row.offer_bound for row in rows):
        text.append(OFFER_BOUND_NOTE)
    return "\n".join(text)


def _by_group(rows: Sequence[Row]) -> list[Row]:
    """Rows in group order (stable within a group), each group's baseline first."""
    order = list(BASELINE)
    return sorted(rows, key=lambda row: (order.index(row.group), row.scenario != BASELINE[row.group]))


def target_lines(rows: Sequence[Row], targets: Sequence[Target], measurements: Sequence[Measurement],
                 drains: dict[str, drain.DrainResult]) -> list[dict[str, Any]]:
    """One verdict per target and measure: PASS, FAIL, UNDECIDED (a live ratio that is only a
    lower bound, below the goal) or MISSING (not measured).

    The verdict uses the ratio of the medians; the ratios within each round show the noise.
    """
    by_name = {row.scenario: row for row in rows}
    checks = []
    for target in targets:
        for evidence in target.evidence:
            ratio: float | None
            if evidence.drain:
                found = evidence.name in drains
                ratio = drains[evidence.name].ratio_to_afpacket if found else None
                lower_bound = False
                round_ratios = drain.round_ratios(drains, evidence.name) if found else []
            else:
                row = by_name.get(evidence.name)
                ratio = row.vs_af_packet if row else None
                lower_bound = bool(row and row.offer_bound)
                round_ratios = _round_ratios(evidence.name, rows, measurements)
            if ratio is None:
                verdict = "MISSING"
            elif ratio >= target.factor:
                verdict = "PASS"
            else:  # a lower bound below the goal proves nothing either way
                verdict = "UNDECIDED" if lower_bound else "FAIL"
            checks.append({"target": target.label, "factor": target.factor,
                           "measure": evidence.measure, "measured": evidence.name,
                           "ratio": ratio, "lower_bound": lower_bound,
                           "round_ratios": round_ratios, "verdict": verdict})
    return checks


def format_targets(checks: Sequence[dict[str, Any]]) -> str:
    """The verdicts under each target, each naming its measure; then what the measures show."""
    lines: list[str] = []
    heading = None
    for check in checks:
        if check["target"] != heading:
            heading = check["target"]
            lines.append(f"  {heading}")
        ratio = "not measured" if check["ratio"] is None else f"{check['ratio']:.2f}x"
        bound = " (a lower bound: the receiver took nearly all it was offered)" if check["lower_bound"] else ""
        rounds = " ".join(f"{value:.2f}x" for value in check["round_ratios"])
        lines.append(f"    {check['verdict']:<9} {check['measure'] + ':':<10} {check['measured']} "
                     f"{ratio}{bound}; by round: {rounds or '-'}")
    lines.append("What each measure shows, and what it does not:")
    for measure in dict.fromkeys(check["measure"] for check in checks):
        lines.append(f"  {measure + ':':<10} {MEASURES[measure]}")
    return "\n".join(lines)


def _round_ratios(scenario: str, rows: Sequence[Row], measurements: Sequence[Measurement]) -> list[float]:
    """Received pps of ``scenario`` over its baseline's, round by round."""
    group = {row.scenario: row.group for row in rows}
    if scenario not in group:
        return []
    baseline_name = BASELINE[group[scenario]]
    baseline = {m.round: m.received_pps for m in measurements if m.scenario == baseline_name}
    return [m.received_pps / baseline[m.round] for m in measurements
            if m.scenario == scenario and baseline.get(m.round)]


def send_cost_ns(measurements: Sequence[Measurement], scenario: str) -> tuple[float, float] | None:
    """Median CPU time per frame sent by ``scenario``: (in the process, in the kernel), in ns.

    With the sender busy all the time, the two add up to its time per frame; the kernel's
    share (building an skb per frame, the veth hand-off, and on the same core the peer's
    receive work) is what no user-space speed-up can remove.
    """
    runs = [m for m in measurements if m.scenario == scenario and m.offered_pps]
    if not runs:
        return None
    return (statistics.median((m.cpu - m.kernel_cpu) / m.offered_pps * 1e9 for m in runs),
            statistics.median(m.kernel_cpu / m.offered_pps * 1e9 for m in runs))


def send_costs(measurements: Sequence[Measurement]) -> dict[str, Any]:
    """Where each sender's time goes, and the best ratio that leaves ``write_multi_packets``.

    If the Python side of ``write_multi_packets`` cost nothing, a frame would still cost the
    kernel's share; AF_PACKET's whole time per frame over that share is the ceiling of the
    ratio. Returns ``{"costs": {scenario: figures}, "lines": [printable lines]}``.
    """
    costs: dict[str, dict[str, float]] = {}
    lines = []
    for baseline, batched in (("AF_PACKET tx", "tx-batch"), ("AF_PACKET tx (RPS)", "tx-batch (RPS)")):
        base_cost = send_cost_ns(measurements, baseline)
        batch_cost = send_cost_ns(measurements, batched)
        if base_cost is None or batch_cost is None:
            continue
        ceiling = sum(base_cost) / batch_cost[1]
        costs[baseline] = {"python_ns": base_cost[0], "kernel_ns": base_cost[1]}
        costs[batched] = {"python_ns": batch_cost[0], "kernel_ns": batch_cost[1], "ceiling": ceiling}
        lines.append(f"send cost per frame, {batched}: {batch_cost[0]:,.0f} ns in Python + "
                     f"{batch_cost[1]:,.0f} ns in the kernel; {baseline}: {base_cost[0]:,.0f} + "
                     f"{base_cost[1]:,.0f} ns; at zero Python cost the ratio could reach {ceiling:.2f}x")
    return {"costs": costs, "lines": lines}


def memory_flat(run: dict[str, Any]) -> bool:
    return int(run["rss_kib_end"]) - int(run["rss_kib_start"]) <= FLAT_RSS_GROWTH_KIB


def write_json(path: Path, settings: dict[str, Any], measurements: Sequence[Measurement],
               rows: Sequence[Row], checks: list[dict[str, Any]], extra: dict[str, Any]) -> None:
    document = {
        "settings": settings,
        "rows": [asdict(row) for row in rows],
        "targets": checks,
        "measurements": [{**asdict(m), "loss": m.loss} for m in measurements],
        **extra,
    }
    path.write_text(json.dumps(document, indent=2) + "\n")


def chart(path: Path, rows: Sequence[Row], drains: dict[str, drain.DrainResult], title: str) -> None:
    """Grouped bars per scenario: offered and received pps (median, whiskers min..max).

    Each group (receive; send; send with RPS) gets a panel in the top row, the AF_PACKET
    baseline first, in grey and as a dashed line across its panel; the drain rates fill the
    bottom row. matplotlib is a bench extra, imported only here.
    """
    import matplotlib  # type: ignore[import-not-found,unused-ignore]

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # type: ignore[import-not-found,unused-ignore]

    panels = [(group, [row for row in _by_group(rows) if row.group == group]) for group in BASELINE]
    panels = [(group, panel_rows) for group, panel_rows in panels if panel_rows]
    figure = plt.figure(figsize=(17, 12 if drains else 6.5))
    grid = figure.add_gridspec(2 if drains else 1, len(panels),
                               width_ratios=[max(len(panel_rows), 3) for _, panel_rows in panels])
    for column, (group, panel_rows) in enumerate(panels):
        _draw_panel(figure.add_subplot(grid[0, column]), group, panel_rows, legend=column < 2)
    if drains:
        _draw_drains(figure.add_subplot(grid[1, :]), drains)
    figure.suptitle(title)
    if any(row.offer_bound for row in rows):
        figure.text(0.01, 0.005, OFFER_BOUND_NOTE, fontsize=8)
    figure.tight_layout(rect=(0, 0.02, 1, 1))
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _draw_panel(axis: Any, group: str, rows: Sequence[Row], legend: bool) -> None:
    positions = list(range(len(rows)))
    width = 0.38
    is_baseline = [row.scenario == BASELINE[group] for row in rows]
    axis.bar([p - width / 2 for p in positions], [row.offered_pps / 1e6 for row in rows], width,
             color="#c9d6e8", label="offered (send: queued by the sender)")
    for baseline in (True, False):
        chosen = [(p, row) for p, row, b in zip(positions, rows, is_baseline) if b == baseline]
        if not chosen:
            continue
        axis.bar(
            [p + width / 2 for p, _ in chosen], [row.received_pps / 1e6 for _, row in chosen], width,
            yerr=[[(row.received_pps - row.received_pps_min) / 1e6 for _, row in chosen],
                  [(row.received_pps_max - row.received_pps) / 1e6 for _, row in chosen]],
            capsize=3, color="#888888" if baseline else "#1f5fa8",
            label="received, AF_PACKET" if baseline else "received, xdppacket",
        )
    for position, row in zip(positions, rows):
        axis.annotate(row.ratio_text + ("*" if row.offer_bound else ""), (position + width / 2, row.received_pps_max / 1e6),
                      textcoords="offset points", xytext=(0, 3), ha="center", fontsize=8)
    baseline_rows = [row for row in rows if row.scenario == BASELINE[group]]
    if baseline_rows:
        axis.axhline(baseline_rows[0].received_pps / 1e6, color="#888888", linestyle="--", linewidth=1)
    axis.set_xticks(positions)
    axis.set_xticklabels([f"{row.scenario}\n{row.mode}" if row.mode != "-" else row.scenario
                          for row in rows], rotation=30, ha="right", fontsize=8)
    axis.set_ylabel("million packets per second")
    axis.set_title(CHART_TITLES[group], fontsize=10)
    top = max(max(row.offered_pps, row.received_pps_max) for row in rows) / 1e6
    axis.set_ylim(0, top * 1.3)  # room for the legend
    if legend:  # the same three colours in every panel: a narrow one goes without
        axis.legend(fontsize=8, loc="upper left")
    axis.grid(axis="y", alpha=0.3)


def _draw_drains(axis: Any, drains: dict[str, drain.DrainResult]) -> None:
    """Drain rates per reader: median bar, whiskers min..max over the rounds, ratio on top."""
    names = list(drains)
    positions = list(range(len(names)))
    medians = [drains[name].median_pps / 1e6 for name in names]
    lows = [min(drains[name].rounds_pps) / 1e6 for name in names]
    highs = [max(drains[name].rounds_pps) / 1e6 for name in names]
    axis.bar(positions, medians, 0.6,
             yerr=[[m - low for m, low in zip(medians, lows)], [high - m for m, high in zip(medians, highs)]],
             capsize=3, color=["#888888" if name == drain.BASELINE else "#1f5fa8" for name in names])
    for position, name, high in zip(positions, names, highs):
        text = "baseline" if name == drain.BASELINE else f"{drains[name].ratio_to_afpacket:.2f}x"
        axis.annotate(text, (position, high), textcoords="offset points", xytext=(0, 3),
                      ha="center", fontsize=8)
    if drain.BASELINE in drains:
        axis.axhline(drains[drain.BASELINE].median_pps / 1e6, color="#888888", linestyle="--", linewidth=1)
    axis.set_xticks(positions)
    axis.set_xticklabels(names, rotation=20, ha="right", fontsize=8)
    axis.set_ylabel("million packets per second")
    rounds = len(next(iter(drains.values())).rounds_pps)
    axis.set_title(f"drain: how fast each reader empties a ready backlog on one CPU "
                   f"(median of {rounds} round(s); whiskers min..max; grey: AF_PACKET)", fontsize=10)
    axis.set_ylim(0, max(highs) * 1.15)
    axis.grid(axis="y", alpha=0.3)
