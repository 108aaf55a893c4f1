"""What ``cmd/bench.py`` shows: medians over the rounds, the table, the targets, JSON, a chart.

Medians, because the machine is noisy and shared; ratios compare medians of one run, whose
rounds alternate the scenario order so that drift hits every scenario alike.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # cmd/ is no package at run time (stdlib has a `cmd`); mypy knows it as one
    from cmd.benchrun import Measurement, Scenario
else:
    from benchrun import Measurement, Scenario

__all__ = ["Row", "Target", "chart", "format_table", "rows_from", "target_lines", "write_json"]

BASELINE = {"rx": "AF_PACKET rx", "tx": "AF_PACKET tx"}
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
class Target:
    """A goal of the project: ``scenario`` receives (or sends) ``factor`` times the baseline."""

    label: str
    scenario: str
    factor: float


def rows_from(measurements: Sequence[Measurement], scenarios: Sequence[Scenario]) -> list[Row]:
    """One row per measured scenario, in first-measured order, with medians over the rounds."""
    by_name: dict[str, list[Measurement]] = {}
    for measurement in measurements:
        by_name.setdefault(measurement.scenario, []).append(measurement)
    medians = {name: statistics.median(m.received_pps for m in runs) for name, runs in by_name.items()}
    rows = []
    for name, runs in by_name.items():
        scenario = _scenario_of(name, scenarios)
        baseline = medians.get(BASELINE[runs[0].direction])
        rows.append(Row(
            scenario=name, call=scenario.call,
            mode={"afpacket": "-", "xdp": "native" if scenario.mode == "drv" else "generic"}[scenario.tool],
            direction=runs[0].direction, rounds=len(runs),
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
    header = ("scenario", "library call", "mode", "offered pps", "received pps", "loss", "CPU",
              "vs AF_PACKET")
    lines = [header]
    for row in rows:
        mark = "*" if row.offer_bound else " "
        lines.append((row.scenario, row.call, row.mode, f"{row.offered_pps:,.0f}",
                      f"{row.received_pps:,.0f}{mark}", f"{row.loss:.1%}", f"{row.cpu:.0%}",
                      f"{row.ratio_text}{mark}"))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    numeric = {3, 4, 5, 6, 7}
    text = [
        "  ".join(cell.rjust(width) if i in numeric else cell.ljust(width)
                  for i, (cell, width) in enumerate(zip(line, widths))).rstrip()
        for line in lines
    ]
    text.insert(1, "  ".join("-" * width for width in widths))
    if any(row.offer_bound for row in rows):
        text.append(OFFER_BOUND_NOTE)
    return "\n".join(text)


def target_lines(rows: Sequence[Row], targets: Sequence[Target],
                 measurements: Sequence[Measurement]) -> list[dict[str, Any]]:
    """Each target with its measured ratio and a verdict: PASS, FAIL, UNDECIDED (the ratio is
    only a lower bound, below the goal) or MISSING (the row was not measured).

    The verdict uses the ratio of the medians; the ratios within each round show the noise.
    """
    by_name = {row.scenario: row for row in rows}
    checks = []
    for target in targets:
        row = by_name.get(target.scenario)
        ratio = row.vs_af_packet if row else None
        if ratio is None:
            verdict = "MISSING"
        elif ratio >= target.factor:
            verdict = "PASS"
        else:  # a lower bound below the goal proves nothing either way
            verdict = "UNDECIDED" if row and row.offer_bound else "FAIL"
        checks.append({"target": target.label, "scenario": target.scenario, "factor": target.factor,
                       "ratio": ratio, "lower_bound": bool(row and row.offer_bound),
                       "round_ratios": _round_ratios(target.scenario, measurements),
                       "verdict": verdict})
    return checks


def _round_ratios(scenario: str, measurements: Sequence[Measurement]) -> list[float]:
    """Received pps of ``scenario`` over its baseline's, round by round."""
    received = {(m.scenario, m.round): m.received_pps for m in measurements}
    ratios = []
    for m in measurements:
        baseline = received.get((BASELINE[m.direction], m.round))
        if m.scenario == scenario and baseline:
            ratios.append(m.received_pps / baseline)
    return ratios


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


def chart(path: Path, rows: Sequence[Row], title: str) -> None:
    """Grouped bars per scenario: offered and received pps (median, whiskers min..max).

    Receive and send scenarios get a panel each, the AF_PACKET baseline first, in grey and
    as a dashed line across its panel. matplotlib is a bench extra, imported only here.
    """
    import matplotlib  # type: ignore[import-not-found,unused-ignore]

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # type: ignore[import-not-found,unused-ignore]

    panels = [(direction, sorted((row for row in rows if row.direction == direction),
                                 key=lambda row: row.scenario != BASELINE[direction]))
              for direction in ("rx", "tx")]
    panels = [(direction, panel_rows) for direction, panel_rows in panels if panel_rows]
    figure, axes = plt.subplots(
        1, len(panels), figsize=(15, 6.5), squeeze=False,
        gridspec_kw={"width_ratios": [len(panel_rows) for _, panel_rows in panels]},
    )
    for axis, (direction, panel_rows) in zip(axes[0], panels):
        _draw_panel(axis, direction, panel_rows)
    figure.suptitle(title)
    if any(row.offer_bound for row in rows):
        figure.text(0.01, 0.01, OFFER_BOUND_NOTE, fontsize=8)
    figure.tight_layout(rect=(0, 0.03, 1, 1))
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _draw_panel(axis: Any, direction: str, rows: Sequence[Row]) -> None:
    positions = list(range(len(rows)))
    width = 0.38
    is_baseline = [row.scenario == BASELINE[direction] for row in rows]
    axis.bar([p - width / 2 for p in positions], [row.offered_pps / 1e6 for row in rows], width,
             color="#c9d6e8", label="offered")
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
    baseline_rows = [row for row in rows if row.scenario == BASELINE[direction]]
    if baseline_rows:
        axis.axhline(baseline_rows[0].received_pps / 1e6, color="#888888", linestyle="--", linewidth=1)
    axis.set_xticks(positions)
    axis.set_xticklabels([f"{row.scenario}\n{row.mode}" if row.mode != "-" else row.scenario
                          for row in rows], rotation=30, ha="right", fontsize=8)
    axis.set_ylabel("million packets per second")
    axis.set_title({"rx": "receive (64-byte frames)", "tx": "send (64-byte frames)"}[direction])
    top = max(max(row.offered_pps, row.received_pps_max) for row in rows) / 1e6
    axis.set_ylim(0, top * 1.25)  # room for the legend
    axis.legend(fontsize=8, loc="upper left")
    axis.grid(axis="y", alpha=0.3)
