"""Self-contained HTML pages: the evaluation report and the daily drift report. Inline SVG plots, no scripts,
no external assets."""
from __future__ import annotations

import html
import json
from typing import Any, Iterable


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.4f}"
    return html.escape(str(v))


def line_chart(series: dict[str, list[tuple[float, float]]], title: str, xlabel: str, ylabel: str,
               diagonal: bool = False, w: int = 360, h: int = 300) -> str:
    pad = 40
    colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"]
    sx = lambda x: pad + x * (w - 2 * pad)  # noqa: E731
    sy = lambda y: h - pad - y * (h - 2 * pad)  # noqa: E731
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img" aria-label="{html.escape(title)}">',
             f'<rect x="{pad}" y="{pad}" width="{w - 2 * pad}" height="{h - 2 * pad}" fill="none" stroke="#999"/>',
             f'<text x="{w / 2}" y="18" text-anchor="middle" font-size="13" font-weight="bold">{html.escape(title)}</text>',
             f'<text x="{w / 2}" y="{h - 8}" text-anchor="middle" font-size="11">{html.escape(xlabel)}</text>',
             f'<text x="12" y="{h / 2}" text-anchor="middle" font-size="11" transform="rotate(-90 12 {h / 2})">{html.escape(ylabel)}</text>']
    for t in (0, 0.5, 1):
        parts.append(f'<text x="{sx(t)}" y="{h - pad + 14}" text-anchor="middle" font-size="10">{t}</text>')
        parts.append(f'<text x="{pad - 4}" y="{sy(t) + 3}" text-anchor="end" font-size="10">{t}</text>')
    if diagonal:
        parts.append(f'<line x1="{sx(0)}" y1="{sy(0)}" x2="{sx(1)}" y2="{sy(1)}" stroke="#bbb" stroke-dasharray="4"/>')
    for i, (name, pts) in enumerate(series.items()):
        c = colors[i % len(colors)]
        path = " ".join(f"{sx(min(max(x, 0), 1)):.1f},{sy(min(max(y, 0), 1)):.1f}" for x, y in pts)
        parts.append(f'<polyline fill="none" stroke="{c}" stroke-width="2" points="{path}"/>')
        parts.append(f'<text x="{pad + 8}" y="{pad + 16 + 14 * i}" font-size="11" fill="{c}">{html.escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(items: list[tuple], title: str, vmax: float = 1.0, w: int = 420) -> str:
    """Horizontal bars; an item (name, value[, (low, high)]) with an interval gets a whisker."""
    row, pad_l = 18, 210
    h = 30 + row * len(items) + 10
    span = w - pad_l - 50
    bx = lambda v: max(0.0, min(v / vmax, 1.0)) * span  # noqa: E731
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img" aria-label="{html.escape(title)}">',
             f'<text x="{w / 2}" y="16" text-anchor="middle" font-size="13" font-weight="bold">{html.escape(title)}</text>']
    for i, (name, v, *ci) in enumerate(items):
        y = 28 + i * row
        bw = 0 if v is None else bx(v)
        parts.append(f'<text x="{pad_l - 6}" y="{y + 12}" text-anchor="end" font-size="11">{html.escape(name)}</text>')
        parts.append(f'<rect x="{pad_l}" y="{y + 2}" width="{bw:.1f}" height="{row - 5}" fill="#4c78a8"/>')
        if ci and ci[0]:
            lo, hi = pad_l + bx(ci[0][0]), pad_l + bx(ci[0][1])
            parts.append(f'<line x1="{lo:.1f}" y1="{y + 8}" x2="{hi:.1f}" y2="{y + 8}" stroke="#222" stroke-width="1.5"/>'
                         f'<line x1="{lo:.1f}" y1="{y + 4}" x2="{lo:.1f}" y2="{y + 12}" stroke="#222"/>'
                         f'<line x1="{hi:.1f}" y1="{y + 4}" x2="{hi:.1f}" y2="{y + 12}" stroke="#222"/>')
            bw = max(bw, hi - pad_l)
        parts.append(f'<text x="{pad_l + bw + 4:.1f}" y="{y + 12}" font-size="10">{_fmt(v)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def histogram(labels: list[str], series: dict[str, list[float]], title: str, w: int = 440, h: int = 230) -> str:
    """Grouped bars: the share of each series per bin (a reference and a day), bins named by ``labels``."""
    pad_l, pad_b, pad_t = 40, 46, 34
    colors = ["#9db4cf", "#d62728"]
    n, k = max(len(labels), 1), max(len(series), 1)
    vmax = max([v for vals in series.values() for v in vals] or [1.0]) or 1.0
    slot = (w - pad_l - 10) / n
    bw = max(slot / (k + 1), 1.0)
    sy = lambda v: (h - pad_b) - v / vmax * (h - pad_b - pad_t)  # noqa: E731
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img" aria-label="{html.escape(title)}">',
             f'<text x="{w / 2}" y="16" text-anchor="middle" font-size="13" font-weight="bold">{html.escape(title)}</text>',
             f'<line x1="{pad_l}" y1="{h - pad_b}" x2="{w - 10}" y2="{h - pad_b}" stroke="#999"/>',
             f'<text x="{pad_l - 4}" y="{sy(vmax) + 4:.1f}" text-anchor="end" font-size="10">{vmax:.2f}</text>',
             f'<text x="{pad_l - 4}" y="{h - pad_b}" text-anchor="end" font-size="10">0</text>']
    for j, (name, vals) in enumerate(series.items()):
        c = colors[j % len(colors)]
        for i, v in enumerate(vals):
            x = pad_l + i * slot + (j + 0.5) * bw
            parts.append(f'<rect x="{x:.1f}" y="{sy(v):.1f}" width="{bw:.1f}" height="{(h - pad_b) - sy(v):.1f}" fill="{c}">'
                         f'<title>{html.escape(name)} {html.escape(labels[i] if i < len(labels) else "")}: {v:.4f}</title></rect>')
        parts.append(f'<text x="{w - 12}" y="{32 + 13 * j}" text-anchor="end" font-size="11" fill="{c}">{html.escape(name)}</text>')
    for i, lab in enumerate(labels):
        x = pad_l + (i + 0.5) * slot
        parts.append(f'<text x="{x:.1f}" y="{h - pad_b + 12}" text-anchor="end" font-size="9" '
                     f'transform="rotate(-35 {x:.1f} {h - pad_b + 12})">{html.escape(lab[:14])}</text>')
    parts.append("</svg>")
    return "".join(parts)


def time_chart(series: dict[str, list[tuple[str, float]]], title: str, ylabel: str, bar: float | None = None,
               w: int = 620, h: int = 260) -> str:
    """Lines over days (ISO dates on x, one point per day that has a value), with an optional horizontal
    ``bar`` (a threshold), y from 0 to 1."""
    pad = 44
    colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd"]
    days = sorted({d for pts in series.values() for d, _ in pts})
    pos = {d: i for i, d in enumerate(days)}
    sx = lambda d: pad + (pos[d] / max(len(days) - 1, 1)) * (w - 2 * pad)  # noqa: E731
    sy = lambda y: h - pad - min(max(y, 0.0), 1.0) * (h - 2 * pad)  # noqa: E731
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img" aria-label="{html.escape(title)}">',
             f'<rect x="{pad}" y="{pad}" width="{w - 2 * pad}" height="{h - 2 * pad}" fill="none" stroke="#999"/>',
             f'<text x="{w / 2}" y="18" text-anchor="middle" font-size="13" font-weight="bold">{html.escape(title)}</text>',
             f'<text x="12" y="{h / 2}" text-anchor="middle" font-size="11" transform="rotate(-90 12 {h / 2})">{html.escape(ylabel)}</text>']
    for t in (0, 0.5, 1):
        parts.append(f'<text x="{pad - 4}" y="{sy(t) + 3}" text-anchor="end" font-size="10">{t}</text>')
    if days:
        parts += [f'<text x="{sx(d):.1f}" y="{h - pad + 14}" text-anchor="middle" font-size="10">{html.escape(d)}</text>'
                  for d in {days[0], days[-1]}]
    if bar is not None:
        parts.append(f'<line x1="{pad}" y1="{sy(bar):.1f}" x2="{w - pad}" y2="{sy(bar):.1f}" stroke="#d62728" stroke-dasharray="4"/>'
                     f'<text x="{w - pad - 2}" y="{sy(bar) - 3:.1f}" text-anchor="end" font-size="10" fill="#d62728">bar {bar}</text>')
    for i, (name, pts) in enumerate(series.items()):
        c = colors[i % len(colors)]
        xy = " ".join(f"{sx(d):.1f},{sy(v):.1f}" for d, v in sorted(pts))
        parts.append(f'<polyline fill="none" stroke="{c}" stroke-width="2" points="{xy}"/>')
        parts += [f'<circle cx="{sx(d):.1f}" cy="{sy(v):.1f}" r="2.5" fill="{c}"><title>{html.escape(name)} {d}: {v:.4f}</title></circle>'
                  for d, v in pts]
        parts.append(f'<text x="{pad + 8}" y="{pad + 16 + 14 * i}" font-size="11" fill="{c}">{html.escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def shap_plot(shap: dict[str, Any], w: int = 600) -> str:
    """A SHAP summary (beeswarm-like) plot: one row per top feature, each sampled row a dot at its SHAP value,
    coloured from blue (low feature value) to red (high)."""
    feats = list(shap.get("mean_abs", {}))
    if not feats:
        return "<p>no SHAP summary</p>"
    row, pad_l, pad_r = 22, 170, 20
    h = 50 + row * len(feats)
    vals = [p[0] for f in feats for p in shap["points"][f]]
    vmax = max(abs(min(vals)), abs(max(vals))) or 1.0
    sx = lambda v: pad_l + (v + vmax) / (2 * vmax) * (w - pad_l - pad_r)  # noqa: E731
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img" aria-label="SHAP summary">',
             f'<text x="{w / 2}" y="16" text-anchor="middle" font-size="13" font-weight="bold">SHAP summary ({shap["rows"]} holdout rows)</text>',
             f'<line x1="{sx(0):.1f}" y1="24" x2="{sx(0):.1f}" y2="{h - 24}" stroke="#bbb"/>',
             f'<text x="{sx(0):.1f}" y="{h - 8}" text-anchor="middle" font-size="10">SHAP value (log-odds) 0; range ±{vmax:.2f}</text>']
    for i, f in enumerate(feats):
        y = 34 + i * row
        parts.append(f'<text x="{pad_l - 6}" y="{y + 4}" text-anchor="end" font-size="11">{html.escape(f)}</text>')
        for j, (v, q) in enumerate(shap["points"][f]):
            color = "#999" if q is None else f"rgb({int(255 * q)},{60},{int(255 * (1 - q))})"
            jitter = ((j * 37) % 11 - 5) * 0.9
            parts.append(f'<circle cx="{sx(v):.1f}" cy="{y + jitter:.1f}" r="1.8" fill="{color}" fill-opacity="0.7"/>')
    parts.append("</svg>")
    return "".join(parts)


FAIRNESS_COLS = ("auc_gap", "demographic_parity_difference", "disparate_impact_ratio", "equal_opportunity_difference",
                 "equalized_odds_difference")


def _ci(ci: list[float] | None) -> str | None:
    return None if not ci else f"{ci[0]:.3f}–{ci[1]:.3f}"


def table(rows: Iterable[dict[str, Any]], cols: list[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(r.get(c))}</td>" for c in cols) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render(doc: dict[str, Any]) -> str:
    """``doc``: the evaluation document (overall, slices, fairness, curves, blessing, importance); its
    ``task`` (binary, regression) picks the metrics, plots and fairness measures shown."""
    b = doc["blessing"]
    verdict = "BLESSED" if b["blessed"] else "NOT BLESSED"
    color = "#2ca02c" if b["blessed"] else "#d62728"
    imp = sorted(doc.get("importance", {}).items(), key=lambda kv: -kv[1])[:15]
    vmax = max([v for _, v in imp] or [1.0])
    sections = [
        f"<h1>trainyard evaluation — {html.escape(doc['dataset'])} · ds {html.escape(doc['ds'])}</h1>",
        f'<p class="verdict" style="color:{color}">{verdict} (gate mode: {html.escape(b["mode"])})</p>',
        f"<p>artifact sha256 <code>{html.escape(b['artifact_sha256'])}</code>; holdout {html.escape(str(doc['windows'].get('holdout')))}; "
        f"champion: {html.escape(str(doc.get('champion', {}).get('version') or 'none'))}</p>",
        f'<p>The data this model was trained on passed validation: <a href="../validation/{VALIDATION_PAGE}">'
        "the run's validation results</a> (in its run folder).</p>",
        "<h2>Gate checks</h2><p>A check with an interval (fairness) fails only when its whole 95% bootstrap "
        "interval is on the wrong side of the threshold; warnings never refuse.</p>",
        table([c | {"95ci": _ci(c.get("ci"))} for c in b["checks"]], ["name", "value", "95ci", "op", "threshold", "severity", "passed"]),
        *{"regression": _regression_sections, "multiclass": _multiclass_sections}.get(doc.get("task"), _binary_sections)(doc),
        "<h2>Feature importance (total gain)</h2>", bar_chart(imp, "Top features by total gain", vmax=vmax, w=600),
        "<h2>SHAP summary</h2>", shap_plot(doc.get("shap") or {}),
        "<h2>Lineage</h2>", f"<pre>{html.escape(json.dumps(doc.get('lineage', {}), indent=1))}</pre>",
    ]
    return _page("trainyard evaluation", sections)


def _slice_bars(slice_rows: list[dict], metric: str, title: str, vmax: float = 1.0) -> str:
    """One bar chart per single attribute: ``metric`` per slice with its 95% bootstrap interval."""
    return '<div class="plots">' + "".join(
        bar_chart([(f"{s['value']} (n={s['n']})", s[metric], s.get(f"{metric}_ci")) for s in slice_rows if s["attribute"] == attr],
                  f"{title} by {attr}", vmax=vmax)
        for attr in dict.fromkeys(s["attribute"] for s in slice_rows if " & " not in s["attribute"])) + "</div>"


def _overall_rows(doc: dict[str, Any]) -> list[dict]:
    champion = doc.get("champion", {}).get("overall")
    return [doc["overall"] | {"model": "challenger"}] + ([champion | {"model": "champion"}] if champion else [])


def _binary_sections(doc: dict[str, Any]) -> list[str]:
    curves = doc["curves"]
    roc = {"challenger": [(p["fpr"], p["tpr"]) for p in curves["challenger"]]}
    pr = {"challenger": [(p["recall"], p["precision"]) for p in curves["challenger"]]}
    if curves.get("champion"):
        roc["champion"] = [(p["fpr"], p["tpr"]) for p in curves["champion"]]
        pr["champion"] = [(p["recall"], p["precision"]) for p in curves["champion"]]
    calib = {"challenger": [(p["bin_mean_score"], p["bin_positive_rate"]) for p in sorted(curves["challenger"], key=lambda p: p["threshold"]) if p["bin_n"] >= 20]}
    slice_rows = doc["slices"]
    return [
        "<h2>Overall (holdout)</h2>", table(_overall_rows(doc), ["model", "n", "n_pos", "auc", "pr_auc", "logloss", "brier", "ece",
                                                                "precision", "recall", "f1", "recall_at_fpr"]),
        f"<p>operating threshold {_fmt(doc['threshold'])}; recall_at_fpr: recall at a false-positive rate of at most "
        f"{_fmt(doc.get('fpr_target'))}; ece: expected calibration error over 10 score bins.</p>",
        '<div class="plots">' + line_chart(roc, "ROC", "false positive rate", "true positive rate", diagonal=True)
        + line_chart(pr, "Precision-recall", "recall", "precision")
        + line_chart(calib, "Calibration", "mean predicted", "observed rate", diagonal=True) + "</div>",
        "<h2>Slices</h2><p>Bars: AUC per slice with its 95% bootstrap interval. Intersections of two attributes "
        "are listed when they hold at least the minimum slice size.</p>",
        _slice_bars(slice_rows, "auc", "AUC"),
        table([s | {"auc_95ci": _ci(s.get("auc_ci")), "recall_95ci": _ci(s.get("recall_ci"))} for s in slice_rows],
              ["attribute", "value", "n", "n_pos", "auc", "auc_95ci", "pr_auc", "predicted_positive_rate", "recall", "recall_95ci", "fpr", "ece"]),
        "<h2>Fairness</h2>", table([f | {k + " 95ci": _ci(f.get(k + "_ci")) for k in FAIRNESS_COLS} for f in doc["fairness"]],
                                   ["attribute", "slices"] + [c for k in FAIRNESS_COLS for c in (k, k + " 95ci")]
                                   + ["auc_gap_between", "equal_opportunity_difference_between"]),
    ]


REGRESSION_FAIRNESS_COLS = ("mae_gap", "mean_residual_gap")


def _multiclass_sections(doc: dict[str, Any]) -> list[str]:
    classes, slice_rows = doc.get("classes") or [], doc["slices"]
    overall = _overall_rows(doc)
    per_class = [{"class": c, **{f"{m} ({r['model']})": r.get(f"{m}[{c}]") for r in overall for m in ("recall", "precision")}}
                 for c in classes]
    return [
        "<h2>Overall (holdout)</h2>", table(overall, ["model", "n", "logloss", "accuracy", "macro_f1"]),
        "<p>Predicted class: the most probable one. macro_f1: the mean F1 over the classes.</p>",
        "<h2>Per class</h2>", table(per_class, ["class"] + [k for k in (per_class[0] if per_class else {}) if k != "class"]),
        "<h2>Slices</h2><p>Bars: macro-F1 per slice with its 95% bootstrap interval. Intersections of two "
        "attributes are listed when they hold at least the minimum slice size.</p>",
        _slice_bars(slice_rows, "macro_f1", "macro-F1"),
        table([s | {"macro_f1_95ci": _ci(s.get("macro_f1_ci"))} for s in slice_rows],
              ["attribute", "value", "n", "logloss", "accuracy", "macro_f1", "macro_f1_95ci"] + [f"recall[{c}]" for c in classes]),
        "<h2>Fairness</h2><p>Per sensitive attribute: the largest spread between its groups of one class's recall "
        "(whose class), and the spread of macro-F1.</p>",
        table([f | {"recall_gap 95ci": _ci(f.get("recall_gap_ci")), "macro_f1_gap 95ci": _ci(f.get("macro_f1_gap_ci"))}
               for f in doc["fairness"]],
              ["attribute", "slices", "recall_gap", "recall_gap 95ci", "recall_gap_class", "macro_f1_gap", "macro_f1_gap 95ci"]),
    ]


def _regression_sections(doc: dict[str, Any]) -> list[str]:
    curves = doc["curves"]
    fit = {"challenger": [(p["mean_score"], p["mean_label"]) for p in curves["challenger"]]}
    if curves.get("champion"):
        fit["champion"] = [(p["mean_score"], p["mean_label"]) for p in curves["champion"]]
    slice_rows = doc["slices"]
    mae_max = max([s["mae_ci"][1] if s.get("mae_ci") else s["mae"] or 0 for s in slice_rows] or [1.0]) or 1.0
    return [
        "<h2>Overall (holdout)</h2>", table(_overall_rows(doc), ["model", "n", "rmse", "mae", "r2", "mean_residual",
                                                                "mean_label", "mean_score"]),
        f"<p>label <code>{html.escape(str(doc.get('label')))}</code>; residual = prediction - label (above 0: "
        "over-predicted).</p>",
        '<div class="plots">' + line_chart(fit, "Predicted vs actual (20 prediction quantiles)", "mean predicted",
                                           "mean actual", diagonal=True) + "</div>",
        "<h2>Slices</h2><p>Bars: MAE per slice with its 95% bootstrap interval. Intersections of two attributes "
        "are listed when they hold at least the minimum slice size.</p>",
        _slice_bars(slice_rows, "mae", "MAE", vmax=mae_max),
        table([s | {"rmse_95ci": _ci(s.get("rmse_ci")), "mae_95ci": _ci(s.get("mae_ci")),
                    "mean_residual_95ci": _ci(s.get("mean_residual_ci"))} for s in slice_rows],
              ["attribute", "value", "n", "rmse", "rmse_95ci", "mae", "mae_95ci", "r2", "mean_residual", "mean_residual_95ci"]),
        "<h2>Fairness</h2><p>Per sensitive attribute: the spread between its groups of the MAE (whom the model "
        "serves worse) and of the mean residual (whom it over- or under-predicts), in the label's unit.</p>",
        table([f | {k + " 95ci": _ci(f.get(k + "_ci")) for k in REGRESSION_FAIRNESS_COLS} for f in doc["fairness"]],
              ["attribute", "slices"] + [c for k in REGRESSION_FAIRNESS_COLS for c in (k, k + " 95ci", k + "_between")]),
    ]


def _page(title: str, sections: list[str]) -> str:
    style = ("body{font-family:system-ui,sans-serif;margin:24px;color:#222}table{border-collapse:collapse;margin:8px 0}"
             "td,th{border:1px solid #ddd;padding:3px 8px;font-size:12px;text-align:right}th{background:#f3f3f3}"
             ".plots{display:flex;flex-wrap:wrap;gap:12px}.verdict{font-size:20px;font-weight:bold}pre{font-size:11px}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{style}</style>"
            f"</head><body>{''.join(sections)}</body></html>")


VALIDATION_PAGE = "index.html"


def render_validation(dataset: str, days: str, summaries: list[dict[str, Any]], data_docs: str | None) -> str:
    """A run's validation page (``<run>/validation/index.html``): per validated table, every expectation with
    its rule, severity, verdict and what was observed. It is self-contained (no script, no stylesheet from
    the network), so it opens offline; GX's Data Docs are linked beside it."""
    sections = [f"<h1>trainyard validation — {html.escape(dataset)} · {html.escape(days)}</h1>"]
    if data_docs:
        sections.append(f'<p>Great Expectations Data Docs (the same results, GX\'s own pages): '
                        f'<a href="{html.escape(data_docs)}">{html.escape(data_docs)}</a></p>')
    for s in summaries:
        ok = s["success"]
        sections.append(f"<h2>{html.escape(s['table'])} → {html.escape(s.get('publishes_to', ''))}</h2>"
                        f'<p class="verdict" style="color:{"#2ca02c" if ok else "#d62728"}">'
                        f'{"PASSED: published" if ok else "FAILED: nothing published"}</p>'
                        f"<p>suite {html.escape(str(s.get('suite')))} ({html.escape(str(s.get('suite_file') or 'from the spec'))}), "
                        f"Delta version {s.get('delta_version')} of {html.escape(s['table'])}; observed values are "
                        "recorded for failed expectations (a pass records its verdict)</p>")
        rows = [{"expectation": c["expectation"], "column": c["column"] or "(table)", "severity": c["severity"],
                 "verdict": "pass" if c["success"] else "FAIL",
                 "rule": ", ".join(f"{k}={v}" for k, v in c["kwargs"].items() if k != "column")[:200],
                 "observed": ", ".join(f"{k}={v}" for k, v in c["observed"].items() if k != "details")[:300]
                 or (c["exception"] or "")} for c in s["checks"]]
        sections.append(table(rows, ["expectation", "column", "rule", "severity", "verdict", "observed"]))
    return _page("trainyard validation", sections)


def render_drift(doc: dict[str, Any]) -> str:
    """The drift report of one monitored day. ``doc``: ``jobs.monitor``'s verdict (dataset, ds, model_version,
    retrain, reason, signals) plus ``top`` (the most drifted features: feature, kind, labels, reference and
    day shares, psi, second distance), ``score`` (the same for the scores, or None), ``realized`` (metric ->
    [(subject day, value)]) and ``bars`` (metric -> its bar)."""
    retrain = doc["retrain"]
    color = "#d62728" if retrain else "#2ca02c"
    verdict = "RETRAINING TRIGGERED" if retrain else "no retraining"
    sig_rows = [{"signal": k, **v} for k, v in doc["signals"].items()]
    sections = [
        f"<h1>trainyard drift report — {html.escape(doc['dataset'])} · ds {html.escape(doc['ds'])}</h1>",
        f'<p class="verdict" style="color:{color}">{verdict}</p><p>{html.escape(doc["reason"])}</p>',
        f"<p>model version {html.escape(str(doc.get('model_version')))} (its reference: the train window's profile, "
        f"the holdout's scores); {doc.get('rows')} example(s) of the day.</p>",
        "<h2>Signals of the day</h2>", table(sig_rows, ["signal", "on", "value", "detail"]),
        f"<h2>Most drifted features (top {len(doc['top'])})</h2>",
        '<div class="plots">' + "".join(
            histogram(t["labels"], {"reference (train window)": t["reference"], f"ds {doc['ds']}": t["day"]},
                      f"{t['feature']}: psi {_fmt(t['psi'])}, {t['second']} {_fmt(t['distance'])}")
            for t in doc["top"]) + "</div>",
        "<h2>Score distribution</h2>",
        (histogram(doc["score"]["labels"], {"reference (holdout)": doc["score"]["reference"], f"ds {doc['ds']}": doc["score"]["day"]},
                   f"scores: psi {_fmt(doc['score']['psi'])}") if doc.get("score") else
         "<p>not compared: the day was not served by a model with a score reference (a baseline served, or nothing)</p>"),
        "<h2>Realized performance over time</h2><p>Per day whose labels had matured, what served it; dashed: the bar.</p>",
        '<div class="plots">' + "".join(time_chart({m: pts}, f"realized {m}", m, bar=doc.get("bars", {}).get(m))
                                        for m, pts in doc.get("realized", {}).items() if pts) + "</div>",
        "<h2>Every drift figure of the day</h2>",
        table(doc.get("rows_table", []), ["kind", "metric", "feature", "slice", "value", "threshold", "breached"]),
    ]
    return _page("trainyard drift report", sections)


TASK_WORDS = {"regression": "regression", "multiclass": "multiclass classification"}


def _md(v: Any) -> str:
    """A markdown cell: numbers formatted, text as it is."""
    return v if isinstance(v, str) else _fmt(v)


def model_card(doc: dict[str, Any]) -> str:
    """A model card (markdown) from the evaluation document: what the model is, the data windows and table
    versions it came from, its metrics overall and per slice, fairness, the gate's verdict, and caveats."""
    b, m, f = doc["blessing"], doc.get("model") or {}, _md
    lines = [f"# Model card: {doc['dataset']} · ds {doc['ds']}", "",
             f"- **Task**: {TASK_WORDS.get(doc.get('task'), 'binary classification')} of "
             f"`{doc.get('label')}`; XGBoost (hist), trained on Spark; "
             f"artifact sha256 `{b['artifact_sha256']}`.",
             f"- **Verdict**: {'BLESSED' if b['blessed'] else 'NOT BLESSED'} (gate mode `{b['mode']}`): {'; '.join(b['reasons'])}.",
             f"- **Champion at evaluation**: {doc.get('champion', {}).get('version') or 'none'}.",
             f"- **Rounds**: {m.get('num_boosted_rounds')} (best iteration {m.get('best_iteration')}); "
             f"tuned params: {json.dumps(m.get('tuned')) if m.get('tuned') else 'none (params.yaml as is)'}.", "",
             "## Data", ""]
    for name, w in (doc.get("windows") or {}).items():
        lines.append(f"- {name}: {json.dumps(w)}")
    reads = {t: v for step in (doc.get("lineage") or {}).values() for t, v in step.items()}
    lines += ["", "Delta table versions read: " + ", ".join(f"`{t}@v{v}`" for t, v in sorted(reads.items())), "",
              "## Metrics (holdout)", "", "| metric | value |", "| --- | ---: |"]
    lines += {"regression": _regression_card_metrics, "multiclass": _multiclass_card_metrics}.get(
        doc.get("task"), _binary_card_metrics)(doc)
    lines += ["", "## Gate checks", "", "| check | value | op | threshold | severity | passed |", "| --- | ---: | --- | ---: | --- | --- |"]
    lines += [f"| {c['name']} | {f(c['value'])} | {c['op']} | {f(c['threshold'])} | {c.get('severity', 'blocking')} | {c['passed']} |"
              for c in b["checks"]]
    lines += ["", "## Caveats", "",
              "- Metrics come from one time-based holdout window; the interval columns show how much a slice's metric "
              "moves under resampling of that window, not under drift.",
              "- Slices under the minimum size are listed but left out of the fairness checks; intersections under it are not listed.",
              *(["- Scores are not calibrated probabilities when `scale_pos_weight` reweights the classes (see ece); use "
                 "rankings or re-calibrate before reading them as probabilities."] if doc.get("task", "binary") == "binary" else []),
              f"- Sensitive attributes ({', '.join(doc.get('sensitive') or [])}) are evaluated, never used as model inputs.", ""]
    return "\n".join(lines)


def _card_slices(slices: list[dict], cols: dict[str, str]) -> list[str]:
    """The model card's slice table: slice, n, then ``cols`` (header: key; an ``_ci`` key is an interval)."""
    lines = ["| slice | n | " + " | ".join(cols) + " | flagged |",
             "| --- | ---: | " + " | ".join("---" if k.endswith("_ci") else "---:" for k in cols.values()) + " | --- |"]
    for s in slices:
        cells = [(_ci(s.get(k)) or "–") if k.endswith("_ci") else _md(s.get(k)) for k in cols.values()]
        lines.append(f"| {s['attribute']}={s['value']} | {s['n']} | " + " | ".join(cells) + f" | {'small' if s.get('small') else ''} |")
    return lines


def _binary_card_metrics(doc: dict[str, Any]) -> list[str]:
    o, f = doc["overall"], _md
    lines = [f"| {k} | {f(o.get(k))} |" for k in ("n", "n_pos", "auc", "pr_auc", "logloss", "brier", "ece", "precision",
                                                    "recall", "f1", "recall_at_fpr")]
    lines += ["", f"Threshold {doc['threshold']}; recall_at_fpr at FPR <= {doc.get('fpr_target')}.", "",
              "## Slices (95% bootstrap intervals)", ""]
    lines += _card_slices(doc["slices"], {"positives": "n_pos", "AUC": "auc", "AUC 95% CI": "auc_ci", "recall": "recall"})
    lines += ["", "## Fairness (per sensitive attribute)", "",
              "| attribute | AUC gap | demographic parity diff | disparate impact ratio | equal opportunity diff | equalized odds diff |",
              "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in doc["fairness"]:
        lines.append(f"| {r['attribute']} | {f(r['auc_gap'])} | {f(r['demographic_parity_difference'])} | "
                     f"{f(r['disparate_impact_ratio'])} | {f(r['equal_opportunity_difference'])} | {f(r['equalized_odds_difference'])} |")
    return lines


def _regression_card_metrics(doc: dict[str, Any]) -> list[str]:
    o, f = doc["overall"], _md
    lines = [f"| {k} | {f(o.get(k))} |" for k in ("n", "rmse", "mae", "r2", "mean_residual", "mean_label", "mean_score")]
    lines += ["", "Residual = prediction - label.", "", "## Slices (95% bootstrap intervals)", ""]
    lines += _card_slices(doc["slices"], {"RMSE": "rmse", "MAE": "mae", "MAE 95% CI": "mae_ci", "mean residual": "mean_residual"})
    lines += ["", "## Fairness (per sensitive attribute)", "", "| attribute | MAE gap | mean residual gap |",
              "| --- | ---: | ---: |"]
    lines += [f"| {r['attribute']} | {f(r['mae_gap'])} | {f(r['mean_residual_gap'])} |" for r in doc["fairness"]]
    return lines


def _multiclass_card_metrics(doc: dict[str, Any]) -> list[str]:
    o, f, classes = doc["overall"], _md, doc.get("classes") or []
    lines = [f"| {k} | {f(o.get(k))} |" for k in ("n", "logloss", "accuracy", "macro_f1")]
    lines += [f"| recall[{c}] | {f(o.get(f'recall[{c}]'))} |" for c in classes]
    lines += ["", f"Classes: {', '.join(classes)}; the predicted class is the most probable one.", "",
              "## Slices (95% bootstrap intervals)", ""]
    lines += _card_slices(doc["slices"], {"macro-F1": "macro_f1", "95% CI": "macro_f1_ci", "accuracy": "accuracy"})
    lines += ["", "## Fairness (per sensitive attribute)", "", "| attribute | recall gap | of class | macro-F1 gap |",
              "| --- | ---: | --- | ---: |"]
    lines += [f"| {r['attribute']} | {f(r['recall_gap'])} | {r.get('recall_gap_class') or '–'} | {f(r['macro_f1_gap'])} |"
              for r in doc["fairness"]]
    return lines
