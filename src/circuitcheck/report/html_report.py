"""`--cc-html PATH`: one self-contained page a person reads (no script, no network, no CDN).

A section per claim, failing claims first: the sentence, the verdict, each case's value with its
interval drawn against the claimed region (inline SVG; the baseline's interval above it when there
is one), the baseline change, a sweep's curve with the crossing and its interval, and for a claim
about a head its attention pattern on the first prompt as a heatmap. Built from the JSON report's
records (report_json.record), plus `attention` where the run added one.
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
    ordered = sorted(records, key=lambda r: (ORDER.get(r["verdict"], 0), r["file"], r["id"]))
    body = "\n".join(section(r) for r in ordered)
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
    rows = []
    for c in r["cases"]:
        b = base.get(c["label"])
        change = ""
        if b and b.get("change") is not None:
            change = f"Δ{b['change']:+.3g}" + (' <span class="drift">drift</span>' if b["drift"] else "") + (
                f' <span class="flip">{_e(b["flip"])}</span>' if b["flip"] else "")
        rows.append(f"<tr><td>{_e(c['label'])}</td><td>{_num(c['value'])} [{_num(c['low'])}, {_num(c['high'])}]"
                    f"<br><span class='meta'>{c['level']:.1%} {_e(c['method'])}, n={c['n']}</span></td>"
                    f"<td>{interval_svg(c, b)}</td><td>{change}</td></tr>")
        if c.get("curve"):
            rows.append(f"<tr><td></td><td colspan=3>{curve_svg(c)}</td></tr>")
    parts.append("<table>" + "".join(rows) + "</table>")
    if r.get("attention"):
        parts.append(heatmap_svg(r["attention"]))
    parts.append("</section>")
    return "\n".join(parts)


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
    xs = [v for v in values if v is not None and math.isfinite(v)]
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
    if base and base.get("value") is not None:
        out.append(f'<line x1="{x(base["low"]):.1f}" y1="11" x2="{x(base["high"]):.1f}" y2="11" stroke="#8c959f" '
                   f'stroke-width="3"/><circle cx="{x(base["value"]):.1f}" cy="11" r="3.5" fill="#fff" stroke="#8c959f"/>')
    out.append(f'<line x1="{x(c["low"]):.1f}" y1="22" x2="{x(c["high"]):.1f}" y2="22" stroke="{colour}" '
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


def heatmap_svg(att: dict, cell: int = 16) -> str:
    """A head's attention pattern on one prompt: row = query position, column = key position."""
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
    return "".join(out) + (f'</svg><figcaption class="meta">attention of {_e(att["head"])} on the first prompt '
                           f"(rows: query positions, columns: key positions)</figcaption></figure>")
