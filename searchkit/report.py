"""One self-contained HTML report of a study, plus its trials as CSV and Parquet.

``write_report(study)`` reads only the study (its trials, the stored run configuration and
the ``searchkit:base`` record) and writes ``reports/<study>/index.html`` (plotly.js inline,
so the page opens offline), ``trials.csv`` and ``trials.parquet`` beside it. The page starts
with what to export: the best-accuracy architecture and the Pareto front of accuracy
against the study's main cost (its first cost objective, else its first bound, else FLOPs),
each with its ``searchkit export`` command; then the search history, accuracy against
every priced cost, the per-layer view of the architectures worth keeping (from each
trial's ``describe`` record), and a sortable table of all trials.

Accuracy and costs are read from the trials' records (``val_accuracy``, ``cost:<name>``),
so single- and multi-objective studies, and every space, are reported alike.

Example:
    >>> import optuna, tempfile
    >>> from searchkit.report import write_report
    >>> study = optuna.create_study(study_name="empty", direction="maximize")
    >>> path = write_report(study, tempfile.mkdtemp())
    >>> path.name, "No trials yet" in path.read_text()
    ('index.html', True)
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from searchkit import study as st
from searchkit.config import DEFAULT_STORAGE

MAX_WIDTH_PLOTS = 8  # architectures in the per-layer chart; more bars than this are unreadable
MAX_COST_PANELS = 3  # accuracy-vs-cost panels side by side

# Trial labels, in the order the header lists them.
LABELS = ("COMPLETE", "INFEASIBLE", "DUPLICATE", "PRUNED", "FAIL", "RUNNING", "WAITING")

BLUE, RED, GREY, GOLD, GREEN, ORANGE = "#1f77b4", "#d62728", "#9aa0a6", "#f2b705", "#2ca02c", "#ff7f0e"

# What a cost's numbers mean, for studies whose base record does not say (searchkit 0.1).
_KNOWN_COSTS = {"flops": {"unit": "MACs", "relative": True, "title": "FLOPs (MACs)"},
                "params": {"unit": "params", "relative": True, "title": "parameters"},
                "latency": {"unit": "ms", "relative": False, "title": "predicted latency (ms)"}}
_SHORT = {"flops": "FLOPs", "params": "parameters"}  # panel titles


@dataclass
class _Summary:
    """What the page says, computed once from the study."""

    name: str
    config: dict[str, Any]
    base: dict[str, Any]
    frame: pd.DataFrame            # one row per trial
    trials: dict[int, FrozenTrial]
    best: int | None               # trial number of the best-accuracy trained trial
    costs: list[str]               # priced costs, the main one first
    base_costs: dict[str, float]
    info: dict[str, dict]          # per cost: unit, relative, title
    bounds: dict[str, float]       # absolute bound per constrained cost
    fronts: dict[str, list[int]] = field(default_factory=dict)  # per cost, cheapest first

    @property
    def main(self) -> str | None:
        return self.costs[0] if self.costs else None

    @property
    def front(self) -> list[int]:
        return self.fronts.get(self.main, []) if self.main else []

    def title(self, cost: str) -> str:
        return self.info.get(cost, {}).get("title", cost)


# --- public entry point ------------------------------------------------------------------


def write_report(study: optuna.Study, out_dir: str | Path = "reports") -> Path:
    """Write ``<out_dir>/<study>/index.html``, ``trials.csv`` and ``trials.parquet``.

    Args:
        study: any Optuna study; searchkit's attributes are used where present.
        out_dir: the folder that gets one sub-folder per study.

    Returns:
        The path of the HTML file.

    Example:
        >>> import optuna, tempfile
        >>> study = optuna.create_study(study_name="demo", direction="maximize")
        >>> write_report(study, tempfile.mkdtemp()).parent.name
        'demo'
    """
    summary = _summarize(study)
    folder = Path(out_dir) / _folder_name(study.study_name)
    folder.mkdir(parents=True, exist_ok=True)
    table = _export_frame(summary.frame)
    table.to_csv(folder / "trials.csv", index=False)
    notes = []
    try:
        table.to_parquet(folder / "trials.parquet", index=False)
    except ImportError:  # pyarrow/fastparquet are optional for the rest of searchkit
        notes.append("trials.parquet was not written: install pyarrow to get it.")
    path = folder / "index.html"
    path.write_text(_page(summary, notes), encoding="utf-8")
    return path


def _folder_name(name: str) -> str:
    """The study name as one safe path component (studies made outside searchkit may hold '/')."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name).lstrip(".")
    return safe or "study"


# --- reading the study -------------------------------------------------------------------


def _json_attr(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _num(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _accuracy(t: FrozenTrial) -> float | None:
    acc = _num(t.user_attrs.get("val_accuracy"))
    if acc is None and t.state == TrialState.COMPLETE and t.values:
        acc = _num(t.values[0])  # studies written before val_accuracy was stored
    return acc


def _cost_order(config: dict, priced: set[str]) -> list[str]:
    """Priced costs, the main one first: cost objectives, bounded costs, then the rest."""
    objectives = list(config.get("objectives") or ["accuracy"])[1:]
    bounded = [k for k, v in (config.get("constraint") or {}).items() if v is not None]
    bounded = ["latency" if k == "latency_ms" else k for k in bounded]
    order = [*objectives, *bounded, "flops", "params", "latency", *sorted(priced)]
    return [c for c in dict.fromkeys(order) if c in priced]


def _summarize(study: optuna.Study) -> _Summary:
    config = _json_attr(study.user_attrs.get(st.CONFIG_KEY)) or {}
    config = config if isinstance(config, dict) else {}
    base = _json_attr(study.user_attrs.get(st.BASE_KEY)) or {}
    base = base if isinstance(base, dict) else {}
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    base_costs = st.base_costs(base)
    priced: set[str] = set(base_costs)
    for t in trials.values():
        priced |= set(st.trial_costs(t))
        priced |= {k for k in ("flops", "params", "latency") if _num(t.user_attrs.get(k)) is not None}
    costs = _cost_order(config, priced)
    info = {c: {**_KNOWN_COSTS.get(c, {"unit": "", "relative": True, "title": c}),
                **((base.get("cost_info") or {}).get(c) or {})} for c in costs}
    rows = []
    for t in trials.values():
        ua = t.user_attrs
        duration = (t.datetime_complete - t.datetime_start).total_seconds() \
            if t.datetime_complete and t.datetime_start else None
        row = {"number": t.number, "state": t.state.name, "label": st.label(t), "accuracy": _accuracy(t)}
        for c in costs:
            value = st.trial_cost(t, c)
            row[c] = value
            b = base_costs.get(c)
            row[f"{c}_ratio"] = value / b if value is not None and b else None
        row.update({"archid": ua.get(st.ARCHID), "duration_s": duration, "train_s": _num(ua.get("seconds")),
                    "evaluated": bool(ua.get(st.EVALUATED)), "infeasible": bool(ua.get(st.INFEASIBLE)),
                    "duplicate_of": ua.get(st.DUPLICATE_OF), "fail_reason": ua.get(st.FAIL_REASON),
                    "source": ua.get(st.SOURCE), "genome": _json_attr(ua.get(st.GENOME))})
        rows.append(row)
    columns = ["number", "state", "label", "accuracy", *[x for c in costs for x in (c, f"{c}_ratio")],
               "archid", "duration_s", "train_s", "evaluated", "infeasible", "duplicate_of", "fail_reason",
               "source", "genome"]
    frame = pd.DataFrame(rows, columns=columns)
    trained = _trained(frame)
    best = None
    if len(trained):
        main = costs[0] if costs else None
        ranked = trained.assign(_f=trained[main].fillna(math.inf) if main else 0).sort_values(
            ["accuracy", "_f", "number"], ascending=[False, True, True])
        best = int(ranked.number.iloc[0])
    bounds = {}
    for name, value in (config.get("constraint") or {}).items():
        name = "latency" if name == "latency_ms" else name
        value = _num(value)
        if value is None or name not in costs:
            continue
        if info[name].get("relative", True) and value <= 1:
            if base_costs.get(name):
                bounds[name] = value * base_costs[name]
        else:
            bounds[name] = value
    s = _Summary(name=study.study_name, config=config, base=base, frame=frame, trials=trials, best=best,
                 costs=costs, base_costs=base_costs, info=info, bounds=bounds)
    s.fronts = {c: _front(study, trained, c) for c in costs}
    return s


def _trained(frame: pd.DataFrame) -> pd.DataFrame:
    if not len(frame):
        return frame
    return frame[(frame.label == "COMPLETE") & frame.evaluated & frame.accuracy.notna()]


def _front(study: optuna.Study, trained: pd.DataFrame, cost: str) -> list[int]:
    """The front ``searchkit export top=pareto`` exports for this cost (cheapest first)."""
    try:
        numbers = {t.number for t in st.pareto_trials(study, ("accuracy", cost))}
    except (KeyError, TypeError, ValueError, IndexError):  # trials made outside searchkit
        return _pareto(trained, cost)
    rows = trained[trained.number.isin(numbers)]
    return [int(n) for n in rows.sort_values([cost, "accuracy", "number"], ascending=[True, False, True]).number]


def _pareto(trained: pd.DataFrame, cost: str) -> list[int]:
    """Trial numbers not dominated in (accuracy up, ``cost`` down), cheapest first."""
    rows = trained[trained[cost].notna()] if len(trained) else trained
    if not len(rows):
        return []
    rows = rows.sort_values([cost, "accuracy", "number"], ascending=[True, False, True])
    out, best_acc = [], -math.inf
    for number, acc in zip(rows.number, rows.accuracy):
        if acc > best_acc:
            out.append(int(number))
            best_acc = acc
    return out


def _export_frame(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    out["genome"] = [json.dumps(g, sort_keys=True) if g is not None else None for g in out.genome]
    out["duplicate_of"] = out.duplicate_of.astype("Int64")
    for col in ("fail_reason", "archid", "source"):
        out[col] = out[col].astype("string")
    return out


# --- formatting --------------------------------------------------------------------------


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _si(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.3g}"


def _pct(value: float | None) -> str:
    return "–" if value is None or pd.isna(value) else f"{100 * value:.1f}%"


def _acc(value: float | None) -> str:
    return "–" if value is None or pd.isna(value) else f"{value:.4f}"


def _export_command(s: _Summary, number: int) -> str:
    cmd = f"searchkit export study={s.name} trial={number}"
    storage = s.config.get("storage")
    if storage and storage != DEFAULT_STORAGE:
        cmd += f" storage={st.redact(storage)}"
    return cmd


def _cost_text(s: _Summary, cost: str, value: float | None, ratio: float | None) -> str:
    if value is None or pd.isna(value):
        return f"{cost} –"
    if ratio is not None and not pd.isna(ratio):
        return f"{cost} {_si(value)} ({_pct(ratio)} of base)"
    return f"{cost} {_si(value)} {s.info.get(cost, {}).get('unit', '')}".rstrip()


# --- figures -----------------------------------------------------------------------------


def _fig_html(fig, div_id: str, height: int, legend_y: float = 1.02) -> str:
    # The legend sits above the plots (above subplot titles when there are some: legend_y > 1.02).
    fig.update_layout(height=height, margin=dict(l=60, r=20, t=40 + int(600 * (legend_y - 1)), b=50),
                      template="plotly_white",
                      legend=dict(orientation="h", yanchor="bottom", y=legend_y, x=0))
    return fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id,
                       default_width="100%", default_height=f"{height}px",
                       config={"displaylogo": False, "responsive": True})


def _hover(s: _Summary, row) -> str:
    parts = [f"trial #{row.number}", f"accuracy {_acc(row.accuracy)}"]
    for c in s.costs:
        value = getattr(row, c, None)
        if value is not None and not pd.isna(value):
            parts.append(_cost_text(s, c, value, getattr(row, f"{c}_ratio", None)))
    return "<br>".join(parts)


def _history_figure(s: _Summary) -> str:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    f = s.frame.sort_values("number")
    main = s.main
    ratio = f"{main}_ratio" if main and f[f"{main}_ratio"].notna().any() else main
    lower = (f"{s.title(main)} of every candidate (priced before training)" if main else "no costs priced")
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.64, 0.36], vertical_spacing=0.08,
                        subplot_titles=("Validation accuracy of trained candidates", lower))
    trained = f[(f.label == "COMPLETE") & f.evaluated & f.accuracy.notna()]
    stopped = f[(f.label == "PRUNED") & f.evaluated & f.accuracy.notna()]
    dups = f[(f.label == "DUPLICATE") & f.accuracy.notna()]
    fig.add_trace(go.Scatter(x=trained.number, y=trained.accuracy, mode="markers", name="trained",
                             marker=dict(color=BLUE, size=8), hovertext=[_hover(s, r) for r in trained.itertuples()],
                             hoverinfo="text"), row=1, col=1)
    if len(trained):
        fig.add_trace(go.Scatter(x=trained.number, y=trained.accuracy.cummax(), mode="lines", name="best so far",
                                 line=dict(color=GREEN, shape="hv", width=2), hoverinfo="skip"), row=1, col=1)
    if len(stopped):
        fig.add_trace(go.Scatter(x=stopped.number, y=stopped.accuracy, mode="markers", name="stopped early (pruner)",
                                 marker=dict(color=ORANGE, size=8, symbol="circle-open"),
                                 hovertext=[_hover(s, r) for r in stopped.itertuples()], hoverinfo="text"), row=1, col=1)
    if len(dups):
        fig.add_trace(go.Scatter(x=dups.number, y=dups.accuracy, mode="markers", name="duplicate (not retrained)",
                                 marker=dict(color=GREY, size=7, symbol="x-thin-open", line=dict(width=2)),
                                 hovertext=[f"trial #{r.number}: duplicate of #{r.duplicate_of}" for r in dups.itertuples()],
                                 hoverinfo="text"), row=1, col=1)
    base_acc = _num(s.base.get("accuracy"))
    if base_acc is not None:
        fig.add_hline(y=base_acc, line=dict(color=GREY, dash="dash"), row=1, col=1,
                      annotation_text=f"base {base_acc:.4f}", annotation_position="bottom right")
    if main:
        priced = f[f[ratio].notna()]
        ok, bad = priced[~priced.infeasible], priced[priced.infeasible]
        shown = (lambda v: _pct(v)) if ratio != main else (lambda v: _si(v))
        fig.add_trace(go.Scatter(x=ok.number, y=ok[ratio], mode="markers", name="feasible",
                                 marker=dict(color=BLUE, size=6, opacity=0.6),
                                 hovertext=[f"trial #{r.number} ({r.label.lower()}): {main} {shown(getattr(r, ratio))}"
                                            for r in ok.itertuples()], hoverinfo="text"), row=2, col=1)
        fig.add_trace(go.Scatter(x=bad.number, y=bad[ratio], mode="markers", name="infeasible (not trained)",
                                 marker=dict(color=RED, size=8, symbol="x"),
                                 hovertext=[f"trial #{r.number}: infeasible, {main} {shown(getattr(r, ratio))}"
                                            for r in bad.itertuples()], hoverinfo="text"), row=2, col=1)
        bound = s.bounds.get(main)
        if bound:
            y = bound / s.base_costs[main] if ratio != main and s.base_costs.get(main) else bound
            fig.add_hline(y=y, line=dict(color=RED, dash="dot"), row=2, col=1,
                          annotation_text=f"bound {shown(y)}", annotation_position="top right")
        fig.update_yaxes(title_text=f"{main} / base" if ratio != main else s.title(main),
                         tickformat=".0%" if ratio != main else ".3~s", row=2, col=1)
    fig.update_yaxes(title_text="val accuracy", row=1, col=1)
    fig.update_xaxes(title_text="trial number", row=2, col=1)
    if len(f) and int(f.number.max()) <= 15:  # whole trial numbers only
        fig.update_xaxes(dtick=1)
    return _fig_html(fig, "plot-history", 600, legend_y=1.08)


def _pareto_figure(s: _Summary) -> str:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    trained = _trained(s.frame)
    panels = s.costs[:MAX_COST_PANELS]
    target = (s.config.get("latency") or {}).get("target")
    titles = [f"Accuracy vs {_SHORT.get(c, c)}" for c in panels]
    fig = make_subplots(rows=1, cols=len(panels), shared_yaxes=True, horizontal_spacing=0.06,
                        subplot_titles=titles)
    base_acc = _num(s.base.get("accuracy"))
    for col, cost in enumerate(panels, start=1):
        first = col == 1
        front = s.fronts.get(cost, [])
        pts = trained[trained[cost].notna()]
        fig.add_trace(go.Scatter(x=pts[cost], y=pts.accuracy, mode="markers", name="trained",
                                 legendgroup="trained", showlegend=first,
                                 marker=dict(color=BLUE, size=7, opacity=0.45),
                                 hovertext=[_hover(s, r) for r in pts.itertuples()], hoverinfo="text"), row=1, col=col)
        fr = pts.set_index("number").loc[front].reset_index() if front else pts.iloc[:0]
        fig.add_trace(go.Scatter(x=fr[cost], y=fr.accuracy, mode="lines+markers+text", name="Pareto-optimal",
                                 legendgroup="pareto", showlegend=first, line=dict(color=RED, shape="hv"),
                                 marker=dict(color=RED, size=10), text=_sparse_labels(list(fr.number), s.best),
                                 textposition="top left", textfont=dict(color=RED),
                                 hovertext=[_hover(s, r) for r in fr.itertuples()], hoverinfo="text"), row=1, col=col)
        if s.best is not None:
            b = pts[pts.number == s.best]
            fig.add_trace(go.Scatter(x=b[cost], y=b.accuracy, mode="markers", name=f"best accuracy (#{s.best})",
                                     legendgroup="best", showlegend=first,
                                     marker=dict(color=GOLD, size=16, symbol="diamond", line=dict(color="black", width=1)),
                                     hovertext=[_hover(s, r) for r in b.itertuples()], hoverinfo="text"), row=1, col=col)
        base_cost = s.base_costs.get(cost)
        if base_cost is not None and base_acc is not None:
            fig.add_trace(go.Scatter(x=[base_cost], y=[base_acc], mode="markers", name="base model",
                                     legendgroup="base", showlegend=first,
                                     marker=dict(color="black", size=18, symbol="star"),
                                     hovertext=f"base {s.base.get('model') or ''}<br>accuracy {base_acc:.4f}"
                                               f"<br>{s.title(cost)} {_si(base_cost)}", hoverinfo="text"), row=1, col=col)
        bound = s.bounds.get(cost)
        if bound:
            fig.add_vline(x=bound, line=dict(color=RED, dash="dot"), row=1, col=col,
                          annotation_text=f"{cost} bound {_si(bound)}", annotation_position="top left")
        axis = s.title(cost) + (f" on {target}" if cost == "latency" and target else "")
        fig.update_xaxes(title_text=axis, tickformat=".3~s", rangemode="tozero", row=1, col=col)
    fig.update_yaxes(title_text="val accuracy", row=1, col=1)
    return _fig_html(fig, "plot-pareto", 520, legend_y=1.1)


def _sparse_labels(numbers: list[int], best: int | None, most: int = 8) -> list[str]:
    """``#N`` labels for at most ``most`` points of a front (ends and the best always), so they stay legible."""
    step = max(1, math.ceil(len(numbers) / most))
    return [f"#{n}" if i % step == 0 or i == len(numbers) - 1 or n == best else ""
            for i, n in enumerate(numbers)]


def _shown_architectures(s: _Summary) -> list[int]:
    front = list(s.front)
    if len(front) > MAX_WIDTH_PLOTS - 1:  # evenly spread along the front, ends included
        step = (len(front) - 1) / (MAX_WIDTH_PLOTS - 2)
        front = sorted({front[round(i * step)] for i in range(MAX_WIDTH_PLOTS - 1)})
    out = [s.best] if s.best is not None else []
    return out + [k for k in front if k != s.best]


def _layers(record: Any) -> dict | None:
    """A ``describe`` record's per-layer view, if it has a usable one."""
    layers = (record or {}).get("layers") if isinstance(record, dict) else None
    if isinstance(layers, dict) and isinstance(layers.get("values"), list) and layers["values"] \
            and isinstance(layers.get("names"), list) and len(layers["names"]) == len(layers["values"]):
        return layers
    return None


def _widths_section(s: _Summary) -> str:
    numbers = _shown_architectures(s)
    if not numbers:
        return ""
    views = {k: _layers(_json_attr(s.trials[k].user_attrs.get(st.DESCRIBE))) for k in numbers}
    names = {tuple(v["names"]) for v in views.values() if v}
    if not all(views.values()) or len(names) != 1:
        genomes = {k: _json_attr(s.trials[k].user_attrs.get(st.GENOME)) for k in numbers}
        return _genome_table(s, numbers, genomes)
    import plotly.graph_objects as go

    labels = [str(n) for n in next(iter(names))]
    first = next(iter(views.values()))
    label = first.get("label") or "value"
    base_view = _layers(s.base.get("describe"))
    base = first.get("base") or (base_view["values"] if base_view and base_view["names"] == first["names"] else None)
    fig = go.Figure()
    if base:
        fig.add_trace(go.Bar(x=labels, y=base, name="base", marker_color="#d9d9d9",
                             marker_line=dict(color=GREY, width=1)))
    palette = [GOLD, RED, "#9467bd", "#8c564b", "#17becf", "#e377c2", "#bcbd22", BLUE]
    row = s.frame.set_index("number")
    main = s.main
    for i, k in enumerate(numbers):
        tag = "best" if k == s.best else "Pareto"
        cost = f", {_pct(row[f'{main}_ratio'][k])} {main}" if main and row[f"{main}_ratio"].notna()[k] else ""
        fig.add_trace(go.Bar(x=labels, y=views[k]["values"], name=f"#{k} ({tag}, acc {_acc(row.accuracy[k])}{cost})",
                             marker_color=palette[i % len(palette)]))
    note = (f"{label[:1].upper()}{label[1:]} per layer" + (", against the base (grey)" if base else "")
            + ", for the best and the Pareto-optimal architectures.")
    fig.update_layout(barmode="group", bargap=0.25)
    fig.update_yaxes(title_text=label)
    return f"<p class='note'>{_e(note)}</p>" + _fig_html(fig, "plot-widths", 460)


def _genome_table(s: _Summary, numbers: list[int], genomes: dict[int, Any]) -> str:
    keys = sorted({key for g in genomes.values() if isinstance(g, dict) for key in g})
    head = "".join(f"<th>{_e(k)}</th>" for k in ["trial", *keys])
    body = []
    for k in numbers:
        g = genomes[k] if isinstance(genomes[k], dict) else {"genome": genomes[k]}
        cells = "".join(f"<td>{_e(json.dumps(g.get(key)) if key in g else '')}</td>" for key in keys)
        body.append(f"<tr><td>#{k}{' (best)' if k == s.best else ''}</td>{cells}</tr>")
    return f"<table class='genomes'><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


# --- page --------------------------------------------------------------------------------


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f6f7f9;color:#202124}
main{max-width:1320px;margin:0 auto;padding:20px 28px 60px}
h1{margin:0 0 4px;font-size:26px} h2{margin:28px 0 10px;font-size:20px}
.sub{color:#5f6368;margin-bottom:14px}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:10px 0}
.card{background:#fff;border:1px solid #e0e0e0;border-radius:8px;padding:10px 14px;min-width:150px}
.card b{display:block;font-size:12px;color:#5f6368;font-weight:600;text-transform:uppercase;letter-spacing:.03em}
.card span{font-size:17px}
.pick{background:#fffbe6;border:2px solid #f2b705;border-radius:10px;padding:14px 18px;margin:16px 0}
.pick h2{margin:0 0 8px}
.pick .headline{font-size:19px;margin:4px 0 10px}
code{background:#eef1f4;padding:2px 6px;border-radius:4px;font-size:13px;white-space:nowrap}
table{border-collapse:collapse;background:#fff;font-size:13px;width:100%}
th,td{border-bottom:1px solid #e6e6e6;padding:5px 8px;text-align:right}
th{background:#f1f3f4;position:sticky;top:0}
td:first-child,th:first-child{text-align:left}
td.l,th.l{text-align:left}
#trials th{cursor:pointer;user-select:none} #trials th:after{content:" \\2195";color:#aaa}
tr.best td{background:#fff4c2} tr.pareto td{background:#fde8e8}
tr.INFEASIBLE td,tr.FAIL td{color:#9aa0a6}
.chip{display:inline-block;border-radius:12px;padding:2px 10px;margin:2px 4px 2px 0;background:#e8eaed;font-size:13px}
.chip.COMPLETE{background:#d2e3fc}.chip.INFEASIBLE{background:#fad2cf}.chip.FAIL{background:#f28b82}
.chip.DUPLICATE{background:#e8eaed}.chip.PRUNED{background:#feefc3}.chip.RUNNING{background:#ceead6}
.panel{background:#fff;border:1px solid #e0e0e0;border-radius:8px;padding:8px;margin:8px 0}
.note{color:#5f6368;font-size:13px} .empty{font-size:18px;color:#5f6368;padding:24px 0}
#js-errors{color:#b00020;white-space:pre-wrap}
"""

ERROR_HOOK = """<script>
(function(){
  function report(msg){var el=document.getElementById('js-errors');
    if(el){el.hidden=false;el.textContent+=msg+'\\n';}}
  window.addEventListener('error',function(ev){report('JavaScript error: '+(ev.message||ev));});
  window.addEventListener('unhandledrejection',function(ev){report('JavaScript error: '+(ev.reason&&ev.reason.message||ev.reason));});
})();
</script>"""

SORT_JS = """<script>
(function(){
  var table=document.getElementById('trials'); if(!table) return;
  var dirs={};
  table.querySelectorAll('th').forEach(function(th,i){
    th.addEventListener('click',function(){
      var body=table.tBodies[0], rows=Array.prototype.slice.call(body.rows), asc=dirs[i]=!dirs[i];
      rows.sort(function(a,b){
        var x=a.cells[i].dataset.v, y=b.cells[i].dataset.v, nx=parseFloat(x), ny=parseFloat(y);
        if(x===''&&y!=='') return 1; if(y===''&&x!=='') return -1;
        var c=(!isNaN(nx)&&!isNaN(ny))?nx-ny:String(x).localeCompare(String(y));
        return asc?c:-c;});
      rows.forEach(function(r){body.appendChild(r);});
    });
  });
})();
</script>"""


def _page(s: _Summary, notes: list[str]) -> str:
    from plotly.offline import get_plotlyjs

    body = [_header(s), _pick_section(s)]
    f = s.frame
    if len(f):
        body.append("<h2>History</h2><div class='panel'>" + _history_figure(s) + "</div>")
        if s.best is not None and s.costs:
            body.append("<h2>Pareto front</h2><p class='note'>Every trained candidate; the red line joins the "
                        "non-dominated ones (no other candidate is both more accurate and cheaper). "
                        "★ is the base model, the dotted line the constraint bound.</p>"
                        "<div class='panel'>" + _pareto_figure(s) + "</div>")
        if s.best is not None:
            body.append("<h2>Per-layer view</h2><div class='panel'>" + _widths_section(s) + "</div>")
        body.append("<h2>All trials</h2><p class='note'>Click a column to sort. "
                    "Highlighted: best (yellow) and Pareto-optimal (red) trials.</p>" + _trial_table(s))
    body += [f"<p class='note'>{_e(n)}</p>" for n in notes]
    title = f"searchkit report: {s.name}"
    return "\n".join([
        "<!DOCTYPE html>", "<html lang='en'><head><meta charset='utf-8'>",
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body>",
        "<div id='js-errors' hidden></div>", ERROR_HOOK,
        f"<script type='text/javascript'>{get_plotlyjs()}</script>",
        "<main>", *body, "</main>", SORT_JS, "</body></html>",
    ])


def _header(s: _Summary) -> str:
    c = s.config
    space, data, algo = c.get("space") or {}, c.get("data") or {}, c.get("algo") or {}
    limits = {("latency" if k == "latency_ms" else k): _num(v) for k, v in (c.get("constraint") or {}).items()}
    constraint = ", ".join(
        f"{k} ≤ {_pct(v) + ' of base' if v <= 1 and s.info.get(k, {}).get('relative', True) else _si(v)}"
        for k, v in limits.items() if v is not None) or "none"
    model = space.get("model") or s.base.get("model")
    sub = " · ".join(x for x in [
        f"space <b>{_e(space.get('name', '?'))}</b>", f"model <b>{_e(model)}</b>" if model else "",
        f"data <b>{_e(data.get('name', '?'))}</b>", f"algo <b>{_e(algo.get('name', '?'))}</b>",
        f"objectives <b>{_e(', '.join(c.get('objectives') or ['accuracy']))}</b>",
        f"constraint <b>{_e(constraint)}</b>",
        f"budget <b>{_e(c.get('trials', '?'))}</b> trained candidates"] if x)
    if not c:
        sub = "no searchkit configuration stored in this study"
    counts = {label: int((s.frame.label == label).sum()) if len(s.frame) else 0 for label in LABELS}
    chips = "".join(f"<span class='chip {k}'>{k.lower()} {v}</span>" for k, v in counts.items()
                    if v or k in LABELS[:6])
    cards = [("base accuracy", _acc(_num(s.base.get("accuracy"))))]
    cards += [(f"base {c}", _si(s.base_costs.get(c))) for c in s.costs[:2]]
    cards.append(("trials", str(len(s.frame))))
    if s.best is not None:
        r = s.frame.set_index("number").loc[s.best]
        cards.append(("best accuracy", f"{_acc(r.accuracy)} (#{s.best})"))
        if s.main:
            ratio = r[f"{s.main}_ratio"]
            cards.append((f"its {s.main}", f"{_pct(ratio)} of base" if ratio is not None and not pd.isna(ratio)
                          else _si(r[s.main])))
    card_html = "".join(f"<div class='card'><b>{_e(k)}</b><span>{_e(v)}</span></div>" for k, v in cards)
    return (f"<h1>{_e(s.name)}</h1><div class='sub'>{sub}</div>"
            f"<div class='cards'>{card_html}</div><div>{chips}</div>")


def _reduction(s: _Summary, row) -> str:
    parts = []
    for c in s.costs[:2]:
        ratio = row[f"{c}_ratio"]
        if ratio is None or pd.isna(ratio) or ratio <= 0:
            continue
        parts.append(f"{c} −{100 * (1 - ratio):.0f}% ({1 / ratio:.2f}× less)" if ratio < 1
                     else f"{_pct(ratio)} of base {c}")
    return ", ".join(parts)


def _pick_section(s: _Summary) -> str:
    if s.best is None:
        n = len(s.frame)
        why = "No trials yet." if n == 0 else \
            f"No trained trials yet ({n} trial{'s' if n != 1 else ''} so far, none completed with an accuracy)."
        hint = (f"Run <code>searchkit resume study={_e(s.name)}</code> (or <code>searchkit search</code>) "
                "to train candidates, then report again.")
        return f"<div class='pick'><h2>Which to pick</h2><p class='empty'>{_e(why)}</p><p>{hint}</p></div>"
    row = s.frame.set_index("number")
    base_acc = _num(s.base.get("accuracy"))
    b = row.loc[s.best]
    delta = f" ({b.accuracy - base_acc:+.4f} vs base)" if base_acc is not None else ""
    headline = (f"Best accuracy: <b>trial #{s.best}</b> — accuracy <b>{_acc(b.accuracy)}</b>{_e(delta)}"
                f"{', ' + _e(_reduction(s, b)) if _reduction(s, b) else ''}. "
                f"<code>{_e(_export_command(s, s.best))}</code>")
    cols = s.costs[:2]
    rows = []
    front = list(reversed(s.front)) or [s.best]  # most accurate (the best) first
    for k in front:
        r = row.loc[k]
        cls = "best" if k == s.best else "pareto"
        d = f"{r.accuracy - base_acc:+.4f}" if base_acc is not None else "–"
        cells = "".join(f"<td>{_pct(r[f'{c}_ratio'])}</td><td>{_si(r[c])}</td>" for c in cols)
        rows.append(f"<tr class='{cls}'><td>#{k}{' ★ best' if k == s.best else ''}</td><td>{_acc(r.accuracy)}</td>"
                    f"<td>{d}</td>{cells}<td class='l'><code>{_e(_export_command(s, k))}</code></td></tr>")
    heads = "".join(f"<th>{_e(c)} / base</th><th>{_e(c)}</th>" for c in cols)
    table = (f"<table><thead><tr><th>trial</th><th>accuracy</th><th>Δ vs base</th>{heads}"
             f"<th class='l'>export</th></tr></thead><tbody>{''.join(rows)}</tbody></table>")
    export_all = ""
    if len(front) > 1:
        export_all = (f"<p class='note'>Export them all: <code>{_e(_export_command(s, 0).replace('trial=0', 'top=pareto'))}"
                      "</code></p>")
    main = s.title(s.main) if s.main else "cost"
    return (f"<div class='pick'><h2>Which to pick</h2><div class='headline'>{headline}</div>"
            f"<p class='note'>Pareto-optimal architectures (accuracy vs {_e(main)}), most accurate first — each is "
            f"the most accurate one found at its {_e(s.main or 'cost')} or less; go down the list for a smaller "
            f"model:</p>{table}{export_all}</div>")


def _trial_table(s: _Summary) -> str:
    cols = [("trial", "number"), ("state", "label"), ("accuracy", "accuracy")]
    for c in s.costs:
        unit = s.info.get(c, {}).get("unit")
        cols.append((f"{c} ({unit})" if unit and unit not in (c, "MACs", "params") else c, c))
        if s.frame[f"{c}_ratio"].notna().any():
            cols.append((f"{c} / base", f"{c}_ratio"))
    cols += [("archid", "archid"), ("duration (s)", "duration_s"), ("flags", "flags")]
    left = ("label", "archid", "flags")
    head = "".join(f"<th{' class=l' if key in left else ''}>{_e(name)}</th>" for name, key in cols)
    pareto = set(s.front)
    out = []
    for r in s.frame.sort_values("number").itertuples():
        flags = []
        if r.infeasible:
            flags.append("infeasible")
        if r.duplicate_of is not None and not pd.isna(r.duplicate_of):
            flags.append(f"duplicate of #{int(r.duplicate_of)}")
        if r.label == "PRUNED" and r.evaluated:
            flags.append("stopped early")
        if isinstance(r.fail_reason, str) and r.fail_reason:
            flags.append(r.fail_reason)
        if r.number == s.best:
            flags.append("best")
        if r.number in pareto:
            flags.append("Pareto")
        tds = []
        for name, key in cols:
            if key == "flags":
                v = text = "; ".join(flags)
            else:
                v = getattr(r, key)
                if key == "number":
                    text = f"#{v}"
                elif key == "label":
                    text = v.lower()
                elif key == "accuracy":
                    text = _acc(v)
                elif key.endswith("_ratio"):
                    text = _pct(v)
                elif key == "archid":
                    v = v if isinstance(v, str) else ""
                    text = v or "–"
                elif key == "duration_s":
                    text = "–" if v is None or pd.isna(v) else f"{v:.1f}"
                else:
                    text = _si(v) if s.info.get(key, {}).get("unit") != "ms" else (
                        "–" if v is None or pd.isna(v) else f"{v:.3f}")
            v = "" if v is None or (isinstance(v, float) and math.isnan(v)) else v
            cls = " class=l" if key in left else ""
            tds.append(f"<td{cls} data-v='{_e(v)}'>{_e(text)}</td>")
        cls = "best" if r.number == s.best else "pareto" if r.number in pareto else r.label
        out.append(f"<tr class='{cls}'>{''.join(tds)}</tr>")
    return f"<table id='trials'><thead><tr>{head}</tr></thead><tbody>{''.join(out)}</tbody></table>"
