"""Validate (write-audit-publish): a Great Expectations checkpoint on the rows ``etl`` staged for the run's
ds partitions (``staged_<source>``), one suite per table: the rules the dataset spec states, generated
(``spec_expectations``), plus what it cannot say from ``expectations/<dataset>_silver_<source>.json`` if there
is one (or the prefix a spec's ``expectations:`` names); then, only if no *critical* expectation failed, the staged
partitions are published to ``silver_<source>`` (the only table features and scoring read). A failed critical expectation leaves silver exactly as it was
and fails the run naming the expectation; a failed *warning* is recorded and the run goes on. Results are
stored per ds in the run folder either way and rendered as Data Docs in the GX project folder.

Publishing replaces the run's silver partitions with the staged ones and removes from other days the rows
the staged ones supersede (``_supersedes_ds``: a later event for the same key, see jobs/etl.py)."""
from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

from jobs.common import delta_io
from jobs.common.cli import StepContext, run_step
from jobs.common.files import write_json_atomic
from jobs.common.config import REPO_ROOT
from jobs.common.errors import ConfigError, ValidationFailed

EXPECTATIONS_DIR = REPO_ROOT / "expectations"


SILVER_META = ["_source_file", "_ingest_run_id", "_row_hash", "ds"]  # what etl adds to every silver row


def suite_path(dataset: str, source: str) -> Path:
    return EXPECTATIONS_DIR / f"{dataset}_silver_{source}.json"


def spec_expectations(source) -> list[dict[str, Any]]:
    """The expectations a source's spec states, all critical: its silver columns (the declared ones, the
    enrichments', etl's metadata) and no other; at least one row (unless the source may be empty); the key
    not null and unique; every ``nullable: false`` column not null, every ``min``/``max`` a range, every
    ``values`` list a set. Each one's ``meta.from`` names the spec key it comes from."""
    where = f"sources.{source.name}"
    columns = source.column_names + [c for e in source.enrich for c in e.columns]

    def exp(kind: str, origin: str, **kwargs) -> dict[str, Any]:
        return {"type": kind, "severity": "critical", "kwargs": kwargs, "meta": {"from": f"spec: {where}{origin}"}}
    out = [exp("expect_table_columns_to_match_set", ".columns", column_set=columns + SILVER_META, exact_match=True)]
    if not source.allow_empty:
        out.append(exp("expect_table_row_count_to_be_between", ".allow_empty", min_value=1))
    out += [exp("expect_column_values_to_not_be_null", ".key", column=source.key),
            exp("expect_column_values_to_be_unique", ".key", column=source.key)]
    for c in source.columns:
        at = f".columns.{c.name}"
        if not c.nullable and c.name != source.key:
            out.append(exp("expect_column_values_to_not_be_null", at, column=c.name))
        if c.min is not None or c.max is not None:
            out.append(exp("expect_column_values_to_be_between", at, column=c.name,
                           **{k: v for k, v in (("min_value", c.min), ("max_value", c.max)) if v is not None}))
        if c.values:
            out.append(exp("expect_column_values_to_be_in_set", at, column=c.name, value_set=list(c.values)))
    return out


def build_suite(spec, source, mostly_overrides: dict[str, float] | None = None):
    """The GX suite of a source's silver rows: ``spec_expectations``, then what the spec cannot say from
    ``expectations/<prefix>_silver_<source>.json`` if there is one (means, regexes, warnings, ``mostly``). A
    file expectation of the same type and column replaces the spec's (a warning instead, a ``mostly``).
    ``mostly`` of a column's row-wise rules may be overridden from params (``validate.mostly``). Returns (suite, the file or None)."""
    import great_expectations as gx
    path = suite_path(spec.expectations, source.name)
    doc = json.loads(path.read_text()) if path.exists() else {}
    extra = doc.get("expectations", [])
    replaced = {(e["type"], e.get("kwargs", {}).get("column")) for e in extra}
    exps = [e for e in spec_expectations(source) if (e["type"], e["kwargs"].get("column")) not in replaced] + extra
    for e in exps:
        col = e.get("kwargs", {}).get("column")
        if mostly_overrides and col in mostly_overrides and e["type"].startswith("expect_column_values_"):  # row-wise rules
            e["kwargs"]["mostly"] = float(mostly_overrides[col])
    name = f"{spec.expectations}_silver_{source.name}"
    suite = gx.ExpectationSuite(name=name, expectations=exps, meta=doc.get("meta") or {"table": f"silver_{source.name}"})
    if len(suite.expectations) != len(exps):  # GX only logs an invalid expectation: refuse instead
        raise ConfigError(f"{path if extra else spec.path}: {len(exps) - len(suite.expectations)} expectation(s) of "
                          f"suite {name} are not valid GX configurations")
    return suite, (path if path.exists() else None)


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


def publish_source(spark, ctx: StepContext, source) -> dict[str, int]:
    """Make the staged partitions of [start_ds, ds] silver's (replaceWhere), then delete from other days
    the rows they supersede. Reads the staged version this run validated."""
    from delta.tables import DeltaTable
    from pyspark.sql import functions as F

    from jobs.etl import SUPERSEDES
    staged_name, silver_name = f"staged_{source.name}", f"silver_{source.name}"
    staged = (delta_io.read_pinned(spark, ctx.table(staged_name), ctx.reads, staged_name, version=ctx.reads.get(staged_name))
              .where(delta_io.ds_predicate(ctx.start_ds, ctx.ds)))  # the version GX judged, not a newer one
    commit = delta_io.replace_partitions(staged.drop(SUPERSEDES), ctx.table(silver_name), ctx.start_ds, ctx.ds,
                                         writes=ctx.writes, name=silver_name)
    old = staged.where(F.col(SUPERSEDES).isNotNull()).select(F.col(source.key).alias("_key"), F.col(SUPERSEDES).alias("_ds"))
    days = sorted({r["_ds"] for r in old.select("_ds").distinct().collect()})
    removed = 0
    if days:
        listed = ", ".join(f"DATE'{d.isoformat()}'" for d in days)  # partition pruning: only those days are read
        delta_io.with_conflict_retry(lambda: DeltaTable.forPath(spark, ctx.table(silver_name)).alias("t").merge(
            old.alias("s"), f"t.ds IN ({listed}) AND t.`{source.key}` = s._key AND t.ds = s._ds").whenMatchedDelete().execute())
        removed = int(DeltaTable.forPath(spark, ctx.table(silver_name)).history(1).collect()[0]["operationMetrics"]
                      .get("numTargetRowsDeleted", 0))
        ctx.writes[silver_name] = delta_io.latest_version(spark, ctx.table(silver_name))
    return {"rows_published": commit.rows, "superseded_rows_removed": removed}


def validation_results(run_dir: Path) -> dict[str, bool]:
    """The validation results stored in a run folder, one per silver table: path -> passed."""
    return {str(p): bool(json.loads(p.read_text())["success"]) for p in sorted((run_dir / "validation").glob("silver_*.json"))}


def day_published(ctx: StepContext) -> str | None:
    """Why the run's day needs no etl or validate again (it was validated and published to silver, by a run
    of this very ds), or None. The run folder tells: validate's lineage (written once its publish finished)
    and a passed result for every source it audited."""
    lineage = ctx.run_dir / "lineage" / "validate.json"
    if ctx.start_ds != ctx.ds or not lineage.exists():
        return None
    doc = json.loads(lineage.read_text())
    if doc.get("ds") != ctx.ds.isoformat() or not all(validation_results(ctx.run_dir).values()):  # a range ending at ds: fine
        return None
    return f"ds {ctx.ds} was validated and published to silver by run {doc.get('run_id')}"


def run(ctx: StepContext) -> None:
    from jobs.common.spark import concurrently, get_spark
    from jobs.etl import SUPERSEDES
    spark = get_spark(ctx.settings, "validate")
    mostly = (ctx.step_params().get("mostly") or {})
    gx_runner = None
    failures: list[str] = []
    audited, summaries = [], []
    for source in ctx.dataset.sources.values():
        table = f"staged_{source.name}"
        if not delta_io.is_delta(spark, ctx.table(table)):
            print(f"validate: {table} does not exist (etl staged nothing for {source.name}); nothing to publish")
            continue
        audited.append(source)
        suite, path = build_suite(ctx.dataset, source, mostly.get(source.name))
        df = (delta_io.read_pinned(spark, ctx.table(table), ctx.reads, table)
              .where(delta_io.ds_predicate(ctx.start_ds, ctx.ds)).drop(SUPERSEDES))  # the rows as silver will hold them
        gx_runner = gx_runner or GxRunner(ctx.settings.gx + f"/{ctx.dataset.name}")
        result, batch_def = gx_runner.validate(df, f"{ctx.dataset.name}_silver_{source.name}",
                                               suite, run_name=f"ds={ctx.ds.isoformat()}")
        summary = summarise(result, gx_runner.explain(df, batch_def, result))
        silver = f"silver_{source.name}"
        summary.update({"table": table, "publishes_to": silver, "suite": suite.name,
                        "suite_file": path.name if path else None, "ds": ctx.ds.isoformat(),
                        "start_ds": ctx.start_ds.isoformat(), "delta_version": ctx.reads[table]})
        write_json_atomic(ctx.run_dir / "validation" / f"{silver}.json", summary)
        summaries.append(summary)
        ctx.counts[table] = {"checks": len(summary["checks"]), "failed_critical": len(summary["failed_critical"]),
                             "failed_warning": len(summary["failed_warning"])}
        for c in summary["failed_warning"]:
            print(f"validate WARNING {describe_failure(silver, c)}")
        failures += [describe_failure(silver, c) for c in summary["failed_critical"]]
    if gx_runner:
        from jobs import report
        ctx.counts["data_docs"] = gx_runner.docs_index()
        page = ctx.run_dir / "validation" / report.VALIDATION_PAGE
        page.write_text(report.render_validation(ctx.dataset.name, ctx.days, summaries, ctx.counts["data_docs"]))
        ctx.counts["validation_page"] = str(page)
        print(f"validate: results at {page.as_uri()} (GX Data Docs: {ctx.counts['data_docs']})")
    if failures:
        raise ValidationFailed("critical expectation(s) failed, nothing published to silver: " + "; ".join(failures))
    # every source passed: the run's days become visible in silver, each source's table side by side
    for source, counts in zip(audited, concurrently(*[partial(publish_source, spark, ctx, s) for s in audited])):
        ctx.counts[f"silver_{source.name}"] = counts
        print(f"validate: published {ctx.dataset.name}.{source.name} {ctx.start_ds}..{ctx.ds} to silver: "
              f"{ctx.counts[f'silver_{source.name}']}")
    published = [c["rows_published"] for c in ctx.counts.values() if isinstance(c, dict) and "rows_published" in c]
    ctx.rows = None if None in published else sum(published)  # None: a commit whose row count Delta did not give
    ctx.figure = (f"{sum(len(s['checks']) for s in summaries)} expectations passed on {len(summaries)} table(s) "
                  f"({sum(len(s['failed_warning']) for s in summaries)} warnings); published to silver")


def main(argv: list[str] | None = None) -> None:
    run_step("validate", run, argv, __doc__, done=day_published)


if __name__ == "__main__":
    main()
