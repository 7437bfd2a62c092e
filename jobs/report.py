"""A self-contained HTML evaluation report: inline SVG plots, no scripts, no external assets."""
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


def bar_chart(items: list[tuple[str, float | None]], title: str, vmax: float = 1.0, w: int = 420) -> str:
    row, pad_l = 18, 210
    h = 30 + row * len(items) + 10
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img" aria-label="{html.escape(title)}">',
             f'<text x="{w / 2}" y="16" text-anchor="middle" font-size="13" font-weight="bold">{html.escape(title)}</text>']
    for i, (name, v) in enumerate(items):
        y = 28 + i * row
        bw = 0 if v is None else max(0.0, min(v / vmax, 1.0)) * (w - pad_l - 50)
        parts.append(f'<text x="{pad_l - 6}" y="{y + 12}" text-anchor="end" font-size="11">{html.escape(name)}</text>')
        parts.append(f'<rect x="{pad_l}" y="{y + 2}" width="{bw:.1f}" height="{row - 5}" fill="#4c78a8"/>')
        parts.append(f'<text x="{pad_l + bw + 4:.1f}" y="{y + 12}" font-size="10">{_fmt(v)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def table(rows: Iterable[dict[str, Any]], cols: list[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(r.get(c))}</td>" for c in cols) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render(doc: dict[str, Any]) -> str:
    """``doc``: the evaluation document (overall, slices, fairness, curves, blessing, importance)."""
    b = doc["blessing"]
    verdict = "BLESSED" if b["blessed"] else "NOT BLESSED"
    color = "#2ca02c" if b["blessed"] else "#d62728"
    curves = doc["curves"]
    roc = {"challenger": [(p["fpr"], p["tpr"]) for p in curves["challenger"]]}
    pr = {"challenger": [(p["recall"], p["precision"]) for p in curves["challenger"]]}
    if curves.get("champion"):
        roc["champion"] = [(p["fpr"], p["tpr"]) for p in curves["champion"]]
        pr["champion"] = [(p["recall"], p["precision"]) for p in curves["champion"]]
    calib = {"challenger": [(p["bin_mean_score"], p["bin_positive_rate"]) for p in sorted(curves["challenger"], key=lambda p: p["threshold"]) if p["bin_n"] >= 20]}
    slice_rows = [s for s in doc["slices"]]
    imp = sorted(doc.get("importance", {}).items(), key=lambda kv: -kv[1])[:15]
    vmax = max([v for _, v in imp] or [1.0])
    overall = doc["overall"]
    sections = [
        f"<h1>trainyard evaluation — {html.escape(doc['dataset'])} · ds {html.escape(doc['ds'])}</h1>",
        f'<p class="verdict" style="color:{color}">{verdict} (gate mode: {html.escape(b["mode"])})</p>',
        f"<p>artifact sha256 <code>{html.escape(b['artifact_sha256'])}</code>; holdout {html.escape(str(doc['windows'].get('holdout')))}; "
        f"champion: {html.escape(str(doc.get('champion', {}).get('version') or 'none'))}</p>",
        "<h2>Gate checks</h2>", table(b["checks"], ["name", "value", "op", "threshold", "passed"]),
        "<h2>Overall (holdout)</h2>", table([overall | {"model": "challenger"}] + ([doc["champion"]["overall"] | {"model": "champion"}] if doc.get("champion", {}).get("overall") else []),
                                            ["model", "n", "n_pos", "auc", "pr_auc", "logloss", "brier", "precision", "recall", "f1"]),
        '<div class="plots">' + line_chart(roc, "ROC", "false positive rate", "true positive rate", diagonal=True)
        + line_chart(pr, "Precision-recall", "recall", "precision")
        + line_chart(calib, "Calibration", "mean predicted", "observed rate", diagonal=True) + "</div>",
        "<h2>Slices</h2>",
        '<div class="plots">' + "".join(
            bar_chart([(f"{s['value']} (n={s['n']})", s["auc"]) for s in slice_rows if s["attribute"] == attr], f"AUC by {attr}")
            for attr in dict.fromkeys(s["attribute"] for s in slice_rows)) + "</div>",
        table(slice_rows, ["attribute", "value", "n", "n_pos", "auc", "pr_auc", "predicted_positive_rate", "recall", "fpr"]),
        "<h2>Fairness</h2>", table(doc["fairness"], ["attribute", "slices", "auc_gap", "demographic_parity_difference"]),
        "<h2>Feature importance (total gain)</h2>", bar_chart(imp, "Top features by total gain", vmax=vmax, w=600),
        "<h2>Lineage</h2>", f"<pre>{html.escape(json.dumps(doc.get('lineage', {}), indent=1))}</pre>",
    ]
    style = ("body{font-family:system-ui,sans-serif;margin:24px;color:#222}table{border-collapse:collapse;margin:8px 0}"
             "td,th{border:1px solid #ddd;padding:3px 8px;font-size:12px;text-align:right}th{background:#f3f3f3}"
             ".plots{display:flex;flex-wrap:wrap;gap:12px}.verdict{font-size:20px;font-weight:bold}pre{font-size:11px}")
    return f"<!doctype html><html><head><meta charset='utf-8'><title>trainyard evaluation</title><style>{style}</style></head><body>{''.join(sections)}</body></html>"
