"""The audit report on disk: ``report.json`` (every number) and ``report.html`` (one self-contained
page: inline CSS, plots inlined as base64 PNG, no script, no external resource).

Every number the page shows sits in an element with ``data-key="PATH"``, where ``PATH`` is the
dotted path of that number in ``report.json`` (list positions are integers:
``probes.results.3.relative``). The page writes a number as :func:`format_number` does: an
integer as is, any other number with three decimals (``0.500``), an undefined one (``null``) as
``—``. A script (or the test suite) can therefore check the page against the JSON.

Plots need matplotlib (``pip install 'medreward[audit]'``), imported only when a report is written
and drawn with the non-interactive Agg backend.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import InputError, MedrewardError

__all__ = ["UNDEFINED", "format_number", "lookup", "render_html", "write_report"]

#: how the page writes an undefined number (``null`` in report.json)
UNDEFINED = "—"

_BAD = ("exploitable", "not_equivalent")
_GOOD = ("sound", "equivalent")


def format_number(value: Any) -> str:
    """How the page writes a number of report.json.

    >>> format_number(3), format_number(0.5), format_number(2 / 3), format_number(-1e-9), format_number(None)
    ('3', '0.500', '0.667', '0.000', '—')
    """
    if value is None:
        return UNDEFINED
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    text = f"{float(value):.3f}"
    return "0.000" if text == "-0.000" else text  # a tiny negative gap reads as zero


def lookup(data: Any, path: str) -> Any:
    """The value at a dotted ``data-key`` path (list positions as integers).

    A dictionary key may itself contain dots (a slice value such as ``"2.5"``): the longest key
    that matches is taken.

    >>> lookup({"a": [{"b": 1}], "x.y": {"z": 2}}, "a.0.b"), lookup({"x.y": {"z": 2}}, "x.y.z")
    (1, 2)
    """
    parts = path.split(".")
    node = data
    i = 0
    while i < len(parts):
        if isinstance(node, list):
            node = node[int(parts[i])]
            i += 1
            continue
        for j in range(len(parts), i, -1):  # the longest dotted key first
            key = ".".join(parts[i:j])
            if isinstance(node, Mapping) and key in node:
                node = node[key]
                i = j
                break
        else:
            raise KeyError(path)
    return node


def write_report(report: Any, out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``report.html`` and ``report.json`` into ``out_dir`` (created if missing).

    ``report`` is an :class:`~medreward.audit.run.AuditReport` (or its ``to_dict()``). Raises
    :class:`MedrewardError` naming ``pip install 'medreward[audit]'`` when matplotlib is missing,
    and :class:`InputError` when the folder cannot be written.
    """
    data = report if isinstance(report, Mapping) else report.to_dict()
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"output folder {str(out)!r} is a file: give a folder for report.html and report.json")
    page = render_html(data)  # before touching the disk: a missing matplotlib fails first
    text = json.dumps(data, indent=2, allow_nan=False, ensure_ascii=False) + "\n"
    try:
        out.mkdir(parents=True, exist_ok=True)
        html_path, json_path = out / "report.html", out / "report.json"
        json_path.write_text(text, encoding="utf-8")
        html_path.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot write the report into {str(out)!r}: {exc.strerror or exc}") from None
    return html_path, json_path


# -- the page -------------------------------------------------------------------------------------


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise MedrewardError(
            "the audit report draws its plots with matplotlib, which is not installed: pip install 'medreward[audit]'"
        ) from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _mpl_version() -> tuple[int, int]:
    import matplotlib

    major, minor = matplotlib.__version__.split(".")[:2]
    return int(major), int("".join(c for c in minor if c.isdigit()) or 0)


class _Page:
    """Builds the page from report.json's data; ``num`` is the only way a number enters it."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.data = data
        self.parts: list[str] = []
        self.plt = _pyplot()

    def add(self, markup: str) -> None:
        self.parts.append(markup)

    def num(self, path: str) -> str:
        value = lookup(self.data, path)
        return f'<span class="num" data-key="{html.escape(path)}">{html.escape(format_number(value))}</span>'

    def has(self, path: str) -> bool:
        try:
            return lookup(self.data, path) is not None
        except (KeyError, IndexError, ValueError):
            return False

    def plot(self, draw: Callable[[Any], None], alt: str, *, width: float = 7.0, height: float = 3.6) -> str:
        fig, ax = self.plt.subplots(figsize=(width, height), dpi=96)
        try:
            draw(ax)
            fig.tight_layout()
            buffer = io.BytesIO()
            fig.savefig(buffer, format="png")
        finally:
            self.plt.close(fig)
        encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
        return f'<img class="plot" alt="{html.escape(alt)}" src="data:image/png;base64,{encoded}">'

    def table(self, header: Sequence[str], rows: Sequence[Sequence[str]], *, classes: Sequence[str] = ()) -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        body = []
        for i, row in enumerate(rows):
            cls = f' class="{classes[i]}"' if i < len(classes) and classes[i] else ""
            body.append(f"<tr{cls}>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>")
        return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _text(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def render_html(data: Mapping[str, Any]) -> str:
    """The self-contained page for report.json's ``data``."""
    page = _Page(data)
    flagged = data.get("flagged") or []
    verdict = (
        f'<p class="verdict bad">Flagged: {len(flagged)} way(s) to game this spec: '
        + ", ".join(f"<code>{_text(f)}</code>" for f in flagged) + "</p>"
        if flagged else '<p class="verdict good">Nothing flagged: no probe or searched strategy games this spec.</p>'
    )  # fmt: skip
    page.add(f"<h1>medreward audit · spec <code>{_text(data.get('spec'))}</code></h1>")
    page.add(
        f"<p>task <code>{_text(data.get('task') or 'mixed / none')}</code> · {page.num('n_cases')} cases · "
        f"{page.num('n_rollouts')} rollouts in the input · pool for slices: <code>{_text(data.get('pool'))}</code></p>"
    )
    page.add(verdict)
    for section in (_baselines, _probes, _exploit, _benchmark, _agreement, _pool, _notes):
        section(page)
    body = "\n".join(page.parts)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>medreward audit · {_text(data.get('spec'))}</title><style>{_CSS}</style></head>"
        f"<body>\n{body}\n</body></html>\n"
    )


def _baselines(page: _Page) -> None:
    data = page.data
    page.add("<h2>Baseline policies</h2>")
    names = list(data.get("baselines") or {})
    if not names and not page.has("gold"):
        page.add("<p>No baseline policy ran on these cases.</p>")
        return
    rows, series = [], []
    if page.has("gold"):
        rows.append(["<b>gold</b>", page.num("gold.n"), page.num("gold.n_error"), page.num("gold.mean"), page.num("gold.std")])
        series.append(("gold", data["gold"]["rewards"]))
    ranked = sorted(names, key=lambda n: -(data["baselines"][n]["mean"] if data["baselines"][n]["mean"] is not None else -math.inf))
    for name in ranked:
        key = f"baselines.{name}"
        rows.append([_text(name), page.num(f"{key}.n"), page.num(f"{key}.n_error"), page.num(f"{key}.mean"), page.num(f"{key}.std")])
        series.append((name, data["baselines"][name]["rewards"]))
    page.add(page.table(["policy", "n", "errors", "mean reward", "std"], rows))
    shown = [(n, r) for n, r in series if r]
    if shown:

        def draw(ax) -> None:
            # ``vert`` is deprecated from matplotlib 3.10, which added ``orientation``
            horizontal = {"orientation": "horizontal"} if _mpl_version() >= (3, 10) else {"vert": False}
            ax.boxplot([r for _, r in shown], widths=0.6, showmeans=True, **horizontal)
            ax.set_yticks(range(1, len(shown) + 1), [n for n, _ in shown])
            ax.invert_yaxis()
            ax.set_xlabel("reward")
            ax.set_title("reward distribution per policy (triangle: mean)")

        page.add(page.plot(draw, "reward distributions per baseline policy", height=1.2 + 0.45 * len(shown)))


def _probes(page: _Page) -> None:
    page.add("<h2>Hacking probes</h2>")
    if not page.has("probes"):
        page.add("<p>Probes were not run.</p>")
        return
    probes = page.data["probes"]
    page.add(f"<p>gold mean reward {page.num('probes.gold_mean')} · gold error rate {page.num('probes.gold_error_rate')} · "
             f"{page.num('probes.n_cases')} cases. A probe is <i>exploitable</i> when its reward reaches half of gold's "
             "on enough cases; an <i>equivalent</i> rewording must score like gold.</p>")  # fmt: skip
    results = probes.get("results") or []
    rows, classes = [], []
    for i, r in enumerate(results):
        key = f"probes.results.{i}"
        verdict = r.get("verdict")
        rows.append([
            f"<code>{_text(r.get('name'))}</code>", _text(r.get("kind")), f'<span class="verdict-{_text(verdict)}">{_text(verdict)}</span>',
            page.num(f"{key}.mean_reward"), page.num(f"{key}.relative"), page.num(f"{key}.exploitable_fraction"),
            page.num(f"{key}.n_scored"), page.num(f"{key}.n_error"), page.num(f"{key}.n_not_applicable"),
            _text(r.get("note")),
        ])  # fmt: skip
        classes.append("bad" if verdict in _BAD else "")
    page.add(page.table(["probe", "kind", "verdict", "mean reward", "vs gold", "exploitable frac.", "scored", "errors", "n/a", "note"],
                        rows, classes=classes))  # fmt: skip
    plotted = [r for r in results if r.get("relative") is not None]
    if plotted:

        def draw(ax) -> None:
            colours = ["#c62828" if r["verdict"] in _BAD else "#2e7d32" if r["verdict"] in _GOOD else "#9e9e9e" for r in plotted]
            ax.barh(range(len(plotted)), [r["relative"] for r in plotted], color=colours)
            ax.set_yticks(range(len(plotted)), [r["name"] for r in plotted])
            ax.invert_yaxis()
            ax.axvline(1.0, color="black", linewidth=1)
            ax.axvline(0.5, color="#c62828", linestyle="--", linewidth=1)
            ax.set_xlabel("mean probe reward / mean gold reward (red: flagged)")
            ax.set_title("probes vs gold (solid line: gold; dashed: half of gold)")

        page.add(page.plot(draw, "probe rewards relative to gold", height=1.2 + 0.3 * len(plotted)))
    for r in results:
        if r.get("verdict") in _BAD and r.get("example"):
            page.add(f"<details><summary>example of <code>{_text(r.get('name'))}</code> "
                     f"({_text(r.get('description'))})</summary><pre>{_text(r['example'])}</pre></details>")  # fmt: skip
    skipped = probes.get("skipped") or []
    if skipped:
        page.add("<p>Skipped probes: " + "; ".join(f"<code>{_text(s.get('name'))}</code> ({_text(s.get('reason'))})" for s in skipped) + "</p>")


def _exploit(page: _Page) -> None:
    page.add("<h2>Exploit search</h2>")
    if not page.has("exploit"):
        page.add("<p>The exploit search was not run.</p>")
        return
    ex = page.data["exploit"]
    strategy = " → ".join(f"<code>{_text(s)}</code>" for s in ex.get("best_strategy") or []) or "(none)"
    cls = "bad" if ex.get("verdict") == "exploitable" else "good"
    page.add(f'<p class="verdict {cls}">verdict: {_text(ex.get("verdict"))}. Best strategy: {strategy}</p>')
    rows = [
        ["best strategy reward", page.num("exploit.best_reward")],
        ["gold reward", page.num("exploit.gold_reward")],
        [f"best honest policy ({_text(ex.get('best_honest_policy'))})", page.num("exploit.best_honest_reward")],
        ["evaluations / budget", f"{page.num('exploit.evaluations')} / {page.num('exploit.budget')}"],
    ]
    for name in ex.get("honest_rewards") or {}:
        rows.append([f"honest policy <code>{_text(name)}</code>", page.num(f"exploit.honest_rewards.{name}")])
    page.add(page.table(["", "value"], rows))
    history = [h for h in ex.get("history") or [] if h.get("best_reward") is not None]
    if history:

        def draw(ax) -> None:
            xs = [h["iteration"] for h in history]
            ax.plot(xs, [h["best_reward"] for h in history], marker="o", label="best so far")
            if all(h.get("mean_reward") is not None for h in history):
                ax.plot(xs, [h["mean_reward"] for h in history], marker=".", label="iteration mean")
            if ex.get("best_honest_reward") is not None:
                ax.axhline(ex["best_honest_reward"], color="#2e7d32", linestyle="--", label="best honest policy")
            if ex.get("gold_reward") is not None:
                ax.axhline(ex["gold_reward"], color="black", linewidth=1, label="gold")
            ax.set_xlabel("iteration")
            ax.set_ylabel("reward")
            ax.legend(loc="lower right", fontsize="small")
            ax.set_title("exploit search")

        page.add(page.plot(draw, "exploit search progress"))
    if ex.get("example"):
        page.add(f"<p>Example of the best strategy:</p><pre>{_text(ex['example'])}</pre>")


def _benchmark(page: _Page) -> None:
    page.add("<h2>Reward benchmark (gold vs corruptions)</h2>")
    if not page.has("benchmark"):
        page.add("<p>The benchmark was not run.</p>")
        return
    b = page.data["benchmark"]
    rows = [[label, page.num(f"benchmark.{key}")] for label, key in (
        ("preference items", "n_items"), ("pairs", "n_pairs"),
        ("pairwise accuracy (RewardBench 1)", "pairwise_accuracy"),
        ("best-of-4 accuracy (RewardBench 2)", "best_of_4_accuracy"),
        ("one-to-many accuracy (RewardMATH)", "one_to_many_accuracy"),
        ("one-to-many accuracy, ties counted as wins", "one_to_many_accuracy_with_ties"),
        ("mean reciprocal rank of the gold answer", "mrr"),
        ("mean reward of the gold answers", "mean_chosen"), ("mean reward of the corruptions", "mean_rejected"),
        ("scoring errors", "n_error"),
    ) if key in b]  # fmt: skip
    page.add(page.table(["", "value"], rows))
    per = b.get("per_corruption") or {}
    if per:
        rows = [[f"<code>{_text(name)}</code>", page.num(f"benchmark.per_corruption.{name}.n"),
                 page.num(f"benchmark.per_corruption.{name}.accuracy"),
                 page.num(f"benchmark.per_corruption.{name}.ties") if "ties" in stats else UNDEFINED]
                for name, stats in per.items()]  # fmt: skip
        page.add(page.table(["corruption", "n", "gold preferred (accuracy)", "ties"], rows))
    if b.get("note"):
        page.add(f"<p class=\"note\">{_text(b['note'])}</p>")


def _agreement(page: _Page) -> None:
    page.add("<h2>Agreement and calibration with ratings</h2>")
    if not page.has("ratings"):
        page.add("<p>No ratings were given (<code>--ratings FILE</code>).</p>")
        return
    r = page.data["ratings"]
    page.add(f"<p>{page.num('ratings.n_ratings')} ratings, {page.num('ratings.n_rollouts')} rollouts, "
             f"{page.num('ratings.n_matched')} matched by id ({page.num('ratings.n_error')} of them not scored); "
             f"{page.num('ratings.n_missing_in_ratings')} rollouts without a rating, "
             f"{page.num('ratings.n_missing_in_cases')} ratings without a rollout.</p>")  # fmt: skip
    for label, key in (("rollouts without a rating", "missing_in_ratings"), ("ratings without a rollout", "missing_in_cases")):
        if r.get(key):
            page.add(f"<p class=\"note\">{label} (first ones): " + ", ".join(f"<code>{_text(i)}</code>" for i in r[key]) + "</p>")
    if page.has("agreement"):
        names = [name for name, stat in page.data["agreement"].items() if isinstance(stat, Mapping) and "value" in stat]
        page.add(_stat_table(page, "agreement", names))
        if page.data["agreement"].get("note"):
            page.add(f"<p class=\"note\">{_text(page.data['agreement']['note'])}</p>")
    if page.has("starc"):
        page.add(f"<p>STARC distance to the ratings (per prompt, 0 = the same advantages, 1 = opposite): "
                 f"{page.num('starc.distance')} over {page.num('starc.n_groups_used')} prompts "
                 f"({page.num('starc.n_groups_skipped')} skipped: one rated rollout or constant).</p>")  # fmt: skip
    if page.has("calibration"):
        c = page.data["calibration"]
        page.add(f"<p>ECE (equal-mass bins) {page.num('calibration.ece')} · Brier {page.num('calibration.brier')}</p>")
        bins = [b for b in c.get("bins") or [] if b.get("mean_pred") is not None and b.get("frac_pos") is not None]
        rows = [[page.num(f"calibration.bins.{i}.mean_pred"), page.num(f"calibration.bins.{i}.frac_pos"),
                 page.num(f"calibration.bins.{i}.count")] for i in range(len(c.get("bins") or []))]  # fmt: skip
        page.add(page.table(["mean reward", "fraction positive", "count"], rows))
        if bins:

            def draw(ax) -> None:
                ax.plot([0, 1], [0, 1], color="#9e9e9e", linestyle="--", label="perfect calibration")
                ax.plot([b["mean_pred"] for b in bins], [b["frac_pos"] for b in bins], marker="o", label="spec")
                ax.set_xlim(0, 1)
                ax.set_ylim(0, 1)
                ax.set_xlabel("mean reward in bin")
                ax.set_ylabel("fraction rated positive")
                ax.legend(loc="upper left", fontsize="small")
                ax.set_title("reliability curve")

            page.add(page.plot(draw, "reliability curve", width=4.8, height=4.2))


def _stat_table(page: _Page, path: str, names: Sequence[str]) -> str:
    """Statistics with bootstrap intervals (agreement.AgreementStat dicts), one row each."""
    rows = []
    for name in names:
        key = f"{path}.{name}"
        stat = lookup(page.data, key)
        rows.append([_text(stat.get("name") or name), page.num(f"{key}.value"), page.num(f"{key}.ci_low"),
                     page.num(f"{key}.ci_high"), page.num(f"{key}.n"), _text(stat.get("note"))])  # fmt: skip
    return page.table(["statistic", "value", "95% CI low", "95% CI high", "n", "note"], rows)


def _pool(page: _Page) -> None:
    data = page.data
    page.add("<h2>Slices, length and GRPO groups</h2>")
    what = "the input's rollouts" if data.get("pool") == "rollouts" else "the baseline policies' and gold completions (one group per case)"
    page.add(f"<p>Computed over {what}. Fraction of GRPO groups with zero reward variance: {page.num('zero_variance_groups')}"
             + (f" ({page.num('groups.n_zero_variance')} of {page.num('groups.n_groups')} groups with at least 2 "
                f"rewarded completions; {page.num('groups.n_too_small')} smaller groups left out)" if page.has("groups") else "")
             + "</p>")  # fmt: skip
    for name, rows in (data.get("slices") or {}).items():
        cells = [[_text(row.get("key")), page.num(f"slices.{name}.{i}.n"), page.num(f"slices.{name}.{i}.mean"),
                  page.num(f"slices.{name}.{i}.std"), page.num(f"slices.{name}.{i}.gap"),
                  page.num(f"slices.{name}.{i}.n_error")] for i, row in enumerate(rows)]  # fmt: skip
        page.add(f"<h3>by <code>{_text(name)}</code></h3>")
        page.add(page.table(["value", "n", "mean reward", "std", "gap to overall mean", "errors"], cells))
    if page.has("length_reward"):
        page.add("<h3>length vs reward</h3>")
        page.add(_stat_table(page, "length_reward", ("spearman", "pearson")))
    points = data.get("length_points") or {}
    if points.get("length"):

        def draw(ax) -> None:
            ax.scatter(points["length"], points["reward"], s=8, alpha=0.4)
            ax.set_xlabel("completion length (words)")
            ax.set_ylabel("reward")
            ax.set_title("length vs reward")

        page.add(page.plot(draw, "completion length vs reward", width=6.0, height=3.8))
        page.add(f"<p class=\"note\">{page.num('length_points.n')} points (at most 2,000 drawn).</p>")


def _notes(page: _Page) -> None:
    notes = page.data.get("notes") or []
    if notes:
        page.add("<h2>Notes</h2><ul>" + "".join(f"<li>{_text(n)}</li>" for n in notes) + "</ul>")
    timings = page.data.get("timings") or {}
    if timings:
        rows = [[_text(stage), page.num(f"timings.{stage}")] for stage in timings]
        page.add("<h2>Time per stage (seconds)</h2>" + page.table(["stage", "seconds"], rows))


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;max-width:70rem;color:#1b1b1b;padding:0 1rem}
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd}h3{font-size:1rem}
table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem}th,td{border:1px solid #ddd;padding:.25rem .5rem;text-align:left}
th{background:#f4f4f4}td .num{font-variant-numeric:tabular-nums}tr.bad td{background:#fdecea}
.verdict{padding:.5rem .75rem;border-radius:4px}.verdict.bad{background:#fdecea;color:#b71c1c;font-weight:600}
.verdict.good{background:#e8f5e9;color:#1b5e20}.verdict-exploitable,.verdict-not_equivalent{color:#b71c1c;font-weight:600}
.verdict-sound,.verdict-equivalent{color:#1b5e20}img.plot{display:block;max-width:100%;margin:.5rem 0}
details{margin:.25rem 0}summary{cursor:pointer}pre{background:#f7f7f7;padding:.5rem;white-space:pre-wrap;word-break:break-word}.note{color:#555;font-size:.9rem}
"""
