"""One self-contained HTML report of a study, plus its trials as CSV and Parquet.

``write_report(study)`` reads only the study (its trials, the stored run configuration and
the base model's figures) and writes ``reports/<study>/index.html`` (plotly.js inline, so
the page opens offline), ``trials.csv`` and ``trials.parquet`` beside it. The page starts
with what to export: the best-accuracy architecture and the accuracy-vs-FLOPs Pareto front,
each with its ``searchkit export`` command; then the search history, the Pareto plots, the
per-layer widths of the architectures worth keeping, and a sortable table of all trials.

Accuracy and costs are always read from the user attrs the driver writes (``val_accuracy``,
``flops``, ``params``, ...), so single- and multi-objective studies are reported alike.

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

DEFAULT_STORAGE = "sqlite:///studies/searchkit.db"
MAX_WIDTH_PLOTS = 8  # architectures in the per-layer chart; more bars than this are unreadable

# Trial labels, in the order the header lists them.
LABELS = ("COMPLETE", "INFEASIBLE", "DUPLICATE", "PRUNED", "FAIL", "RUNNING", "WAITING")

BLUE, RED, GREY, GOLD, GREEN, ORANGE = "#1f77b4", "#d62728", "#9aa0a6", "#f2b705", "#2ca02c", "#ff7f0e"


@dataclass
class _Summary:
    """What the page says, computed once from the study."""

    name: str
    config: dict[str, Any]
    base: dict[str, Any]
    frame: pd.DataFrame            # one row per trial
    trials: dict[int, FrozenTrial]
    best: int | None               # trial number of the best-accuracy trained trial
    pareto_flops: list[int]        # non-dominated (accuracy up, FLOPs down), by FLOPs
    pareto_params: list[int]
    flops_bound: float | None
    params_bound: float | None
    pareto_latency: list[int] = field(default_factory=list)  # with a latency target
    latency_bound: float | None = None


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


def _label(t: FrozenTrial) -> str:
    if t.user_attrs.get(st.INFEASIBLE):
        return "INFEASIBLE"
    if t.user_attrs.get(st.DUPLICATE_OF) is not None:
        return "DUPLICATE"
    return t.state.name


def _accuracy(t: FrozenTrial) -> float | None:
    acc = _num(t.user_attrs.get("val_accuracy"))
    if acc is None and t.state == TrialState.COMPLETE and t.values:
        acc = _num(t.values[0])  # studies written before val_accuracy was stored
    return acc


def _bound(value: Any, base: float | None) -> float | None:
    value = _num(value)
    if value is None:
        return None
    if value <= 1:
        return value * base if base else None
    return value


def _summarize(study: optuna.Study) -> _Summary:
    config = _json_attr(study.user_attrs.get(st.CONFIG_KEY)) or {}
    config = config if isinstance(config, dict) else {}
    base = _json_attr(study.user_attrs.get(st.BASE_KEY)) or {}
    base = base if isinstance(base, dict) else {}
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    base_flops, base_params = _num(base.get("flops")), _num(base.get("params"))
    rows = []
    for t in trials.values():
        ua = t.user_attrs
        flops, params = _num(ua.get(st.FLOPS)), _num(ua.get(st.PARAMS))
        duration = (t.datetime_complete - t.datetime_start).total_seconds() \
            if t.datetime_complete and t.datetime_start else None
        rows.append({
            "number": t.number, "state": t.state.name, "label": _label(t),
            "accuracy": _accuracy(t), "flops": flops, "params": params, "latency": _num(ua.get(st.LATENCY)),
            "flops_ratio": _num(ua.get("flops_ratio")) or (flops / base_flops if flops and base_flops else None),
            "params_ratio": _num(ua.get("params_ratio")) or (params / base_params if params and base_params else None),
            "archid": ua.get(st.ARCHID), "duration_s": duration,
            "train_s": _num(ua.get("seconds")),
            "evaluated": bool(ua.get(st.EVALUATED)), "infeasible": bool(ua.get(st.INFEASIBLE)),
            "duplicate_of": ua.get(st.DUPLICATE_OF), "fail_reason": ua.get(st.FAIL_REASON),
            "genome": _json_attr(ua.get(st.GENOME)),
        })
    columns = ["number", "state", "label", "accuracy", "flops", "params", "latency", "flops_ratio", "params_ratio",
               "archid", "duration_s", "train_s", "evaluated", "infeasible", "duplicate_of",
               "fail_reason", "genome"]
    frame = pd.DataFrame(rows, columns=columns)
    trained = frame[(frame.label == "COMPLETE") & frame.evaluated & frame.accuracy.notna()] \
        if len(frame) else frame
    best = None
    if len(trained):
        ranked = trained.assign(_f=trained.flops.fillna(math.inf)).sort_values(
            ["accuracy", "_f", "number"], ascending=[False, True, True])
        best = int(ranked.number.iloc[0])
    constraint = config.get("constraint") or {}
    return _Summary(
        name=study.study_name, config=config, base=base, frame=frame, trials=trials, best=best,
        pareto_flops=_front(study, trained, "flops"), pareto_params=_front(study, trained, "params"),
        flops_bound=_bound(constraint.get("flops"), base_flops),
        params_bound=_bound(constraint.get("params"), base_params),
        pareto_latency=_front(study, trained, "latency") if trained.latency.notna().any() else [],
        latency_bound=_num(constraint.get("latency_ms")))


def _front(study: optuna.Study, trained: pd.DataFrame, cost: str) -> list[int]:
    """The front ``searchkit export top=pareto`` exports (cheapest first), so both agree."""
    try:
        numbers = {t.number for t in st.pareto_trials(study, ("accuracy", cost))}
    except (KeyError, TypeError, ValueError, IndexError):  # a trial without that cost
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
    out["fail_reason"] = out.fail_reason.astype("string")
    out["archid"] = out.archid.astype("string")
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
        cmd += f" storage={st._redact(storage)}"
    return cmd


# --- figures -----------------------------------------------------------------------------


def _fig_html(fig, div_id: str, height: int, legend_y: float = 1.02) -> str:
    # The legend sits above the plots (above subplot titles when there are some: legend_y > 1.02).
    fig.update_layout(height=height, margin=dict(l=60, r=20, t=40 + int(600 * (legend_y - 1)), b=50),
                      template="plotly_white",
                      legend=dict(orientation="h", yanchor="bottom", y=legend_y, x=0))
    return fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id,
                       default_width="100%", default_height=f"{height}px",
                       config={"displaylogo": False, "responsive": True})


def _hover(row) -> str:
    parts = [f"trial #{row.number}", f"accuracy {_acc(row.accuracy)}"]
    if row.flops is not None and not pd.isna(row.flops):
        parts.append(f"FLOPs {_si(row.flops)} ({_pct(row.flops_ratio)} of base)")
    if row.params is not None and not pd.isna(row.params):
        parts.append(f"params {_si(row.params)} ({_pct(row.params_ratio)})")
    if getattr(row, "latency", None) is not None and not pd.isna(row.latency):
        parts.append(f"latency {row.latency:.3f} ms (predicted)")
    return "<br>".join(parts)


def _history_figure(s: _Summary) -> str:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    f = s.frame.sort_values("number")
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.64, 0.36], vertical_spacing=0.08,
                        subplot_titles=("Validation accuracy of trained candidates",
                                        "FLOPs of every candidate (priced before training)"))
    trained = f[(f.label == "COMPLETE") & f.evaluated & f.accuracy.notna()]
    stopped = f[(f.label == "PRUNED") & f.evaluated & f.accuracy.notna()]
    dups = f[(f.label == "DUPLICATE") & f.accuracy.notna()]
    fig.add_trace(go.Scatter(x=trained.number, y=trained.accuracy, mode="markers", name="trained",
                             marker=dict(color=BLUE, size=8), hovertext=[_hover(r) for r in trained.itertuples()],
                             hoverinfo="text"), row=1, col=1)
    if len(trained):
        best = trained.accuracy.cummax()
        fig.add_trace(go.Scatter(x=trained.number, y=best, mode="lines", name="best so far",
                                 line=dict(color=GREEN, shape="hv", width=2), hoverinfo="skip"), row=1, col=1)
    if len(stopped):
        fig.add_trace(go.Scatter(x=stopped.number, y=stopped.accuracy, mode="markers", name="stopped early (pruner)",
                                 marker=dict(color=ORANGE, size=8, symbol="circle-open"),
                                 hovertext=[_hover(r) for r in stopped.itertuples()], hoverinfo="text"), row=1, col=1)
    if len(dups):
        fig.add_trace(go.Scatter(x=dups.number, y=dups.accuracy, mode="markers", name="duplicate (not retrained)",
                                 marker=dict(color=GREY, size=7, symbol="x-thin-open", line=dict(width=2)),
                                 hovertext=[f"trial #{r.number}: duplicate of #{r.duplicate_of}" for r in dups.itertuples()],
                                 hoverinfo="text"), row=1, col=1)
    base_acc = _num(s.base.get("accuracy"))
    if base_acc is not None:
        fig.add_hline(y=base_acc, line=dict(color=GREY, dash="dash"), row=1, col=1,
                      annotation_text=f"base {base_acc:.4f}", annotation_position="bottom right")
    priced = f[f.flops_ratio.notna()]
    ok = priced[~priced.infeasible]
    bad = priced[priced.infeasible]
    fig.add_trace(go.Scatter(x=ok.number, y=ok.flops_ratio, mode="markers", name="feasible",
                             marker=dict(color=BLUE, size=6, opacity=0.6),
                             hovertext=[f"trial #{r.number} ({r.label.lower()}): {_pct(r.flops_ratio)} of base FLOPs"
                                        for r in ok.itertuples()], hoverinfo="text"), row=2, col=1)
    fig.add_trace(go.Scatter(x=bad.number, y=bad.flops_ratio, mode="markers", name="infeasible (not trained)",
                             marker=dict(color=RED, size=8, symbol="x"),
                             hovertext=[f"trial #{r.number}: infeasible, {_pct(r.flops_ratio)} of base FLOPs"
                                        for r in bad.itertuples()], hoverinfo="text"), row=2, col=1)
    if s.flops_bound and _num(s.base.get("flops")):
        ratio = s.flops_bound / float(s.base["flops"])
        fig.add_hline(y=ratio, line=dict(color=RED, dash="dot"), row=2, col=1,
                      annotation_text=f"bound {_pct(ratio)}", annotation_position="top right")
    fig.update_yaxes(title_text="val accuracy", row=1, col=1)
    fig.update_yaxes(title_text="FLOPs / base", tickformat=".0%", row=2, col=1)
    fig.update_xaxes(title_text="trial number", row=2, col=1)
    if len(f) and int(f.number.max()) <= 15:  # whole trial numbers only
        fig.update_xaxes(dtick=1)
    return _fig_html(fig, "plot-history", 600, legend_y=1.08)


def _pareto_figure(s: _Summary) -> str:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    f = s.frame
    trained = f[(f.label == "COMPLETE") & f.evaluated & f.accuracy.notna()]
    panels = [("flops", s.pareto_flops, s.flops_bound, "FLOPs (MACs)"),
              ("params", s.pareto_params, s.params_bound, "parameters")]
    titles = ["Accuracy vs FLOPs", "Accuracy vs parameters"]
    if s.pareto_latency:
        target = (s.config.get("latency") or {}).get("target")
        panels.append(("latency", s.pareto_latency, s.latency_bound, f"predicted latency (ms) on {target}"))
        titles.append("Accuracy vs latency")
    fig = make_subplots(rows=1, cols=len(panels), shared_yaxes=True, horizontal_spacing=0.06,
                        subplot_titles=titles)
    base_acc = _num(s.base.get("accuracy"))
    for col, (cost, front, bound, title) in enumerate(panels, start=1):
        first = col == 1
        pts = trained[trained[cost].notna()]
        fig.add_trace(go.Scatter(x=pts[cost], y=pts.accuracy, mode="markers", name="trained",
                                 legendgroup="trained", showlegend=first,
                                 marker=dict(color=BLUE, size=7, opacity=0.45),
                                 hovertext=[_hover(r) for r in pts.itertuples()], hoverinfo="text"), row=1, col=col)
        fr = pts.set_index("number").loc[front].reset_index() if front else pts.iloc[:0]
        fig.add_trace(go.Scatter(x=fr[cost], y=fr.accuracy, mode="lines+markers+text", name="Pareto-optimal",
                                 legendgroup="pareto", showlegend=first, line=dict(color=RED, shape="hv"),
                                 marker=dict(color=RED, size=10), text=_sparse_labels(list(fr.number), s.best),
                                 textposition="top left", textfont=dict(color=RED),
                                 hovertext=[_hover(r) for r in fr.itertuples()], hoverinfo="text"), row=1, col=col)
        if s.best is not None:
            b = pts[pts.number == s.best]
            fig.add_trace(go.Scatter(x=b[cost], y=b.accuracy, mode="markers", name=f"best accuracy (#{s.best})",
                                     legendgroup="best", showlegend=first,
                                     marker=dict(color=GOLD, size=16, symbol="diamond", line=dict(color="black", width=1)),
                                     hovertext=[_hover(r) for r in b.itertuples()], hoverinfo="text"), row=1, col=col)
        base_cost = _num(s.base.get(cost))
        if base_cost is not None and base_acc is not None:
            fig.add_trace(go.Scatter(x=[base_cost], y=[base_acc], mode="markers", name="base model",
                                     legendgroup="base", showlegend=first,
                                     marker=dict(color="black", size=18, symbol="star"),
                                     hovertext=f"base {s.base.get('model', '')}<br>accuracy {base_acc:.4f}"
                                               f"<br>{title} {_si(base_cost)}", hoverinfo="text"), row=1, col=col)
        if bound:
            fig.add_vline(x=bound, line=dict(color=RED, dash="dot"), row=1, col=col,
                          annotation_text=f"{cost} bound {_si(bound)}", annotation_position="top left")
        fig.update_xaxes(title_text=title, tickformat=".3~s", rangemode="tozero", row=1, col=col)
    fig.update_yaxes(title_text="val accuracy", row=1, col=1)
    return _fig_html(fig, "plot-pareto", 520, legend_y=1.1)


def _sparse_labels(numbers: list[int], best: int | None, most: int = 8) -> list[str]:
    """``#N`` labels for at most ``most`` points of a front (ends and the best always), so they stay legible."""
    step = max(1, math.ceil(len(numbers) / most))
    return [f"#{n}" if i % step == 0 or i == len(numbers) - 1 or n == best else ""
            for i, n in enumerate(numbers)]


def _kept(keep: list[float], widths: list[int]) -> list[int]:
    # Same rounding as the surgery and the cost table (searchkit.models.surgery.keep_counts).
    return [max(1, math.floor(c * f + 1e-9)) for c, f in zip(widths, keep)]


def _unit_layout(s: _Summary, numbers: list[int]) -> tuple[list[str], list[int] | None, dict[int, list[float]], bool]:
    """Unit labels, base widths (or None), per-trial values and whether values are channels."""
    n = max(len(s.trials[k].user_attrs.get(st.GENOME, {}).get("keep", [])) for k in numbers)
    names = s.base.get("unit_names")
    base_widths = s.base.get("base_widths")
    if not (isinstance(names, list) and len(names) == n):
        names = None
        for k in numbers:  # the driver stores {unit name: kept indices} for trained trials
            hist = s.trials[k].user_attrs.get("kept_indices")
            if isinstance(hist, dict) and len(hist) == n:
                names = list(hist)
                break
    if not (isinstance(base_widths, list) and len(base_widths) == n):
        base_widths = None
    values: dict[int, list[float]] = {}
    channels = True
    for k in numbers:
        ua = s.trials[k].user_attrs
        keep = _json_attr(ua.get(st.GENOME))["keep"]
        widths = ua.get("widths")
        hist = ua.get("kept_indices")
        if isinstance(widths, list) and len(widths) == n:
            values[k] = widths
        elif base_widths:
            values[k] = _kept(keep, base_widths)
        elif isinstance(hist, dict) and len(hist) == n and names == list(hist):
            values[k] = [len(v) for v in hist.values()]
        else:
            channels = False
    if not channels:
        values = {k: list(_json_attr(s.trials[k].user_attrs.get(st.GENOME))["keep"]) for k in numbers}
        base_widths = None
    labels = names or [f"unit {i}" for i in range(n)]
    return [str(x) for x in labels], base_widths, values, channels


def _shown_architectures(s: _Summary) -> list[int]:
    front = list(s.pareto_flops)
    if len(front) > MAX_WIDTH_PLOTS - 1:  # evenly spread along the front, ends included
        step = (len(front) - 1) / (MAX_WIDTH_PLOTS - 2)
        front = sorted({front[round(i * step)] for i in range(MAX_WIDTH_PLOTS - 1)})
    out = [s.best] if s.best is not None else []
    return out + [k for k in front if k != s.best]


def _widths_section(s: _Summary) -> str:
    numbers = _shown_architectures(s)
    if not numbers:
        return ""
    genomes = {k: _json_attr(s.trials[k].user_attrs.get(st.GENOME)) for k in numbers}
    if not all(isinstance(g, dict) and isinstance(g.get("keep"), list) and g["keep"] for g in genomes.values()):
        return _genome_table(s, numbers, genomes)
    import plotly.graph_objects as go

    labels, base_widths, values, channels = _unit_layout(s, numbers)
    fig = go.Figure()
    if base_widths:
        fig.add_trace(go.Bar(x=labels, y=base_widths, name="base", marker_color="#d9d9d9",
                             marker_line=dict(color=GREY, width=1)))
    palette = [GOLD, RED, "#9467bd", "#8c564b", "#17becf", "#e377c2", "#bcbd22", BLUE]
    row = s.frame.set_index("number")
    for i, k in enumerate(numbers):
        tag = "best" if k == s.best else "Pareto"
        name = f"#{k} ({tag}, acc {_acc(row.accuracy[k])}, {_pct(row.flops_ratio[k])} FLOPs)"
        fig.add_trace(go.Bar(x=labels, y=values[k], name=name, marker_color=palette[i % len(palette)]))
    if channels:
        ytitle = "channels"
        note = ("Kept channels per prunable unit" + (", against the base widths (grey)" if base_widths else "")
                + ", for the best and the Pareto-optimal architectures.")
    else:
        ytitle = "kept / base"
        fig.add_hline(y=1.0, line=dict(color=GREY, dash="dash"), annotation_text="base (100%)")
        note = ("Preserved fraction of channels per prunable unit, for the best and the Pareto-optimal "
                "architectures (unit names and base widths are not stored in this study).")
    fig.update_layout(barmode="group", bargap=0.25)
    fig.update_yaxes(title_text=ytitle, tickformat=".0%" if not channels else None)
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
        if s.best is not None:
            body.append("<h2>Pareto front</h2><p class='note'>Every trained candidate; the red line joins the "
                        "non-dominated ones (no other candidate is both more accurate and cheaper). "
                        "★ is the base model, the dotted line the constraint bound.</p>"
                        "<div class='panel'>" + _pareto_figure(s) + "</div>")
            body.append("<h2>Per-layer widths</h2><div class='panel'>" + _widths_section(s) + "</div>")
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
    limits = {k: _num(v) for k, v in (c.get("constraint") or {}).items()}
    constraint = ", ".join(f"{k} ≤ {_pct(v) + ' of base' if v <= 1 else _si(v)}"
                           for k, v in limits.items() if v is not None) or "none"
    sub = " · ".join(x for x in [
        f"space <b>{_e(space.get('name', '?'))}</b>", f"model <b>{_e(space.get('model', s.base.get('model', '?')))}</b>",
        f"data <b>{_e(data.get('name', '?'))}</b>", f"algo <b>{_e(algo.get('name', '?'))}</b>",
        f"objectives <b>{_e(', '.join(c.get('objectives') or ['accuracy']))}</b>",
        f"constraint <b>{_e(constraint)}</b>",
        f"budget <b>{_e(c.get('trials', '?'))}</b> trained candidates"] if x)
    if not c:
        sub = "no searchkit configuration stored in this study"
    counts = {label: int((s.frame.label == label).sum()) if len(s.frame) else 0 for label in LABELS}
    chips = "".join(f"<span class='chip {k}'>{k.lower()} {v}</span>" for k, v in counts.items()
                    if v or k in LABELS[:6])
    base_acc = _num(s.base.get("accuracy"))
    cards = [("base accuracy", _acc(base_acc)), ("base FLOPs", _si(_num(s.base.get("flops")))),
             ("base params", _si(_num(s.base.get("params")))), ("trials", str(len(s.frame)))]
    if s.best is not None:
        r = s.frame.set_index("number").loc[s.best]
        cards.append(("best accuracy", f"{_acc(r.accuracy)} (#{s.best})"))
        cards.append(("its FLOPs", f"{_pct(r.flops_ratio)} of base" if r.flops_ratio else _si(r.flops)))
    card_html = "".join(f"<div class='card'><b>{_e(k)}</b><span>{_e(v)}</span></div>" for k, v in cards)
    return (f"<h1>{_e(s.name)}</h1><div class='sub'>{sub}</div>"
            f"<div class='cards'>{card_html}</div><div>{chips}</div>")


def _reduction(ratio: float | None) -> str:
    if ratio is None or pd.isna(ratio) or ratio <= 0:
        return ""
    return f"FLOPs −{100 * (1 - ratio):.0f}% ({1 / ratio:.2f}× fewer)" if ratio < 1 else f"{_pct(ratio)} of base FLOPs"


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
    headline = (f"Best accuracy: <b>trial #{s.best}</b> — accuracy <b>{_acc(b.accuracy)}</b>{_e(delta)}, "
                f"{_e(_reduction(b.flops_ratio))}, params {_e(_pct(b.params_ratio))} of base. "
                f"<code>{_e(_export_command(s, s.best))}</code>")
    rows = []
    front = list(reversed(s.pareto_flops)) or [s.best]  # most accurate (the best) first
    for k in front:
        r = row.loc[k]
        cls = "best" if k == s.best else "pareto"
        d = f"{r.accuracy - base_acc:+.4f}" if base_acc is not None else "–"
        rows.append(f"<tr class='{cls}'><td>#{k}{' ★ best' if k == s.best else ''}</td><td>{_acc(r.accuracy)}</td>"
                    f"<td>{d}</td><td>{_pct(r.flops_ratio)}</td><td>{_si(r.flops)}</td><td>{_pct(r.params_ratio)}</td>"
                    f"<td>{_si(r.params)}</td><td class='l'><code>{_e(_export_command(s, k))}</code></td></tr>")
    table = ("<table><thead><tr><th>trial</th><th>accuracy</th><th>Δ vs base</th><th>FLOPs / base</th>"
             "<th>FLOPs</th><th>params / base</th><th>params</th><th class='l'>export</th></tr></thead>"
             f"<tbody>{''.join(rows)}</tbody></table>")
    export_all = ""
    if len(front) > 1:
        export_all = (f"<p class='note'>Export them all: <code>{_e(_export_command(s, 0).replace('trial=0', 'top=pareto'))}"
                      "</code></p>")
    return (f"<div class='pick'><h2>Which to pick</h2><div class='headline'>{headline}</div>"
            f"<p class='note'>Pareto-optimal architectures (accuracy vs FLOPs), most accurate first — each is "
            f"the most accurate one found at its FLOPs or fewer; go down the list for a smaller "
            f"model:</p>{table}{export_all}</div>")


def _trial_table(s: _Summary) -> str:
    cols = [("trial", "number"), ("state", "label"), ("accuracy", "accuracy"), ("FLOPs", "flops"),
            ("FLOPs / base", "flops_ratio"), ("params", "params"), ("params / base", "params_ratio"),
            ("latency (ms)", "latency"),
            ("archid", "archid"), ("duration (s)", "duration_s"), ("flags", "flags")]
    head = "".join(f"<th{' class=l' if key in ('label', 'archid', 'flags') else ''}>{_e(name)}</th>"
                   for name, key in cols)
    pareto = set(s.pareto_flops)
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
        archid_ = r.archid if isinstance(r.archid, str) else ""
        cells = [
            (r.number, f"#{r.number}"), (r.label, r.label.lower()), (r.accuracy, _acc(r.accuracy)),
            (r.flops, _si(r.flops)), (r.flops_ratio, _pct(r.flops_ratio)), (r.params, _si(r.params)),
            (r.params_ratio, _pct(r.params_ratio)),
            (r.latency, "–" if r.latency is None or pd.isna(r.latency) else f"{r.latency:.3f}"),
            (archid_, archid_ or "–"),
            (r.duration_s, "–" if r.duration_s is None or pd.isna(r.duration_s) else f"{r.duration_s:.1f}"),
            ("; ".join(flags), "; ".join(flags)),
        ]
        tds = []
        for (name, key), (v, text) in zip(cols, cells):
            v = "" if v is None or (isinstance(v, float) and math.isnan(v)) else v
            cls = " class=l" if key in ("label", "archid", "flags") else ""
            tds.append(f"<td{cls} data-v='{_e(v)}'>{_e(text)}</td>")
        cls = "best" if r.number == s.best else "pareto" if r.number in pareto else r.label
        out.append(f"<tr class='{cls}'>{''.join(tds)}</tr>")
    return f"<table id='trials'><thead><tr>{head}</tr></thead><tbody>{''.join(out)}</tbody></table>"
