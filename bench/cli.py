"""``python -m bench``: drive Hutch (and optionally the original C server) with wrk."""

from __future__ import annotations

import argparse
import datetime
import os
import resource
import secrets
import shlex
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

from bench import crypto, proc, report, wrk
from bench.client import parallel
from bench.report import Row
from bench.targets import (
    Database,
    HutchTarget,
    MariaDBServer,
    OriginalTarget,
    Target,
    find_original_schema,
)

COIN_BYTES = 200
BASE_COINS = 100
BIG_COIN = 16 * 1024 * 1024 - 1          # the contract's largest coin (HUTCH-API.md §7.4)
LIST_SIZES = (100, 1000, 5000)
LIST_COIN_BYTES = 2048
WORKLOADS = ("profile", "list", "put", "post")
VARIANTS = {
    "small": "1 user, safe s with 100 coins of 200 B",
    "others-20k": "+ 20,000 coins in 10 other safes of the same user",
    "users-10x2k": "+ 10 other users, each with 2,000 coins",
}


def blob(size: int) -> str:
    """``size`` characters of base64url, like the JWE strings clients store."""
    return secrets.token_urlsafe(size)[:size]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cpu_busy_seconds() -> float:
    """User+system CPU time of the whole machine (all cores) from /proc/stat, less what
    kernel threads used (I/O journal commits and the like are the server's doing)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:3])) / proc.CLOCK_TICKS - proc.kernel_threads_cpu_seconds()


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path):
        self.args = args
        self.workdir = workdir
        self.scripts = wrk.write_scripts(workdir)
        self.idp = crypto.IdentityProvider(workdir)
        self.sign_jwks = workdir / "sign.jwks"
        crypto.signing_jwks(self.sign_jwks, with_rs256=args.rs256)
        self.token = self.idp.token("bench-user")
        self.mariadb = MariaDBServer.from_url(args.mariadb_url)
        self.db_pid = proc.find_process("mariadbd", "mysqld")
        self.rows: list[Row] = []
        self.list_sizes: list[list[str]] = []
        self.memory: list[list[str]] = []
        self.seeding: list[str] = []
        self.failures: list[str] = []
        self.run_counter = 0

    # -- servers -------------------------------------------------------------------------

    def make_target(self, kind: str, backend: str, folder: Path, db: Database) -> Target:
        if kind == "hutch":
            return HutchTarget(folder, db, self.sign_jwks, self.idp.public_jwks,
                               self.args.workers)
        binary = Path(self.args.original).resolve()
        schema = find_original_schema(binary, backend, self.args.original_sql)
        return OriginalTarget(folder, db, self.sign_jwks, self.idp.public_jwks, binary, schema)

    # -- seeding -------------------------------------------------------------------------

    def seed_coins(self, target: Target, token: str, safe: str, count: int, size: int,
                   prefix: str = "c") -> None:
        names = [prefix if i == 0 and prefix == "c" else f"{prefix}{i}" for i in range(count)]
        client = target.client
        parallel([lambda n=n: client.api("POST", f"safe/{safe}/coin", token,
                                         {"name": n, "data": blob(size)})
                  for n in names], self.args.seed_threads)

    def seed(self, target: Target, variant: str) -> None:
        start = time.monotonic()
        client, token = target.client, self.token
        client.api("PUT", "profile", token, {"name": "bench user", "sign_kid": "ES256"})
        client.api("POST", "safe", token, {"name": "s", "display_name": "bench"})
        self.seed_coins(target, token, "s", BASE_COINS, COIN_BYTES)
        extra = 0
        if variant == "others-20k":
            for i in range(10):
                client.api("POST", "safe", token, {"name": f"o{i}"})
            calls = [lambda i=i, j=j: client.api("POST", f"safe/o{i}/coin", token,
                                                 {"name": f"c{j}", "data": blob(COIN_BYTES)})
                     for j in range(2000) for i in range(10)]
            parallel(calls, self.args.seed_threads)
            extra = 20000
        elif variant == "users-10x2k":
            for u in range(10):
                other = self.idp.token(f"other-user-{u}")
                client.api("PUT", "profile", other, {"name": f"user {u}", "sign_kid": "ES256"})
                client.api("POST", "safe", other, {"name": "s"})
                self.seed_coins(target, other, "s", 2000, COIN_BYTES)
            extra = 20000
        took = time.monotonic() - start
        total = BASE_COINS + extra
        line = (f"{target.label} {target.database.backend} {variant}: {total:,} coins through "
                f"the API in {took:.1f} s ({total / took:,.0f} coins/s, "
                f"{self.args.seed_threads} client threads)")
        self.seeding.append(line)
        log("  seeded: " + line)

    # -- one measured run ----------------------------------------------------------------

    def wrk_args(self, workload: str) -> tuple[str, Path, list[str]]:
        if workload == "profile":
            return "/api/profile", self.scripts["static"], ["GET"]
        if workload == "list":
            return "/api/safe/s/coin", self.scripts["static"], ["GET"]
        if workload == "put":
            return ("/api/safe/s/coin/c", self.scripts["static"],
                    ["PUT", f'{{"data":"{blob(COIN_BYTES)}"}}'])
        self.run_counter += 1
        return ("/api/safe/s/coin", self.scripts["unique_post"],
                [f"r{self.run_counter}{secrets.token_hex(3)}", blob(COIN_BYTES)])

    def measure(self, target: Target, workload: str, conns: int, duration: float,
                path: str | None = None) -> tuple[wrk.WrkResult, float, float, float]:
        default_path, script, args = self.wrk_args(workload)
        ncpu = os.cpu_count() or 1
        cpu0, db0 = target.cpu_seconds(), self._db_cpu()
        busy0, kids0, wall0 = cpu_busy_seconds(), children_cpu_seconds(), time.monotonic()
        result = wrk.run(target.url + (path or default_path), script, args, self.token, conns,
                         self.args.threads, duration)
        cpu1, db1 = target.cpu_seconds(), self._db_cpu()
        busy1, kids1, wall1 = cpu_busy_seconds(), children_cpu_seconds(), time.monotonic()
        server = cpu1 - cpu0
        db = db1 - db0 if self.db_pid and target.database.backend == "mariadb" else 0.0
        other = max(0.0, (busy1 - busy0) - server - db - (kids1 - kids0))
        per = max(result.requests, 1)
        if not target.alive():
            raise RuntimeError(f"{target.label} exited during the run:\n{target.tail_log()}")
        return result, server * 1e6 / per, db * 1e6 / per, 100 * other / (ncpu * (wall1 - wall0))

    def _db_cpu(self) -> float:
        return proc.process_cpu_seconds(self.db_pid) if self.db_pid else 0.0

    def workloads(self, target: Target, variant: str, key: str, names) -> None:
        a = self.args
        for workload in names:
            if a.warmup > 0:
                warm, *_ = self.measure(target, workload, a.concurrency[0], a.warmup)
                if warm.status_errors or warm.socket_errors:
                    log(f"  warm-up of {workload}: {warm.status_errors} non-2xx, "
                        f"{warm.socket_errors} socket errors")
            for conns in a.concurrency:
                row = Row(target.label, target.database.backend, variant, key, workload, conns)
                for rep in range(a.repeat):
                    result, cpu_us, db_us, other = self.measure(target, workload, conns,
                                                                a.duration)
                    row.runs.append(result)
                    row.cpu_us.append(cpu_us)
                    if target.database.backend == "mariadb" and self.db_pid:
                        row.db_us.append(db_us)
                    row.other_pct.append(other)
                    flag = ""
                    if result.status_errors or result.socket_errors:
                        flag = (f"  !! {result.status_errors} non-2xx, {result.socket_errors} "
                                f"socket errors")
                    log(f"  {target.label:8} {target.database.backend:7} {variant:11} {key} "
                        f"{workload:7} c={conns:<3} run {rep + 1}/{a.repeat}: "
                        f"{result.rps:8,.0f} req/s  p50 {result.p50_ms:7.2f} ms  "
                        f"p99 {result.p99_ms:7.2f} ms  CPU {cpu_us:6,.0f} µs/req  "
                        f"other {other:3.0f}%{flag}")
                self.rows.append(row)

    # -- extra measurements --------------------------------------------------------------

    def list_size_timing(self, target: Target) -> None:
        client, token = target.client, self.token
        for size in LIST_SIZES:
            safe = f"l{size}"
            client.api("POST", "safe", token, {"name": safe})
            self.seed_coins(target, token, safe, size, LIST_COIN_BYTES, prefix="x")
            answer = client.api("GET", f"safe/{safe}/coin", token)
            result, cpu_us, _, other = self.measure(target, "list", 1, self.args.duration,
                                                    path=f"/api/safe/{safe}/coin")
            self.list_sizes.append([
                target.label, target.database.backend, f"{size:,}", f"{len(answer):,}",
                f"{result.p50_ms:.1f}", f"{result.p99_ms:.1f}",
                f"{result.p50_ms / size * 1000:.1f}", f"{cpu_us:,.0f}", str(result.requests),
                str(result.status_errors + result.socket_errors)])
            log(f"  list of {size} coins of {LIST_COIN_BYTES} B: median {result.p50_ms:.1f} ms"
                f" ({result.requests} requests at c=1, {len(answer):,} B)")

    def memory_test(self, target: Target) -> None:
        """Worker RSS while storing and fetching 16 MiB coins, on a freshly started server."""
        target.restart()
        client, token = target.client, self.token
        for _ in range(20):
            client.api("GET", "profile", token)
        time.sleep(0.5)
        base = {pid: proc.memory_kib(pid).get("VmRSS", 0) for pid in target.workers()}
        client.api("POST", "safe", token, {"name": "m"})
        data = blob(BIG_COIN)
        with proc.RssSampler(target.workers) as store:
            client.api("POST", "safe/m/coin", token, {"name": "big", "data": data})
            client.api("PUT", "safe/m/coin/big", token, {"data": data[::-1]})
        answer_len = 0
        with proc.RssSampler(target.workers) as fetch:
            for _ in range(3):
                answer_len = len(client.api("GET", "safe/m/coin/big", token))
        hwm = max((proc.memory_kib(pid).get("VmHWM", 0) for pid in target.workers()), default=0)
        mib = 1024.0

        def growth(peaks: dict[int, int]) -> float:
            return max((peak - base.get(pid, peak) for pid, peak in peaks.items()), default=0)

        self.memory.append([
            target.label, target.database.backend, str(len(base)),
            f"{max(base.values(), default=0) / mib:.0f}",
            f"{max(store.peak.values(), default=0) / mib:.0f}",
            f"{max(fetch.peak.values(), default=0) / mib:.0f}",
            f"{hwm / mib:.0f}",
            f"{growth(fetch.peak) * 1024 / BIG_COIN:.1f}×",
            f"{answer_len / 1024 / 1024:.1f}",
        ])
        log(f"  memory: baseline {max(base.values(), default=0) / mib:.0f} MiB, store peak "
            f"{max(store.peak.values(), default=0) / mib:.0f} MiB, fetch peak "
            f"{max(fetch.peak.values(), default=0) / mib:.0f} MiB, VmHWM {hwm / mib:.0f} MiB")

    # -- the whole run -------------------------------------------------------------------

    def run_one(self, kind: str, backend: str, variant: str) -> None:
        a = self.args
        folder = self.workdir / f"{kind}-{backend}-{variant}"
        folder.mkdir()
        db = Database(backend, folder, self.mariadb)
        target = None
        try:
            target = self.make_target(kind, backend, folder, db)
            log(f"{kind} on {backend}, data: {variant} ({VARIANTS[variant]}), port "
                f"{target.port}")
            target.start()
            self.seed(target, variant)
            # POST adds coins to safe s, so it runs last: every list sees exactly 100 coins.
            self.workloads(target, variant, "ES256", [w for w in a.workloads if w != "post"])
            if variant == "small" and a.rs256:
                target.client.api("PUT", "profile", self.token,
                                  {"name": "bench user", "sign_kid": "RS256"})
                self.workloads(target, variant, "RS256",
                               [w for w in a.workloads if w in ("profile", "list")])
                target.client.api("PUT", "profile", self.token,
                                  {"name": "bench user", "sign_kid": "ES256"})
            if "post" in a.workloads:
                self.workloads(target, variant, "ES256", ["post"])
            if variant == "small":
                if a.scale:
                    self.list_size_timing(target)
                if not a.no_memory:
                    self.memory_test(target)
        except Exception as exc:  # noqa: BLE001 - report, then go on with the next one
            message = f"{kind} on {backend} ({variant}): {exc}"
            self.failures.append(message)
            log("FAILED: " + message)
            if not isinstance(exc, RuntimeError):
                traceback.print_exc()
            if target is not None:
                log("server log (last lines):\n" + target.tail_log())
        finally:
            if target is not None:
                target.stop()
            if not a.keep:
                db.drop()

    def run(self) -> int:
        a = self.args
        kinds = ["hutch"] + (["original"] if a.original else [])
        backends = list(a.backends)
        if "mariadb" in backends:
            reason = self.mariadb.unavailable()
            if reason:
                log(f"skipping MariaDB: {reason}")
                backends.remove("mariadb")
        variants = ["small"] + (["others-20k", "users-10x2k"] if a.scale else [])
        for backend in backends:
            for variant in variants:
                for kind in kinds:
                    self.run_one(kind, backend, variant)
        return 0


def print_report(bench: Bench, args: argparse.Namespace, floor, started: str,
                 load: tuple, out) -> None:
    m = proc.machine()
    w = out.write
    w(f"\n## Hutch benchmark — {started}\n\n")
    w(f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory']} RAM, Linux {m['kernel']}, "
      f"Python {m['python']}. Load average at start {load[0]:.2f}, at end "
      f"{os.getloadavg()[0]:.2f}.\n\n")
    w(f"Command: `{args.command_line}`\n\n")
    w(f"wrk -t{args.threads} --latency, {args.duration:g} s × {args.repeat} per row "
      f"(+ {args.warmup:g} s warm-up per workload), `hutch serve --workers {args.workers}`, "
      f"ES256 signing key unless the key column says RS256. Seeded: "
      f"{VARIANTS['small']}.\n\n")
    w("### Crypto floor: joserfc on one core (in-process)\n\n")
    w(report.table(["operation", "ops/s", "µs/op"],
                   [[name, f"{rate:,.0f}", f"{1e6 / rate:.0f}"] for name, rate in floor]))
    w("\n\n### Throughput\n\n")
    if bench.rows:
        w(report.throughput_table(sorted(bench.rows, key=lambda r: r.key != "ES256")))
        w("\n\nCPU µs/req: user+system time of the server's process tree over the run "
          "divided by the requests answered; DB µs/req: the same for mariadbd; other CPU: "
          "share of the machine busy with processes other than the server, the database and "
          "wrk (noise from elsewhere; kernel threads excluded); non-2xx: answers with status "
          "≥ 400 plus socket errors over all requests (must be 0).\n")
    if any(r.target == "original" for r in bench.rows):
        w("\n### Hutch vs the original C server\n\n")
        w(report.comparison_table(bench.rows))
        w("\n")
    if any(r.variant != "small" for r in bench.rows):
        w("\n### Scale: change against the small data set\n\n")
        w(report.scale_table(bench.rows))
        w("\n")
    if bench.list_sizes:
        w(f"\n### List size (coins of {LIST_COIN_BYTES:,} B, c=1)\n\n")
        w(report.table(["server", "db", "coins", "answer B", "median ms", "p99 ms",
                        "ms per 1,000 coins", "CPU µs/req", "requests", "errors"],
                       bench.list_sizes, right=set(range(2, 10))))
        w("\n")
    if bench.memory:
        w(f"\n### Memory: storing and fetching a {BIG_COIN + 1 >> 20} MiB coin\n\n")
        w(report.table(["server", "db", "workers", "baseline MiB", "peak storing MiB",
                        "peak fetching MiB", "VmHWM MiB", "fetch growth / payload",
                        "answer MiB"], bench.memory, right=set(range(2, 9))))
        w("\n\nPer worker (the largest of them): VmRSS sampled every 5 ms from /proc during "
          "POST+PUT of the coin, then during 3 GETs; VmHWM at the end. Growth = peak during "
          "the GETs minus that worker's RSS before the test, over the 16 MiB payload.\n")
    if bench.seeding:
        w("\n### Seeding\n\n" + "\n".join(f"- {line}" for line in bench.seeding) + "\n")
    bad = [r for r in bench.rows if r.bad]
    if bad:
        w("\n**Non-2xx or socket errors in:** " + ", ".join(
            f"{r.target}/{r.backend}/{r.variant}/{r.workload}/c={r.conns} ({r.bad})"
            for r in bad) + "\n")
    if bench.failures:
        w("\n**Failures:**\n" + "\n".join(f"- {f}" for f in bench.failures) + "\n")


def parse_args(argv) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--backends", default="sqlite,mariadb",
                   help="comma-separated: sqlite, mariadb (default both)")
    p.add_argument("--workers", type=int, default=2, help="hutch serve --workers (default 2)")
    p.add_argument("--duration", type=float, default=10, help="seconds per run (default 10)")
    p.add_argument("--repeat", type=int, default=3, help="runs per row (default 3)")
    p.add_argument("--warmup", type=float, help="warm-up seconds per workload (default 2)")
    p.add_argument("--concurrency", default="16,64", help="wrk -c values (default 16,64)")
    p.add_argument("--threads", type=int, default=2, help="wrk -t (default 2)")
    p.add_argument("--workloads", default=",".join(WORKLOADS),
                   help="comma-separated subset of " + ",".join(WORKLOADS))
    p.add_argument("--quick", action="store_true", help="smoke run: --duration 3 --repeat 1")
    p.add_argument("--rs256", action="store_true",
                   help="also sign with an RS256 key (profile and list workloads)")
    p.add_argument("--scale", action="store_true",
                   help="add 20,000 coins in other safes, 10 users × 2,000 coins, and the "
                        "100/1,000/5,000-coin list timing")
    p.add_argument("--original", metavar="BINARY",
                   help="also measure the original C server (its hutch binary)")
    p.add_argument("--original-sql", type=Path, metavar="DIR",
                   help="folder with the original's hutch.sqlite3.sql and hutch.mariadb.sql "
                        "(default: docs/ beside the binary or its parent)")
    p.add_argument("--mariadb-url",
                   default=os.environ.get("HUTCH_BENCH_MARIADB_URL",
                                          "mysql+pymysql://root@127.0.0.1:3306/"),
                   help="MariaDB server to create the bench database on "
                        "($HUTCH_BENCH_MARIADB_URL)")
    p.add_argument("--seed-threads", type=int, default=16, help="client threads for seeding")
    p.add_argument("--no-memory", action="store_true", help="skip the 16 MiB memory test")
    p.add_argument("--output", type=Path, help="also write the report (Markdown) to this file")
    p.add_argument("--keep", action="store_true",
                   help="keep the work folder and MariaDB databases (for debugging)")
    args = p.parse_args(argv)
    if args.quick:
        args.duration, args.repeat = 3, 1
    if args.warmup is None:
        args.warmup = 1 if args.quick else 2
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    for backend in args.backends:
        if backend not in ("sqlite", "mariadb"):
            p.error(f"unknown backend {backend!r}")
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    args.workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    for workload in args.workloads:
        if workload not in WORKLOADS:
            p.error(f"unknown workload {workload!r}")
    if args.original and not os.access(args.original, os.X_OK):
        p.error(f"--original {args.original}: not an executable file")
    args.command_line = "python -m bench" + "".join(f" {shlex.quote(a)}" for a in argv)
    return args


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    wrk.ensure_wrk()
    started = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    load = os.getloadavg()
    log("crypto floor: joserfc sign/verify on one core ...")
    floor = crypto.floor(0.5 if args.quick else 2.0)
    workdir = Path(tempfile.mkdtemp(prefix="hutch-bench-"))
    bench = Bench(args, workdir)
    try:
        bench.run()
    except KeyboardInterrupt:
        log("interrupted: reporting what was measured")
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            log(f"work folder kept: {workdir}")
    print_report(bench, args, floor, started, load, sys.stdout)
    if args.output:
        with args.output.open("w", encoding="utf-8") as out:
            print_report(bench, args, floor, started, load, out)
    failed = bench.failures or any(r.bad for r in bench.rows)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
