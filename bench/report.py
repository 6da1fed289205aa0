"""Markdown tables of the results (readable as plain text too)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from bench.wrk import WrkResult


@dataclass
class Row:
    target: str          # hutch / original
    backend: str         # sqlite / mariadb
    variant: str         # small / others-20k / users-10x2k
    key: str             # ES256 / RS256
    workload: str
    conns: int
    runs: list[WrkResult] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)
    db_us: list[float] = field(default_factory=list)
    other_pct: list[float] = field(default_factory=list)

    @property
    def rps(self) -> list[float]:
        return [run.rps for run in self.runs]

    @property
    def median_rps(self) -> float:
        return statistics.median(self.rps) if self.runs else 0.0

    @property
    def p99(self) -> float:
        return statistics.median(run.p99_ms for run in self.runs) if self.runs else 0.0

    @property
    def p50(self) -> float:
        return statistics.median(run.p50_ms for run in self.runs) if self.runs else 0.0

    @property
    def bad(self) -> int:
        return sum(run.status_errors + run.socket_errors for run in self.runs)

    @property
    def total(self) -> int:
        return sum(run.requests for run in self.runs)


def _ms(value: float) -> str:
    return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 100 else f"{value:.0f}"


def _int(value: float) -> str:
    return f"{value:,.0f}"


def table(headers: list[str], rows: list[list[str]], right: set[int] | None = None) -> str:
    right = right if right is not None else set(range(1, len(headers)))
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]

    def line(cells):
        return "| " + " | ".join(c.rjust(w) if i in right else c.ljust(w)
                                 for i, (c, w) in enumerate(zip(cells, widths, strict=True))) + " |"

    sep = "|" + "|".join(("-" * (w + 1) + ":") if i in right else ("-" * (w + 2))
                         for i, w in enumerate(widths)) + "|"
    return "\n".join([line(headers), sep, *(line(r) for r in rows)])


def throughput_table(rows: list[Row]) -> str:
    headers = ["server", "db", "data", "key", "workload", "c", "req/s min", "median", "max",
               "p50 ms", "p99 ms", "CPU µs/req", "DB µs/req", "non-2xx", "other CPU"]
    body = []
    for r in rows:
        rps = r.rps
        shares = (f"{100 * r.bad / r.total:.2f}%" if r.total else "-") if r.bad else "0"
        body.append([
            r.target, r.backend, r.variant, r.key, r.workload, str(r.conns),
            _int(min(rps)), _int(statistics.median(rps)), _int(max(rps)),
            _ms(r.p50), _ms(r.p99),
            _int(statistics.median(r.cpu_us)),
            _int(statistics.median(r.db_us)) if r.db_us else "-",
            shares,
            f"{max(r.other_pct):.0f}%",
        ])
    return table(headers, body, right=set(range(5, len(headers))))


def comparison_table(rows: list[Row]) -> str:
    """hutch vs original: median req/s at the lowest concurrency, p99 at the highest."""
    index = {(r.target, r.backend, r.variant, r.key, r.workload, r.conns): r for r in rows}
    conns = sorted({r.conns for r in rows})
    low, high = conns[0], conns[-1]
    body = []
    for r in sorted(rows, key=lambda row: row.key != "ES256"):
        if r.target != "hutch" or r.conns != low:
            continue
        o = index.get(("original", r.backend, r.variant, r.key, r.workload, low))
        if o is None:
            continue
        h_hi = index.get(("hutch", r.backend, r.variant, r.key, r.workload, high))
        o_hi = index.get(("original", r.backend, r.variant, r.key, r.workload, high))
        body.append([
            r.backend, r.variant, r.key, r.workload,
            _int(r.median_rps), _int(o.median_rps),
            f"{r.median_rps / o.median_rps:.2f}×" if o.median_rps else "-",
            _ms(h_hi.p99) if h_hi else "-", _ms(o_hi.p99) if o_hi else "-",
        ])
    headers = ["db", "data", "key", "workload", f"hutch req/s c={low}",
               f"original c={low}", "ratio", f"hutch p99 c={high}", f"original p99 c={high}"]
    return table(headers, body, right=set(range(4, len(headers))))


def scale_table(rows: list[Row]) -> str:
    """Each scale variant's median req/s relative to the small data set."""
    index = {(r.target, r.backend, r.variant, r.key, r.workload, r.conns): r for r in rows}
    body = []
    for r in rows:
        if r.variant == "small" or r.key != "ES256":
            continue
        base = index.get((r.target, r.backend, "small", r.key, r.workload, r.conns))
        if base is None or not base.median_rps:
            continue
        body.append([r.target, r.backend, r.variant, r.workload, str(r.conns),
                     _int(base.median_rps), _int(r.median_rps),
                     f"{100 * (r.median_rps / base.median_rps - 1):+.1f}%",
                     _ms(base.p99), _ms(r.p99)])
    headers = ["server", "db", "data", "workload", "c", "small req/s", "req/s", "change",
               "small p99 ms", "p99 ms"]
    return table(headers, body, right=set(range(4, len(headers))))
