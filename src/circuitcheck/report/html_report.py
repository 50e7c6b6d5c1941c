"""`--cc-html PATH`: one self-contained page a person reads (no script, no network, no CDN).

A section per claim, failing claims first: the sentence, the verdict, each case's value with its
interval drawn against the claimed region (inline SVG; the baseline's interval above it when there
is one), the baseline change, a sweep's curve with the crossing and its interval, and for a claim
about a head its attention pattern averaged over the claim's prompts as a heatmap. A claim with
several cases gets one forest plot (every case's interval on one axis, each against its own claimed
region); a claim run on a checkpoint series gets one section with its value over the checkpoints,
the interval as a band, instead of a card per checkpoint. Built from the JSON report's records
(report_json.record), plus `attention` where the run added one.
"""
from __future__ import annotations

import html
import math
from pathlib import Path

from ..files import atomic

ORDER = {"fail": 0, "error": 1, "inconclusive": 2, "pass": 3}
COLOUR = {"pass": "#1a7f37", "fail": "#cf222e", "inconclusive": "#9a6700", "error": "#8250df"}
CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:980px;color:#1f2328}
h1{font-size:22px} h2{font-size:16px;margin:0 0 4px}
.claim{border:1px solid #d0d7de;border-left:6px solid var(--c);border-radius:6px;padding:12px 16px;margin:14px 0}
.badge{display:inline-block;color:#fff;background:var(--c);border-radius:10px;padding:0 8px;font-size:12px;
 text-transform:uppercase;margin-right:6px}
.says{font-size:15px;margin:4px 0} .meta{color:#59636e;font-size:12px}
table{border-collapse:collapse;margin-top:6px} td{padding:2px 8px;vertical-align:middle;font-size:13px}
.flip{color:#cf222e;font-weight:600} .drift{color:#9a6700;font-weight:600}
.summary span{margin-right:14px} svg text{font:10px system-ui,sans-serif;fill:#59636e}
"""


def _e(x) -> str:
    return html.escape(str(x))


def _num(x) -> str:
    return "∞" if x is None else f"{x:.4g}"


def write(path, records: list[dict]) -> Path:
    return atomic.write(path, page(records))


def page(records: list[dict]) -> str:
    counts = {v: sum(r["verdict"] == v for r in records) for v in ORDER}
    summary = "".join(f'<span style="color:{COLOUR[v]}">{n} {v}</span>' for v, n in counts.items() if n)
    flips = sum(bool(r.get("baseline") and r["baseline"]["flip"]) for r in records)
    if any(r.get("baseline") for r in records):
        summary += f"<span>{flips} verdict flips against the baseline</span>"
    groups: dict[tuple, list[dict]] = {}
    for r in records:  # a claim on a checkpoint series: one group, in the order the checkpoints ran
        groups.setdefault((r["file"], r["id"]) if r.get("checkpoint") else (r["file"], r["id"], id(r)), []).append(r)
    ordered = sorted(groups.values(), key=lambda g: (min(ORDER.get(r["verdict"], 0) for r in g), g[0]["file"], g[0]["id"]))
    body = "\n".join(section(g[0]) if len(g) == 1 else series_section(g) for g in ordered)
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>circuitcheck report</title>'
            f"<style>{CSS}</style></head><body><h1>circuitcheck: {len(records)} claims</h1>"
            f'<p class="summary">{summary}</p>\n{body}\n</body></html>\n')


def section(r: dict) -> str:
    colour = COLOUR.get(r["verdict"], "#59636e")
    name = f"{Path(r['file']).name}::{r['id']}" + (f"[{r['checkpoint']}]" if r.get("checkpoint") else "")
    sha = (r.get("fingerprint") or {}).get("weights_sha256") or ""
    meta = (f"{_e(Path(r['file']).name)}:{r['line']} · model {_e(r['model'])}"
            + (f" · weights sha256 {sha[:12]}…" if sha else "") + f" · seed {r['seed']}")
    roles = ", ".join(f"${_e(k)} = {_e(v)}" for k, v in (r.get("roles") or {}).items())
    parts = [f'<section class="claim" id="{_e(name)}" data-verdict="{r["verdict"]}" style="--c:{colour}">',
             f'<h2><span class="badge">{_e(r["verdict"])}</span>{_e(name)}</h2>',
             f'<p class="says">{_e(r["says"])}</p>',
             f'<p class="meta">expected: {_e(r["measure"])} {_e(r["expected"])}'
             + (f" ({_e(r['quantifier'])} of {len(r['cases'])} cases)" if r.get("quantifier") else "")
             + f"<br>{meta}" + (f"<br>roles: {roles}" if roles else "") + "</p>"]
    if r.get("error"):
        parts.append(f"<p>could not be measured: {_e(r['error'])}</p>")
    parts.append(_baseline(r.get("baseline")))
    base = {c["label"]: c for c in (r.get("baseline") or {}).get("cases", [])}
    many = len(r["cases"]) > 1
    if many:
        parts.append(forest_svg(r["cases"]))
    rows = []
    for c in r["cases"]:
        b = base.get(c["label"])
        change = ""
        if b and b.get("change") is not None:
            change = f"Δ{b['change']:+.3g}" + (' <span class="drift">drift</span>' if b["drift"] else "") + (
                f' <span class="flip">{_e(b["flip"])}</span>' if b["flip"] else "")
        rows.append(f"<tr><td>{_e(c['label'])}</td><td>{_num(c['value'])} [{_num(c['low'])}, {_num(c['high'])}]"
                    f"<br><span class='meta'>{c['level']:.1%} {_e(c['method'])}, n={c['n']}</span></td>"
                    f"<td>{'' if many and not b else interval_svg(c, b)}</td><td>{change}</td></tr>")
        if c.get("curve"):
            rows.append(f"<tr><td></td><td colspan=3>{curve_svg(c)}</td></tr>")
    parts.append("<table>" + "".join(rows) + "</table>")
    if r.get("attention"):
        parts.append(heatmap_svg(r["attention"]))
    parts.append("</section>")
    return "\n".join(parts)


def series_section(recs: list[dict]) -> str:
    """One claim over a checkpoint series: its value over the checkpoints, then a row per checkpoint."""
    worst = min(recs, key=lambda r: ORDER.get(r["verdict"], 0))
    colour = COLOUR.get(worst["verdict"], "#59636e")
    name = f"{Path(recs[0]['file']).name}::{recs[0]['id']}"
    verdicts = ", ".join(f"{sum(r['verdict'] == v for r in recs)} {v}" for v in ORDER if any(r["verdict"] == v for r in recs))
    rows = "".join(f"<tr><td>{_e(r['checkpoint'])}</td><td><span style='color:{COLOUR.get(r['verdict'], '#59636e')}'>"
                   f"{_e(r['verdict'])}</span></td><td>" + (f"{_num(r['cases'][0]['value'])} [{_num(r['cases'][0]['low'])}, "
                   f"{_num(r['cases'][0]['high'])}]" if r["cases"] else _e(r.get("error") or "")) + "</td></tr>"
                   for r in recs)
    return "\n".join([
        f'<section class="claim series" id="{_e(name)}" data-verdict="{worst["verdict"]}" style="--c:{colour}">',
        f'<h2><span class="badge">{_e(worst["verdict"])}</span>{_e(name)} over {len(recs)} checkpoints</h2>',
        f'<p class="says">{_e(recs[0]["says"])}</p>',
        f'<p class="meta">expected: {_e(recs[0]["measure"])} {_e(recs[0]["expected"])} · {verdicts}</p>',
        series_svg(recs), _first_of(recs), f"<table>{rows}</table>", "</section>"])


def _first_of(recs: list[dict]) -> str:
    most = max(len(r["cases"]) for r in recs)
    return f'<p class="meta">the chart and rows show the first of {most} cases</p>' if most > 1 else ""


def _baseline(cmp: dict | None) -> str:
    if not cmp:
        return ""
    text = f"baseline verdict {_e(cmp['verdict'])}"
    if cmp["flip"]:
        text += f' <span class="flip">{_e(cmp["flip"])}</span>'
    if cmp["drift"]:
        text += f' <span class="drift">drift ({_e(cmp["tolerance"])})</span>'
    for role, v in cmp.get("roles", {}).items():
        text += f"; ${_e(role)} was {_e(v['baseline'])}, now {_e(v['now'])}"
    return f'<p class="meta">{text}</p>'


# ---------------------------------------------------------------- pictures
def _axis(values) -> tuple[float, float]:
    xs = [v for v in values if v is not None and math.isfinite(v)] or [0.0, 1.0]
    lo, hi = min(xs), max(xs)
    pad = (hi - lo) * 0.15 or max(abs(lo), 1.0) * 0.1
    return lo - pad, hi + pad


def interval_svg(c: dict, base: dict | None = None, width: int = 320) -> str:
    """The claimed region (green band), this run's interval and value, the baseline's in grey above."""
    lo_r, hi_r = c["bounds"]
    pts = [c["low"], c["high"], c["value"], lo_r, hi_r]
    if base and base.get("value") is not None:
        pts += [base["low"], base["high"]]
    a, b = _axis(pts)
    x = lambda v: 8 + (width - 16) * ((min(max(v, a), b) - a) / (b - a))  # noqa: E731
    r0, r1 = x(lo_r if lo_r is not None else a), x(hi_r if hi_r is not None else b)
    colour = COLOUR.get(c["verdict"], "#59636e")
    out = [f'<svg class="interval" width="{width}" height="44" role="img" aria-label="interval against region">',
           f'<rect x="{r0:.1f}" y="4" width="{max(r1 - r0, 1):.1f}" height="26" fill="#dafbe1" stroke="#4ac26b"/>',
           f'<line x1="8" y1="30" x2="{width - 8}" y2="30" stroke="#d0d7de"/>']
    if base and base.get("value") is not None:  # a baseline without a bound (null) runs to the axis's end
        low, high = (a if base["low"] is None else base["low"]), (b if base["high"] is None else base["high"])
        out.append(f'<line x1="{x(low):.1f}" y1="11" x2="{x(high):.1f}" y2="11" stroke="#8c959f" '
                   f'stroke-width="3"/><circle cx="{x(base["value"]):.1f}" cy="11" r="3.5" fill="#fff" stroke="#8c959f"/>')
    if c["value"] is not None:  # an unbounded side (no bound at this level) runs to the axis's end
        low, high = (a if c["low"] is None else c["low"]), (b if c["high"] is None else c["high"])
        out.append(f'<line x1="{x(low):.1f}" y1="22" x2="{x(high):.1f}" y2="22" stroke="{colour}" '
                   f'stroke-width="4"/><circle cx="{x(c["value"]):.1f}" cy="22" r="4" fill="{colour}"/>')
    out += [f'<text x="8" y="42">{_num(a)}</text>', f'<text x="{width - 8}" y="42" text-anchor="end">{_num(b)}</text>']
    return "".join(out) + "</svg>"


def curve_svg(c: dict, width: int = 420, height: int = 150) -> str:
    """A sweep's mean against the swept value, with the crossing's interval as a band and its point."""
    xs, ys = [p[0] for p in c["curve"]], [p[1] for p in c["curve"]]
    ax, bx = _axis(xs + [c["low"], c["high"]])
    ay, by = _axis(ys)
    px = lambda v: 30 + (width - 40) * (v - ax) / (bx - ax)  # noqa: E731
    py = lambda v: height - 20 - (height - 30) * (v - ay) / (by - ay)  # noqa: E731
    line = " ".join(f"{px(a):.1f},{py(b):.1f}" for a, b in zip(xs, ys))
    colour = COLOUR.get(c["verdict"], "#59636e")
    return (f'<svg class="curve" width="{width}" height="{height}" role="img" aria-label="sweep curve">'
            f'<rect x="{px(c["low"]):.1f}" y="10" width="{max(px(c["high"]) - px(c["low"]), 1):.1f}" '
            f'height="{height - 30}" fill="{colour}" opacity="0.15"/>'
            f'<polyline points="{line}" fill="none" stroke="#0969da" stroke-width="2"/>'
            + "".join(f'<circle cx="{px(a):.1f}" cy="{py(b):.1f}" r="2.5" fill="#0969da"/>' for a, b in zip(xs, ys))
            + f'<line x1="{px(c["value"]):.1f}" y1="10" x2="{px(c["value"]):.1f}" y2="{height - 20}" stroke="{colour}"/>'
            f'<text x="30" y="{height - 5}">{_num(min(xs))}</text>'
            f'<text x="{width - 10}" y="{height - 5}" text-anchor="end">{_num(max(xs))}</text>'
            f'<text x="2" y="14">{_num(max(ys))}</text><text x="2" y="{height - 20}">{_num(min(ys))}</text></svg>')


def forest_svg(cases: list[dict], width: int = 560, row: int = 18) -> str:
    """Every case of a claim on one axis: its interval and value, over its own claimed region."""
    pts = [v for c in cases for v in (c["low"], c["high"], c["value"], *c["bounds"]) if v is not None]
    a, b = _axis(pts)
    left = 110
    x = lambda v: left + (width - left - 10) * ((min(max(v, a), b) - a) / (b - a))  # noqa: E731
    out = [f'<svg class="forest" width="{width}" height="{row * len(cases) + 22}" role="img" '
           f'aria-label="every case against its claimed region">']
    for i, c in enumerate(cases):
        y, (lo_r, hi_r) = 4 + i * row, c["bounds"]
        r0, r1 = x(lo_r if lo_r is not None else a), x(hi_r if hi_r is not None else b)
        colour = COLOUR.get(c["verdict"], "#59636e")
        out.append(f'<text x="{left - 6}" y="{y + row * 0.65:.0f}" text-anchor="end">{_e(str(c["label"])[:18])}</text>'
                   f'<rect x="{r0:.1f}" y="{y}" width="{max(r1 - r0, 1):.1f}" height="{row - 3}" fill="#dafbe1"/>')
        if c["value"] is not None:
            out.append(f'<line x1="{x(c["low"] if c["low"] is not None else a):.1f}" y1="{y + row / 2 - 1}" '
                       f'x2="{x(c["high"] if c["high"] is not None else b):.1f}" y2="{y + row / 2 - 1}" stroke="{colour}" '
                       f'stroke-width="3"/><circle cx="{x(c["value"]):.1f}" cy="{y + row / 2 - 1}" r="3.5" fill="{colour}">'
                       f'<title>{_e(c["label"])}: {_num(c["value"])} [{_num(c["low"])}, {_num(c["high"])}]</title></circle>')
    bottom = row * len(cases) + 18
    return "".join(out) + (f'<text x="{left}" y="{bottom}">{_num(a)}</text>'
                           f'<text x="{width - 10}" y="{bottom}" text-anchor="end">{_num(b)}</text></svg>')


def series_svg(recs: list[dict], width: int = 560, height: int = 170) -> str:
    """A claim's first case over a checkpoint series: the interval as a band, the value as a line,
    each point coloured by its verdict, over the claimed region."""
    cases = [r["cases"][0] if r["cases"] else None for r in recs]
    pts = [v for c in cases if c for v in (c["low"], c["high"], c["value"], *c["bounds"]) if v is not None]
    if not pts:
        return ""
    ay, by = _axis(pts)
    n = len(recs)
    px = lambda i: 40 + (width - 60) * (i / max(n - 1, 1))  # noqa: E731
    py = lambda v: height - 30 - (height - 40) * ((min(max(v, ay), by) - ay) / (by - ay))  # noqa: E731
    region = next((c["bounds"] for c in cases if c), (None, None))
    r_hi, r_lo = py(region[1] if region[1] is not None else by), py(region[0] if region[0] is not None else ay)
    drawn = [(i, c) for i, c in enumerate(cases) if c and c["value"] is not None]
    band = [(px(i), py(c["high"] if c["high"] is not None else by)) for i, c in drawn]
    band += [(px(i), py(c["low"] if c["low"] is not None else ay)) for i, c in reversed(drawn)]
    out = [f'<svg class="series" width="{width}" height="{height}" role="img" aria-label="value over checkpoints">',
           f'<rect x="40" y="{r_hi:.1f}" width="{width - 60}" height="{max(r_lo - r_hi, 1):.1f}" fill="#dafbe1"/>',
           f'<polygon points="{_points(band)}" fill="#0969da" opacity="0.18"/>',
           f'<polyline points="{_points((px(i), py(c["value"])) for i, c in drawn)}" fill="none" '
           f'stroke="#0969da" stroke-width="2"/>']
    for (i, c), r in zip(drawn, [recs[i] for i, _ in drawn]):
        out.append(f'<circle cx="{px(i):.1f}" cy="{py(c["value"]):.1f}" r="3.5" fill="{COLOUR.get(r["verdict"], "#59636e")}">'
                   f'<title>{_e(r["checkpoint"])}: {_num(c["value"])} [{_num(c["low"])}, {_num(c["high"])}] '
                   f'{_e(r["verdict"])}</title></circle>')
    for i in sorted({0, n - 1, n // 2}):
        out.append(f'<text x="{px(i):.1f}" y="{height - 12}" text-anchor="middle">{_e(recs[i]["checkpoint"])[:16]}</text>')
    out.append(f'<text x="2" y="14">{_num(by)}</text><text x="2" y="{height - 30}">{_num(ay)}</text>')
    return "".join(out) + "</svg>"


def _points(xy) -> str:
    return " ".join(f"{a:.1f},{b:.1f}" for a, b in xy)


def heatmap_svg(att: dict, cell: int = 16) -> str:
    """A head's attention pattern, averaged over prompts: row = query position, column = key position."""
    tokens, pattern = att["tokens"], att["pattern"]
    n, left, top = len(tokens), 44, 44
    out = [f'<figure><svg class="heatmap" width="{left + n * cell + 4}" height="{top + n * cell + 4}" role="img" '
           f'aria-label="attention pattern of {_e(att["head"])}">']
    for i, t in enumerate(tokens):
        out.append(f'<text x="{left - 4}" y="{top + i * cell + cell * 0.7:.0f}" text-anchor="end">{_e(t)}</text>')
        out.append(f'<text transform="translate({left + i * cell + cell * 0.7:.0f},{top - 4}) rotate(-60)">{_e(t)}</text>')
        for j, v in enumerate(pattern[i]):
            out.append(f'<rect x="{left + j * cell}" y="{top + i * cell}" width="{cell - 1}" height="{cell - 1}" '
                       f'fill="#0969da" fill-opacity="{max(0.0, min(1.0, v)):.3f}"><title>{_e(t)}→{_e(tokens[j])}: '
                       f'{v:.3f}</title></rect>')
    over = f"averaged over {att['n']} prompts of one length" if att.get("n", 1) > 1 else "on the first prompt"
    return "".join(out) + (f'</svg><figcaption class="meta">attention of {_e(att["head"])} {over} '
                           f"(rows: query positions, columns: key positions)</figcaption></figure>")
