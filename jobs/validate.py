"""Validate: a Great Expectations checkpoint on the silver partitions of the run, one suite per table
(``expectations/<dataset>_silver_<source>.json``). A failed *critical* expectation fails the run before
features and training start; a failed *warning* is recorded and the run goes on. Results are stored per ds
in the run folder and rendered as Data Docs in the GX project folder."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jobs.common import delta_io
from jobs.common.cli import StepContext, run_step
from jobs.common.files import write_json_atomic
from jobs.common.config import REPO_ROOT
from jobs.common.errors import ConfigError, ValidationFailed

EXPECTATIONS_DIR = REPO_ROOT / "expectations"


def suite_path(dataset: str, source: str) -> Path:
    return EXPECTATIONS_DIR / f"{dataset}_silver_{source}.json"


def load_suite(path: Path, mostly_overrides: dict[str, float] | None = None):
    """Build a GX suite from its versioned file; ``mostly`` per column may be overridden from params."""
    import great_expectations as gx
    doc = json.loads(path.read_text())
    exps = doc.get("expectations", [])
    for e in exps:
        col = e.get("kwargs", {}).get("column")
        if mostly_overrides and col in mostly_overrides and "mostly" in e["kwargs"]:
            e["kwargs"]["mostly"] = float(mostly_overrides[col])
    suite = gx.ExpectationSuite(name=doc["name"], expectations=exps, meta=doc.get("meta"))
    if len(suite.expectations) != len(exps):  # GX only logs an invalid expectation: refuse instead
        raise ConfigError(f"{path}: {len(exps) - len(suite.expectations)} expectation(s) are not valid GX configurations")
    return suite


def summarise(result, details: dict[int, Any] | None = None) -> dict[str, Any]:
    """The part of a GX validation result a person reads: each expectation, its severity and verdict (with
    the observed values from ``details`` where a failure was explained)."""
    checks = []
    for i, r in enumerate(result.results):
        cfg = r.expectation_config
        res = (details or {}).get(i, r).result or {}
        checks.append({
            "expectation": cfg.type, "column": cfg.kwargs.get("column"), "severity": str(getattr(cfg, "severity", "critical")).split(".")[-1].lower(),
            "success": bool(r.success), "kwargs": {k: v for k, v in cfg.kwargs.items() if k not in ("batch_id",)},
            "observed": {k: res[k] for k in ("observed_value", "unexpected_count", "unexpected_percent", "element_count",
                                             "details") if k in res},
            "exception": (r.exception_info or {}).get("exception_message") if r.exception_info and r.exception_info.get("raised_exception") else None,
        })
    failed_critical = [c for c in checks if not c["success"] and c["severity"] == "critical"]
    return {"success": not failed_critical, "checks": checks,
            "failed_critical": failed_critical, "failed_warning": [c for c in checks if not c["success"] and c["severity"] != "critical"]}


def describe_failure(table: str, c: dict[str, Any]) -> str:
    what = f"{c['expectation']}" + (f" on column '{c['column']}'" if c["column"] else "")
    obs = c["observed"]
    detail = ", ".join(f"{k}={obs[k]}" for k in ("unexpected_count", "unexpected_percent", "observed_value") if k in obs)
    if c["expectation"] == "expect_table_columns_to_match_set":
        expected = set(c["kwargs"].get("column_set", []))
        found = set(obs.get("observed_value") or [])
        detail = f"missing {sorted(expected - found)}, unexpected {sorted(found - expected)}"
    return f"{table}: {what} failed ({detail or c['exception'] or 'see result'})"


class GxRunner:
    """One GX file project per storage root: datasource, assets and checkpoints are declared idempotently."""

    def __init__(self, project_dir: str):
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig
        self.gx = gx
        self.context = gx.get_context(mode="file", project_root_dir=project_dir)
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False)
        self.datasource = self.context.data_sources.add_or_update_spark(name="trainyard_spark")

    def validate(self, df, asset_name: str, suite, run_name: str):
        """Run the suite's checkpoint (result stored, Data Docs updated) with BOOLEAN_ONLY results: every
        expectation's verdict from a few bundled Spark aggregations. SUMMARY would add one more Spark job per
        map expectation for its sample of unexpected values (1M-row bench: 7.1 s -> 5.6 s per validation,
        bench/RESULTS.md); ``explain`` gets
        those for the failed expectations only. Returns (result, batch definition)."""
        gx = self.gx
        try:
            asset = self.datasource.get_asset(asset_name)
        except LookupError:
            asset = self.datasource.add_dataframe_asset(name=asset_name)
        try:
            batch_def = asset.get_batch_definition("whole_partition")
        except (KeyError, LookupError):
            batch_def = asset.add_batch_definition_whole_dataframe("whole_partition")
        suite = self.context.suites.add_or_update(suite)
        vd = self.context.validation_definitions.add_or_update(
            gx.ValidationDefinition(name=f"{asset_name}__{suite.name}", data=batch_def, suite=suite))
        cp = self.context.checkpoints.add_or_update(gx.Checkpoint(
            name=f"{suite.name}_checkpoint", validation_definitions=[vd],
            actions=[gx.checkpoint.UpdateDataDocsAction(name="data_docs")],
            result_format={"result_format": "BOOLEAN_ONLY"}))
        # No df.cache(): GX's metric queries each touch a few columns, and Parquet column pruning makes them
        # cheaper than materialising every column in memory first.
        res = cp.run(batch_parameters={"dataframe": df}, run_id=gx.core.run_identifier.RunIdentifier(run_name=run_name))
        return list(res.run_results.values())[0], batch_def

    def explain(self, df, batch_def, result) -> dict[int, Any]:
        """SUMMARY results (unexpected counts, sample values, observed values) for the failed expectations of
        ``result``, keyed by their position in it."""
        failed = [i for i, r in enumerate(result.results) if not r.success]
        if not failed:
            return {}
        configs = [result.results[i].expectation_config for i in failed]
        suite = self.gx.ExpectationSuite(name="explain_failures", expectations=[
            {"type": c.type, "kwargs": {k: v for k, v in c.kwargs.items() if k != "batch_id"}} for c in configs])
        detail = batch_def.get_batch(batch_parameters={"dataframe": df}).validate(suite, result_format="SUMMARY")
        return dict(zip(failed, detail.results))

    def docs_index(self) -> str | None:
        sites = self.context.get_docs_sites_urls()
        return sites[0].get("site_url") if sites else None


def run(ctx: StepContext) -> None:
    from jobs.common.spark import get_spark
    spark = get_spark(ctx.settings, "validate")
    mostly = (ctx.step_params().get("mostly") or {})
    gx_runner = None
    failures: list[str] = []
    for source in ctx.dataset.sources.values():
        path = suite_path(ctx.dataset.name, source.name)
        if not path.exists():
            print(f"validate: no suite {path.relative_to(REPO_ROOT)}, {source.name} not validated")
            continue
        table = f"silver_{source.name}"
        df = (delta_io.read_pinned(spark, ctx.table(table), ctx.reads, table)
              .where(delta_io.ds_predicate(ctx.start_ds, ctx.ds)))
        gx_runner = gx_runner or GxRunner(ctx.settings.gx + f"/{ctx.dataset.name}")
        result, batch_def = gx_runner.validate(df, f"{ctx.dataset.name}_{table}", load_suite(path, mostly.get(source.name)),
                                               run_name=f"ds={ctx.ds.isoformat()}")
        summary = summarise(result, gx_runner.explain(df, batch_def, result))
        summary.update({"table": table, "suite": path.name, "ds": ctx.ds.isoformat(), "start_ds": ctx.start_ds.isoformat(),
                        "delta_version": ctx.reads[table]})
        write_json_atomic(ctx.run_dir / "validation" / f"{table}.json", summary)
        ctx.counts[table] = {"checks": len(summary["checks"]), "failed_critical": len(summary["failed_critical"]),
                             "failed_warning": len(summary["failed_warning"])}
        for c in summary["failed_warning"]:
            print(f"validate WARNING {describe_failure(table, c)}")
        failures += [describe_failure(table, c) for c in summary["failed_critical"]]
    if gx_runner:
        ctx.counts["data_docs"] = gx_runner.docs_index()
        print(f"validate: Data Docs at {ctx.counts['data_docs']}")
    if failures:
        raise ValidationFailed("critical expectation(s) failed: " + "; ".join(failures))


def main(argv: list[str] | None = None) -> None:
    run_step("validate", run, argv, __doc__)


if __name__ == "__main__":
    main()
