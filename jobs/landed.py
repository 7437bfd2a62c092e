"""Landed: is the landing of [--start-ds, --ds] complete? Exit 0 when every source of the dataset has its
completeness marker (``<landing>/<source path>/ds=YYYY-MM-DD/_SUCCESS``) for every day of the range; exit
75 ("not yet", EX_TEMPFAIL) naming each marker still missing. The nightly DAG's sensor calls this and waits
(rescheduling itself) until the day has landed or its timeout passes; nothing is read or written."""
from __future__ import annotations

import sys

from jobs.common.cli import StepContext, run_step
from jobs.common.landing import MARKER, missing_markers

NOT_YET = 75


def run(ctx: StepContext) -> None:
    sources = list(ctx.dataset.sources.values())
    missing = missing_markers(ctx.settings.landing, sources, ctx.start_ds, ctx.ds)
    days = f"ds={ctx.ds}" if ctx.start_ds == ctx.ds else f"ds={ctx.start_ds}..{ctx.ds}"
    if missing:
        shown = missing[:10] + ([f"... and {len(missing) - 10} more"] if len(missing) > 10 else [])
        print(f"landed {ctx.dataset.name} {days}: not complete, {len(missing)} {MARKER} marker(s) missing: "
              + ", ".join(shown), flush=True)
        sys.exit(NOT_YET)
    print(f"landed {ctx.dataset.name} {days}: complete ({len(sources)} source(s), every day marked {MARKER})")


def main(argv: list[str] | None = None) -> None:
    run_step("landed", run, argv, __doc__, record=False)


if __name__ == "__main__":
    main()
