"""Summary: where a run's outputs are (tables, validation, report, published model) and whether the run
completed. Exit code 1 if a step of that ds did not finish; ``make run`` ends with it."""
from __future__ import annotations

import json
import sys

from jobs.common.cli import StepContext, run_step

STEPS = ("etl", "validate", "features", "train", "evaluate", "publish")


def run(ctx: StepContext) -> None:
    from jobs.registry import open_registry
    lineage = ctx.run_dir / "lineage"
    done = {s: json.loads((lineage / f"{s}.json").read_text()) for s in STEPS if (lineage / f"{s}.json").exists()}
    print(f"\n== trainyard run: dataset {ctx.dataset.name}, ds {ctx.ds} ==")
    tables = sorted({t for d in done.values() for t in d.get("writes", {})})
    print("Delta tables:")
    for t in tables:
        print(f"  {t:<24} {ctx.table(t)}")
    for name, c in done.get("etl", {}).get("counts", {}).items():
        print(f"  etl {name}: {c}")
    for f in sorted((ctx.run_dir / "validation").glob("*.json")):
        v = json.loads(f.read_text())
        print(f"GX validation {v.get('publishes_to', v['table'])}: {'passed' if v['success'] else 'FAILED (not published)'} "
              f"({len(v['failed_warning'])} warning(s)) -> {f}")
    if "data_docs" in done.get("validate", {}).get("counts", {}):
        print(f"GX Data Docs: {done['validate']['counts']['data_docs']}")
    ev = ctx.run_dir / "evaluation"
    if (ev / "metrics.json").exists():
        m = json.loads((ev / "metrics.json").read_text())
        from jobs.metrics import headline  # pyspark only when a model's figures are shown
        print(f"evaluation: {headline(m)}, blessed {m['blessed']}")
        print(f"report: {ev / 'report.html'}")
    reg = open_registry(ctx.settings.registry)
    champ = reg.alias(ctx.dataset.name, "champion")
    if champ:
        print(f"published model (champion): {reg.location(ctx.dataset.name, champ['version'])}")
    missing = [s for s in STEPS if s not in done]
    blessed = json.loads((ev / "blessing.json").read_text())["blessed"] if (ev / "blessing.json").exists() else None
    if missing and not (missing == ["publish"] and blessed is False):
        print(f"INCOMPLETE: step(s) {missing} did not finish for ds {ctx.ds}", file=sys.stderr)
        sys.exit(1)


def main(argv: list[str] | None = None) -> None:
    run_step("summary", run, argv, __doc__, record=False)


if __name__ == "__main__":
    main()
