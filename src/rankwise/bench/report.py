"""The benchmark's Markdown table and its effectiveness/cost plot with the Pareto front."""

from __future__ import annotations

import itertools
import statistics
from pathlib import Path
from typing import Sequence

from rankwise.bench.resume import timings
from rankwise.bench.runner import FIRST_STAGE
from rankwise.eval.significance import randomisation_test
from rankwise.plotting import pyplot

SIGNIFICANT = 0.05  # the level the summary marks with a dagger


def p_against_first_stage(cell: dict, first_stage: dict | None, measure: str = "nDCG@10") -> float | None:
    """Two-sided p of the paired randomisation test of a cell's per-query ``measure`` against its first
    stage's on the same queries; None where either cell lacks per-query values (cells of older runs)."""
    mine, base = cell.get("per_query_metrics"), (first_stage or {}).get("per_query_metrics")
    if not mine or not base or "error" in cell:
        return None
    queries = [q for q in base if q in mine]
    return randomisation_test([base[q][measure] for q in queries], [mine[q][measure] for q in queries])


def _first_stages(cells: Sequence[dict]) -> dict[tuple[str, str], dict]:
    return {(c["dataset"], c["first_stage"]): c for c in cells if c["method"] == FIRST_STAGE}


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both axes (lower cost x, higher effectiveness y),
    sorted by cost."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], float("-inf")
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def cold_front(cells: Sequence[dict], points: Sequence[tuple[float, float]]) -> list[int]:
    """The Pareto front over the cells that read nothing from the output cache: a warm cell's seconds and
    tokens are not what the method costs, so it may not push a cold one off the front."""
    cold = [i for i, c in enumerate(cells) if not c.get("cache_hits")]
    return [cold[i] for i in pareto_front([points[i] for i in cold])]


def cpus_that_timed(cells: Sequence[dict]) -> str:
    """The CPUs that timed these cells (every timing of a re-timed cell; first stages time nothing), in order of
    first appearance."""
    timed = [c for c in cells if c["method"] != FIRST_STAGE and "error" not in c] or list(cells)
    cpus = [t.get("cpu") for c in timed for t in timings(c)]
    return "; ".join(dict.fromkeys(cpu for cpu in cpus if cpu)) or "unknown"


def markdown_table(cells: Sequence[dict]) -> str:
    """One row per cell, grouped by dataset and first stage, with robustness columns when measured and,
    where pairwise methods ran, how often a comparison's two orders picked the same passage; with per-query
    values, the p of each method's nDCG@10 against its first stage (paired randomisation test)."""
    baselines = _first_stages(cells)
    tested = any("per_query_metrics" in c for c in cells if c["method"] != FIRST_STAGE)
    shuffles = any("shuffles" in c for c in cells)
    adversarial = any("adversarial" in c for c in cells)
    paired = any(c.get("comparisons") for c in cells)
    head = ["dataset", "first stage", "method", "model", "nDCG@10"]
    head += ["p vs first stage"] if tested else []
    head += ["shuffled mean ± std"] if shuffles else []
    head += ["adversary top-1", "adversary top-10", "adversary mean rank", "nDCG@10 attacked"] if adversarial else []
    head += ["calls/q", "prompt tok/q", "completion tok/q", "s/q", "cache hits"]
    head += ["both orders agree"] if paired else []
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in cells:
        if "error" in c:
            row = [c["dataset"], c["first_stage"], c["method"], c.get("model", ""), f"failed: {c['error']}"]
            lines.append("| " + " | ".join(row + [""] * (len(head) - len(row))) + " |")
            continue
        row = [c["dataset"], c["first_stage"], c["method"], c.get("model", ""), f"{c['metrics']['nDCG@10']:.4f}"]
        if tested:
            p = None if c["method"] == FIRST_STAGE else p_against_first_stage(
                c, baselines.get((c["dataset"], c["first_stage"])))
            row.append("" if p is None else f"{p:.3f}")
        if shuffles:
            s = c.get("shuffles")
            row.append(f"{s['mean']:.4f} ± {s['std']:.4f}" if s else "")
        if adversarial:
            a = c.get("adversarial")
            row += [f"{a['top1']:.0%}", f"{a['top10']:.0%}", f"{statistics.fmean(a['ranks']):.1f}",
                    f"{a['ndcg10']:.4f}"] if a else ["", "", "", ""]
        if c["method"] == FIRST_STAGE:
            row += [""] * 5
        else:
            q = c["per_query"]
            row += [f"{q['calls']:.1f}", f"{q['prompt_tokens']:.0f}", f"{q['completion_tokens']:.0f}",
                    f"{c['seconds_per_query']:.2f}", str(c["cache_hits"])]
        if paired:
            asked = c.get("comparisons")
            row.append(f"{1 - c['inconsistent'] / asked:.0%} of {asked}" if asked else "")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def summary_table(cells: Sequence[dict]) -> str:
    """One row per method and model across every dataset and first stage: nDCG@10 and its change from the
    first stage in each (a dagger where the paired randomisation test gives p < 0.05), the mean change, in
    how many it beats the first stage, and the mean cost; best mean change first. Empty for a matrix of one
    dataset and first stage (the main table says it all)."""
    groups = list(dict.fromkeys((c["dataset"], c["first_stage"]) for c in cells))
    if len(groups) < 2:
        return ""
    first_stages = _first_stages(cells)
    baseline = {group: c["metrics"]["nDCG@10"] for group, c in first_stages.items()}
    rows: dict[tuple[str, str], dict[tuple[str, str], dict]] = {}
    for c in cells:
        if c["method"] != FIRST_STAGE:
            rows.setdefault((c["method"], c.get("model", "")), {})[(c["dataset"], c["first_stage"])] = c

    def change(c: dict) -> float | None:
        group = (c["dataset"], c["first_stage"])
        return None if "error" in c or group not in baseline else c["metrics"]["nDCG@10"] - baseline[group]

    lines = []
    for (method, model), by_group in rows.items():
        delta = {group: change(c) for group, c in by_group.items()}
        done = [c for group, c in by_group.items() if delta[group] is not None]
        if not done:
            continue
        changes = [d for d in delta.values() if d is not None]
        columns = []
        for group in groups:
            c = by_group.get(group)
            p = None if c is None else p_against_first_stage(c, first_stages.get(group))
            dagger = "†" if p is not None and p < SIGNIFICANT else ""
            shown = "" if c is None or delta[group] is None else f" ({delta[group]:+.3f}{dagger})"
            columns.append("" if c is None else "failed" if "error" in c else f"{c['metrics']['nDCG@10']:.4f}{shown}")
        mean = sum(changes) / len(changes)
        seconds = sum(c["seconds_per_query"] for c in done) / len(done)
        tokens = sum(c["per_query"]["prompt_tokens"] for c in done) / len(done)
        lines.append((mean, f"| {method} | {model} | " + " | ".join(columns) + f" | {mean:+.3f} "
                            f"| {sum(x > 0 for x in changes)} of {len(changes)} | {seconds:.2f} | {tokens:.0f} |"))
    labels = [dataset if len({g[1] for g in groups}) == 1 else f"{dataset} {stage}" for dataset, stage in groups]
    head = (["method", "model"] + [f"{label} nDCG@10 (change)" for label in labels]
            + ["mean change", "above the first stage", "s/q (mean)", "prompt tok/q (mean)"])
    first = "| first stage |  | " + " | ".join(f"{baseline[g]:.4f}" if g in baseline else "" for g in groups)
    return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head), first + " |  |  |  |  |",
                      *(line for _, line in sorted(lines, key=lambda item: -item[0]))]) + "\n"


def robustness_table(cells: Sequence[dict]) -> str:
    """One row per method and model across every dataset and first stage, for a matrix that measured
    robustness: clean nDCG@10 and its mean over the shuffled input orders (both averaged over datasets), the
    change shuffling makes, the mean standard deviation over shuffles, and, pooled over all queries, how
    often the injected adversarial passage ranked first and in the top 10, its mean rank, nDCG@10 under
    attack and the passages the guard demoted. Empty for one dataset and first stage (the main table says it
    all) or without robustness probes."""
    groups = {(c["dataset"], c["first_stage"]) for c in cells}
    measured = [c for c in cells if c["method"] != FIRST_STAGE and "error" not in c
                and ("shuffles" in c or "adversarial" in c)]
    if len(groups) < 2 or not measured:
        return ""
    rows: dict[tuple[str, str], list[dict]] = {}
    for c in measured:
        rows.setdefault((c["method"], c.get("model", "")), []).append(c)

    def mean(values: list[float]) -> float:
        return sum(values) / len(values)

    lines = []
    for (method, model), done in rows.items():
        clean = mean([c["metrics"]["nDCG@10"] for c in done])
        row = [method, model, f"{clean:.4f}"]
        shuffled = [c["shuffles"] for c in done if "shuffles" in c]
        if shuffled:
            moved = mean([s["mean"] for s in shuffled])
            row += [f"{moved:.4f}", f"{moved - clean:+.3f}", f"{mean([s['std'] for s in shuffled]):.4f}"]
        else:
            row += ["", "", ""]
        attacked = [c for c in done if "adversarial" in c]
        if attacked:
            ranks = [r for c in attacked for r in c["adversarial"]["ranks"]]
            row += [f"{sum(r == 1 for r in ranks)} of {len(ranks)}", f"{sum(r <= 10 for r in ranks)} of {len(ranks)}",
                    f"{mean(ranks):.1f}", f"{mean([c['adversarial']['ndcg10'] for c in attacked]):.4f}",
                    str(sum(c["adversarial"].get("flagged", 0) for c in attacked))]
        else:
            row += ["", "", "", "", ""]
        lines.append("| " + " | ".join(row) + " |")
    head = ["method", "model", "nDCG@10 (mean)", "shuffled mean", "change when shuffled", "std over shuffles",
            "adversary first", "adversary in top 10", "adversary mean rank", "nDCG@10 attacked (mean)",
            "flagged by the guard"]
    return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head), *lines]) + "\n"


def peer_table(cells: Sequence[dict]) -> str:
    """Each peer cell beside rankwise's cell of the same method, model, options and candidates: nDCG@10,
    seconds per query (with its dtype) and the ratio of times; empty when the matrix has no peers."""
    def key(c: dict) -> tuple:  # base_url says where a peer's model is served, not how it ranks
        options = {k: v for k, v in (c.get("options") or {}).items() if k != "base_url"}
        return (c["dataset"], c["first_stage"], c.get("base_method"), c.get("model"), repr(sorted(options.items())))

    ours = {key(c): c for c in cells if c["method"] != FIRST_STAGE and not c.get("peer") and "error" not in c}
    lines = []
    for theirs in (c for c in cells if c.get("peer") and "error" not in c):
        mine = ours.get(key(theirs))
        if mine is None:
            continue
        lines.append(f"| {theirs['dataset']} | {theirs['base_method']} | {theirs['model']} | {theirs['peer']} "
                     f"| {mine['metrics']['nDCG@10']:.4f} | {theirs['metrics']['nDCG@10']:.4f} "
                     f"| {mine['per_query']['calls']:.1f} / {theirs['per_query']['calls']:.1f} "
                     f"| {_seconds(mine)} | {_seconds(theirs)} "
                     f"| {theirs['seconds_per_query'] / max(mine['seconds_per_query'], 1e-9):.2f}x |")
    if not lines:
        return ""
    head = ("| dataset | method | model | peer | rankwise nDCG@10 | peer nDCG@10 | calls/q rankwise / peer "
            "| rankwise s/q | peer s/q | peer time / rankwise time |")
    return "\n".join([head, "|" + "---|" * 10, *lines]) + "\n"


def _annotate_apart(ax, labels: Sequence[str], points: Sequence[tuple[float, float]], fontsize: float) -> None:
    """Label each point up and to its right, or the nearest line below or above that place where its box
    (estimated from its length) overlaps no label already placed: methods with the same cost and nDCG stay
    legible and each label stays next to its point."""
    scale = ax.figure.dpi / 72  # points to pixels
    step = 1.25 * fontsize
    ax.get_xlim(), ax.get_ylim()  # settle the autoscaled limits before reading pixel positions
    placed: list[tuple[float, float, float, float]] = []
    for text, point in sorted(zip(labels, points), key=lambda item: -item[1][1]):
        x, y = ax.transData.transform(point)
        width, height = 0.6 * fontsize * len(text) * scale, step * scale

        def free(offset: float) -> bool:
            low = y + offset * scale
            return not any(x < right and x + width > left and low < top and low + height > bottom
                           for left, bottom, right, top in placed)

        offset = next(3.0 + sign * lines * step for lines in itertools.count() for sign in (-1, 1)
                      if free(3.0 + sign * lines * step))
        placed.append((x, y + offset * scale, x + width, y + offset * scale + height))
        ax.annotate(text, point, fontsize=fontsize, xytext=(4, offset), textcoords="offset points")


def _seconds(cell: dict) -> str:
    """Seconds per query with the dtype, and how many timed runs gave it when more than one."""
    runs = len(cell.get("seconds_per_query_runs", ()))
    return (f"{cell['seconds_per_query']:.2f} ({cell.get('dtype') or '?'}"
            + (f", median of {runs}" if runs > 1 else "") + ")")


def plot(cells: Sequence[dict], path: Path) -> Path:
    """nDCG@10 against seconds and prompt tokens per query, one row of panels per dataset/first stage,
    one marker and colour per model, cells that read the output cache hollow, the Pareto front of the cold
    cells drawn; written as PNG."""
    plt = pyplot(required_by="bench")
    groups: dict[tuple[str, str], list[dict]] = {}
    for c in cells:
        if c["method"] != FIRST_STAGE and "error" not in c:
            groups.setdefault((c["dataset"], c["first_stage"]), []).append(c)
    baselines = {(c["dataset"], c["first_stage"]): c for c in cells if c["method"] == FIRST_STAGE}
    fig, axes = plt.subplots(max(len(groups), 1), 2, figsize=(12, 4.2 * max(len(groups), 1)), squeeze=False)
    for row, ((dataset, stage), group) in enumerate(groups.items()):
        warm = [bool(c.get("cache_hits")) for c in group]
        for col, (label, cost, floor) in enumerate(
                (("seconds per query", lambda c: c["seconds_per_query"], 1e-2),
                 ("prompt tokens per query", lambda c: c["per_query"]["prompt_tokens"], 1.0))):
            ax = axes[row][col]
            points = [(max(cost(c), floor), c["metrics"]["nDCG@10"]) for c in group]
            models = list(dict.fromkeys(c.get("model", "") for c in group))
            for m, (model, marker) in enumerate(zip(models, itertools.cycle("o^sDvP*X"))):
                for hollow in (False, True):
                    mine = [p for c, p, w in zip(group, points, warm) if c.get("model", "") == model and w == hollow]
                    if mine:
                        ax.scatter([p[0] for p in mine], [p[1] for p in mine], marker=marker, zorder=3,
                                   facecolors="none" if hollow else f"C{m % 10}", edgecolors=f"C{m % 10}",
                                   label=None if hollow else model or "no model")
            if any(warm):
                ax.scatter([], [], marker="o", facecolors="none", edgecolors="grey",
                           label="hollow: read the cache (warm cost, off the front)")
            front = cold_front(group, points)
            ax.plot([points[i][0] for i in front], [points[i][1] for i in front], "r--", marker="o", markersize=10,
                    markerfacecolor="none", label="Pareto front")  # the ring shows a one-point front too
            if (dataset, stage) in baselines:
                ax.axhline(baselines[(dataset, stage)]["metrics"]["nDCG@10"], color="grey", linestyle=":",
                           label=f"{stage} alone")
            xs = [p[0] for p in points]
            log_scale = max(xs) / min(xs) >= 10
            if log_scale:
                from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

                ax.set_xscale("log")
                wide = max(xs) / min(xs) > 1e3  # 1-2-5 ticks on more than three decades overlap
                ax.xaxis.set_major_locator(LogLocator(subs=(1.0,) if wide else (1.0, 2.0, 5.0)))
                ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
                ax.xaxis.set_minor_formatter(NullFormatter())
            _annotate_apart(ax, [c["method"] for c in group], points, fontsize=6 if len(group) > 12 else 7)
            ax.set_xlabel(label + (" (log)" if log_scale else ""))
            ax.set_ylabel("nDCG@10")
            ax.set_title(f"{dataset}, {stage} top-{group[0]['top_k']}, {group[0]['queries']} queries")
            ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
