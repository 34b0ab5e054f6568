"""``python -m Functions report RUN``: the one-page project report of a run (``RUN/project_report.md``).

Reads the run's own files - the plan and its fingerprint, the split and a fresh
leakage check, the test figures at native resolution (from the latest
``evaluate --run`` folder, else the run's test metrics), the worst cases, the
export checks - and ends with what to distrust about the figures.  The file
holds nothing but what those files say, so it is rewritten each time.
"""

from __future__ import annotations

NAME = "report"
HELP = "one-page project report of a run: data, split and leakage, plan, native-resolution figures, worst cases, export"
DESCRIPTION = __doc__.split("\n", 2)[2].strip() if __doc__ else HELP


def add_arguments(p) -> None:
    p.add_argument("run", metavar="RUN", help="a run folder written by `train`")
    p.add_argument("--evaluation", metavar="DIR",
                   help="the `evaluate --run` folder to report (default: the run's latest evaluation-test folder)")
    p.add_argument("--out", metavar="FILE", help="where to write it (default RUN/project_report.md)")
    p.add_argument("--no-leakage", action="store_true", help="skip the leakage check (groups and near-duplicates)")


def run(args) -> int:
    from Functions.apps.project_report import write_project_report

    path = write_project_report(args.run, evaluation=args.evaluation, out=args.out, leakage=not args.no_leakage)
    print(f"project report -> {path}")
    return 0
