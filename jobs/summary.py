"""Summary: where a run's outputs are and whether the run completed (``make run`` ends with it): every Delta
table of the dataset with its version and rows, the validation verdicts, the evaluation, the published
model, links to the report, the validation results, GX's Data Docs and the model card, and the total wall
time when ``TRAINYARD_RUN_STARTED`` (epoch seconds) says when the run began. Exit code 1 if a step of that
ds did not finish."""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from jobs.common import storage
from jobs.common.cli import StepContext, run_step

STEPS = ("etl", "validate", "features", "train", "evaluate", "publish")


def _link(path: str | Path) -> str:
    """A local file as a file:// link a terminal opens; anything else as it is."""
    return Path(path).resolve().as_uri() if "://" not in str(path) and Path(path).exists() else str(path)


def delta_tables(ctx: StepContext, written: dict[str, int]) -> list[tuple[str, str, int | None, int | None]]:
    """(name, path, version, rows) of the dataset's Delta tables: every one in its lake folder, read from their
    logs (``delta_io.log_figures``, no Spark); on a remote lake the tables the run wrote, at the version it wrote."""
    from jobs.common.delta_io import log_figures
    root = storage.join(ctx.settings.lake, ctx.dataset.name)
    if storage.is_remote(root) or not os.path.isdir(root):
        return [(name, ctx.table(name), version, None) for name, version in sorted(written.items())]
    out = []
    for name in sorted(os.listdir(root)):
        figures = log_figures(os.path.join(root, name))
        if figures:
            out.append((name, ctx.table(name), *figures))
    return out


def run(ctx: StepContext) -> None:
    from jobs.registry import open_registry
    lineage = ctx.run_dir / "lineage"
    done = {s: json.loads((lineage / f"{s}.json").read_text()) for s in STEPS if (lineage / f"{s}.json").exists()}
    print(f"\n== trainyard run: dataset {ctx.dataset.name}, ds {ctx.ds} ==")
    written = {t: v for d in done.values() for t, v in d.get("writes", {}).items()}
    tables = delta_tables(ctx, written)
    print(f"Delta tables ({len(tables)}; * written by this run):")
    for name, path, version, rows in tables:
        figures = f"v{version:<4} " + (f"{rows:>11,} rows" if rows is not None else f"{'?':>11} rows")
        print(f"  {'*' if name in written else ' '} {name:<26} {figures}  {path}")
    for f in sorted((ctx.run_dir / "validation").glob("*.json")):
        v = json.loads(f.read_text())
        print(f"GX validation {v.get('publishes_to', v['table'])}: {'passed' if v['success'] else 'FAILED (not published)'} "
              f"({len(v['checks'])} expectations, {len(v['failed_warning'])} warning(s))")
    counts = done.get("validate", {}).get("counts", {})
    if counts.get("validation_page"):
        print(f"validation results: {_link(counts['validation_page'])}")
    if counts.get("data_docs"):
        print(f"GX Data Docs:       {counts['data_docs']}")
    ev = ctx.run_dir / "evaluation"
    if (ev / "metrics.json").exists():
        m = json.loads((ev / "metrics.json").read_text())
        from jobs.metrics import headline  # pyspark only when a model's figures are shown
        print(f"evaluation: {headline(m)}, blessed {m['blessed']}")
        print(f"report:             {_link(ev / 'report.html')}")
        print(f"model card:         {_link(ev / 'model_card.md')}")
    reg = open_registry(ctx.settings.registry)
    champ = reg.alias(ctx.dataset.name, "champion")
    if champ:
        print(f"champion:           {champ['version']} at {reg.location(ctx.dataset.name, champ['version'])}")
    started = os.environ.get("TRAINYARD_RUN_STARTED")
    if started:
        took = time.time() - float(started)
        print(f"total wall time: {int(took // 60)} min {took % 60:.0f} s")
    missing = [s for s in STEPS if s not in done]
    blessed = json.loads((ev / "blessing.json").read_text())["blessed"] if (ev / "blessing.json").exists() else None
    if missing and not (missing == ["publish"] and blessed is False):
        print(f"INCOMPLETE: step(s) {missing} did not finish for ds {ctx.ds}", file=sys.stderr)
        sys.exit(1)


def main(argv: list[str] | None = None) -> None:
    run_step("summary", run, argv, __doc__, record=False)


if __name__ == "__main__":
    main()
