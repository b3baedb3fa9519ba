"""Time an audit of one preset on generated cases, stage by stage.

Generates ``--n`` cases (default 1,000) of the preset's task, runs
:func:`medreward.audit.run.run_audit` with every rule-based probe, the exploit search
(``--budget`` evaluations) and the reward benchmark, writes the report (HTML + JSON, with its
plots), and prints the seconds of each stage (``AuditReport.timings``) and the total.

    python benchmarks/bench_audit.py                          # toxicology, 1,000 cases
    python benchmarks/bench_audit.py --preset icd_coding --n 500 --budget 100
    python benchmarks/bench_audit.py --no-search --no-benchmark   # baselines and probes only

Target (issue 12): one preset on 1,000 cases with all rule-based probes in under a minute on 2 cores.
Needs the ``audit`` extra (matplotlib) for the report.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

from medreward.audit.report import write_report
from medreward.audit.run import run_audit
from medreward.cli.audit import resolve_task
from medreward.compose.spec import load_spec
from medreward.runner import Scorer
from medreward.tasks import get_task

TARGET_SECONDS = 60.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="toxicology", help="Preset (or spec path) to audit.")
    parser.add_argument("--n", type=int, default=1000, help="Generated cases.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--budget", type=int, default=200, help="Exploit-search evaluations.")
    parser.add_argument("--no-search", action="store_true", help="Skip the exploit search.")
    parser.add_argument("--no-benchmark", action="store_true", help="Skip the reward benchmark.")
    args = parser.parse_args()

    spec = load_spec(args.preset)
    task = resolve_task(spec)
    clock = time.perf_counter()
    cases = get_task(task).generate(args.n, args.seed)
    generate_s = time.perf_counter() - clock

    clock = time.perf_counter()
    scorer = Scorer(spec)
    report = run_audit(scorer, cases, exploit_budget=args.budget, benchmark=not args.no_benchmark,
                       search=not args.no_search, seed=args.seed)  # fmt: skip
    audit_s = time.perf_counter() - clock
    with tempfile.TemporaryDirectory() as out:
        clock = time.perf_counter()
        write_report(report, out)
        report_s = time.perf_counter() - clock

    cpus = os.cpu_count()
    print(f"audit of {spec.name} ({task}) on {args.n} generated cases · python {platform.python_version()} · {cpus} CPUs")
    print(f"{'stage':<16}{'seconds':>10}")
    print(f"{'generate cases':<16}{generate_s:>10.2f}")
    for stage, seconds in report.timings.items():
        if stage != "total":
            print(f"{stage:<16}{seconds:>10.2f}")
    print(f"{'write report':<16}{report_s:>10.2f}")
    total = audit_s + report_s
    print(f"{'total':<16}{total:>10.2f}   (audit {audit_s:.2f} + report {report_s:.2f}; target < {TARGET_SECONDS:.0f} s)")
    n_probes = len(report.probes.results) if report.probes is not None else 0
    print(f"{n_probes} probes, {report.exploit.evaluations if report.exploit else 0} search evaluations, "
          f"{report.benchmark.n_items if report.benchmark else 0} benchmark items; flagged: {report.flagged or 'nothing'}")  # fmt: skip


if __name__ == "__main__":
    main()
