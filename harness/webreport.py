"""report.html: the night of a sandbox on one self-contained page, and ``harness report --serve``.

The page needs no network to be viewed: the chart (:mod:`harness.chart`) is embedded as a PNG data
URI, the style and the few lines of script are inline. It shows, top to bottom: the summary
(experiments and outcomes, the best, the noise, knob coverage, throughput, energy, checkpoints),
the chart, the path of kept changes (each with its decision's evidence, its diff and its sample),
and every experiment in a table sorted by a click on a column header (outcome, val_bpb, steps,
tokens/s, wall seconds, LLM tokens and cost).

Served (``harness report DIR --serve``), the page asks ``/stamp`` every 2 s and reloads itself when
the ledger changed; the server rebuilds the page first when the ledger is newer than it.
"""

from __future__ import annotations

import base64
import html
import os
import statistics
import threading
from pathlib import Path
from typing import Optional

from tools.experiments import experiment_diff, sample_of

from .chart import PNG_NAME, render as render_chart
from .ledger import TRAJECTORY_NAME, Ledger

HTML_NAME = "report.html"
REFRESH_MS = 2000


def _e(value) -> str:
    return html.escape("" if value is None else str(value))


def _num(value, fmt: str) -> str:
    return "" if value is None else format(value, fmt)


def llm_cost(rec: dict) -> Optional[float]:
    """Dollars of the LLM calls behind ``rec`` (the price list of :mod:`harness.agents.pricing`,
    by the model named in the agent spec), or None when the price is unknown or nothing was called."""
    from .agents.pricing import cost_usd

    if not rec.get("llm_calls"):
        return None
    model = str(rec.get("agent", "")).split(":", 1)[-1]
    return cost_usd(model, rec.get("prompt_tokens", 0), rec.get("completion_tokens", 0))


def _summary_lines(sandbox: Path, records: list[dict], usd_per_kwh: Optional[float], checkpoints: str) -> list[str]:
    from .report import summary_lines

    lines = summary_lines(sandbox, records, usd_per_kwh, checkpoints)
    ran = [r for r in records if r.get("run_s")]
    tps = [r["tokens_per_s"] for r in ran if r.get("tokens_per_s")]
    if ran:
        line = f"throughput: {len(ran)} runs, {sum(r['run_s'] for r in ran) / 3600:.2f} h of runs"
        if tps:
            line += f", median {statistics.median(tps):,.0f} training tokens/s"
        train = sum(r.get("train_s") or 0 for r in ran)
        wall = sum(r.get("wall_s") or 0 for r in records)
        if wall:
            line += f", {100 * train / wall:.0f}% of the experiments' wall time spent training"
        lines.append(line)
    cost = [c for c in (llm_cost(r) for r in records) if c is not None]
    if cost:
        lines.append(f"LLM cost: ${sum(cost):.2f} over {len(cost)} proposals")
    return lines


def evidence_text(rec: dict) -> str:
    """The decision of ``rec`` in one line: the policy's reason and its figures."""
    d = rec.get("decision") or {}
    if not d:
        return "kept as the first measured figure (baseline)" if rec.get("proposal_format") == "baseline" else ""
    parts = [d.get("reason", "")]
    figures = [f"{k} {d[k]:.6f}" if isinstance(d.get(k), float) else f"{k} {d[k]}"
               for k in ("runs", "mean_val_bpb", "best_val_bpb", "delta", "noise_sd", "z", "p") if d.get(k) is not None]
    return "; ".join(p for p in parts if p) + (f" ({', '.join(figures)})" if figures else "")


def _kept_section(sandbox: Path, records: list[dict]) -> str:
    kept = [r for r in records if r["status"] == "keep"]
    if not kept:
        return "<p>No experiment kept yet.</p>"
    out = []
    for r in kept:
        sample, diff = sample_of(sandbox, r["experiment"]), experiment_diff(sandbox, r)
        out.append(
            f'<section class="kept" id="kept-{r["experiment"]}"><h3>#{r["experiment"]} {_e(r["description"])}</h3>'
            f'<p class="figures">val_bpb {_num(r.get("val_bpb"), ".6f")} (before: {_num(r.get("parent_val_bpb"), ".6f") or "-"})'
            f' · commit <code>{_e((r.get("commit") or "")[:10])}</code></p>'
            f'<p class="evidence">{_e(evidence_text(r))}</p>'
            + (f'<details><summary>diff</summary><pre class="diff">{_e(diff)}</pre></details>' if diff else "")
            + (f'<div class="sample"><h4>sample</h4><pre>{_e(sample)}</pre></div>' if sample else
               '<p class="nosample">no sample recorded</p>')
            + "</section>")
    return "\n".join(out)


COLUMNS = ("#", "outcome", "status", "val_bpb", "steps", "tokens/s", "wall s", "LLM tokens", "LLM $", "description")


def _table(records: list[dict]) -> str:
    head = "".join(f'<th data-col="{i}">{_e(c)}</th>' for i, c in enumerate(COLUMNS))
    rows = []
    for r in records:
        cost = llm_cost(r)
        cells = (r["experiment"], r["outcome"], r["status"], _num(r.get("val_bpb"), ".6f"), r.get("steps") or "",
                 _num(r.get("tokens_per_s"), ".0f"), _num(r.get("wall_s"), ".1f"),
                 (r.get("prompt_tokens", 0) + r.get("completion_tokens", 0)) or "", _num(cost, ".4f"),
                 r.get("description", ""))
        rows.append(f'<tr class="{_e(r["status"])}">' + "".join(f"<td>{_e(c)}</td>" for c in cells) + "</tr>")
    return f'<table id="experiments"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1200px;color:#222;padding:0 1em}
h1{font-size:1.5em} h2{margin-top:1.6em;border-bottom:1px solid #ddd} h3{margin-bottom:.2em}
#summary li{margin:.15em 0} img#chart{max-width:100%;border:1px solid #ddd}
table{border-collapse:collapse;width:100%;font-size:.85em} th{cursor:pointer;background:#f3f3f3;position:sticky;top:0}
th,td{border:1px solid #ddd;padding:.2em .4em;text-align:left} tr.keep{background:#e9f7e9} tr.crash{color:#a33}
pre{background:#f7f7f7;padding:.5em;overflow-x:auto;white-space:pre-wrap} .sample pre{background:#fffbe6}
.evidence{color:#555} #stamp{color:#888;font-size:.8em}
"""

SCRIPT = """
document.querySelectorAll('#experiments th').forEach(function(th){
  th.addEventListener('click', function(){
    var col = +th.dataset.col, body = document.querySelector('#experiments tbody');
    var asc = th.dataset.dir !== 'asc'; th.dataset.dir = asc ? 'asc' : 'desc';
    var rows = Array.from(body.rows);
    rows.sort(function(a, b){
      var x = a.cells[col].textContent, y = b.cells[col].textContent;
      var nx = parseFloat(x), ny = parseFloat(y);
      var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : (isNaN(nx) === isNaN(ny) ? x.localeCompare(y) : (isNaN(nx) ? 1 : -1));
      return asc ? c : -c;
    });
    rows.forEach(function(r){ body.appendChild(r); });
  });
});
if (location.protocol.indexOf('http') === 0) {
  var seen = document.body.dataset.stamp;
  setInterval(function(){
    fetch('stamp', {cache: 'no-store'}).then(function(r){ return r.text(); }).then(function(s){
      if (s && s !== seen) { location.reload(); }
    }).catch(function(){});
  }, %d);
}
""" % REFRESH_MS


def ledger_stamp(sandbox: Path) -> str:
    """A string that changes whenever the ledger does (trajectory.jsonl's size and mtime)."""
    try:
        st = (Path(sandbox) / TRAJECTORY_NAME).stat()
        return f"{st.st_size}-{st.st_mtime_ns}"
    except OSError:
        return "empty"


def build(sandbox: Path, usd_per_kwh: Optional[float] = None, checkpoints: str = "kept") -> Path:
    """Write ``progress.png`` and ``report.html`` of ``sandbox`` from its ledger (each to a
    temporary file, then renamed). Returns the report's path.

    Raises:
        OSError: a file cannot be written.
    """
    sandbox = Path(sandbox)
    stamp = ledger_stamp(sandbox)
    records = Ledger(sandbox).records()
    png = render_chart(records, sandbox / PNG_NAME, title=None)
    chart = base64.b64encode(png.read_bytes()).decode("ascii")
    summary = "".join(f"<li>{_e(line)}</li>" for line in _summary_lines(sandbox, records, usd_per_kwh, checkpoints))
    title = f"autoresearch-harness: {sandbox.resolve().name}"
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{STYLE}</style></head>
<body data-stamp="{_e(stamp)}">
<h1>{_e(title)}</h1>
<ul id="summary">{summary}</ul>
<h2>Progress</h2>
<img id="chart" alt="val_bpb per experiment" src="data:image/png;base64,{chart}">
<h2>Kept changes</h2>
{_kept_section(sandbox, records)}
<h2>Every experiment</h2>
<p>Click a column header to sort.</p>
{_table(records)}
<p id="stamp">ledger state {_e(stamp)}</p>
<script>{SCRIPT}</script>
</body></html>
"""
    path = sandbox / HTML_NAME
    tmp = path.with_name(f".{HTML_NAME}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, path)
    return path


def serve(sandbox: Path, host: str = "127.0.0.1", port: int = 8765, usd_per_kwh: Optional[float] = None,
          checkpoints: str = "kept", ready=None) -> None:
    """Serve ``report.html`` of ``sandbox`` at ``http://host:port/`` until interrupted; ``/stamp``
    answers :func:`ledger_stamp`, and the page is rebuilt first whenever the ledger is newer than
    the page the server last built. ``ready(server)`` is called once it listens.

    Raises:
        OSError: the address is in use or cannot be bound.
    """
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    sandbox = Path(sandbox)
    lock = threading.Lock()
    built = {"stamp": None}

    def fresh() -> bytes:
        with lock:
            stamp = ledger_stamp(sandbox)
            page = sandbox / HTML_NAME
            if built["stamp"] != stamp or not page.exists():
                build(sandbox, usd_per_kwh, checkpoints)
                built["stamp"] = stamp
            return page.read_bytes()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            path = self.path.split("?")[0]
            if path in ("/", "/" + HTML_NAME):
                body, kind = fresh(), "text/html; charset=utf-8"
            elif path == "/stamp":
                body, kind = ledger_stamp(sandbox).encode(), "text/plain"
            else:
                self.send_error(404, "only / and /stamp are served")
                return
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):  # quiet: the terminal shows the address, not each poll
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    fresh()
    if ready:
        ready(server)
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        server.server_close()

