"""``grow report RUN``: a run's growth timeline, drawn from its files into ``RUN/growth.png``.

Three panels share the x axis, training FLOPs (0 to the budget):

(a) the width of every channel group (step lines), the moments the network grew as vertical lines;
(b) Γ's score of every group at every check (a heat map, groups × checks): column k spans the window its
    scores were measured over (since the evaluation before the check, see :mod:`growth.controller`),
    so it ends on the check's line; the groups the check chose are outlined;
(c) validation accuracy at each evaluation (the final test accuracy as a star), the growth moments marked.

A run without checks (the plan kept the seed, a method that does not read Γ, a fixed network) gets panels
(a) and (c) and says why. Everything comes from the run directory: ``config.json`` (the seed or genotype,
the budget), ``metrics.jsonl``, ``growth.jsonl`` (``plan``, ``check``/``refused`` with ``scores``, ``widen``,
``deepen``) and ``summary.json`` once finished; the starting widths are the seed's channel groups, asked of
its family (:func:`growth.graph.groups_of_genotype`), and every later width is the one an event logged.
:func:`growth_report` returns what it drew (:class:`GrowthTimeline`), so callers and tests can read it.

Example:
    >>> run = Path(__file__).parents[1] / "runs/recorded/bench-shape-1e13-entry-rate/cells/grow-resnet20-flat/seed0"
    >>> timeline = growth_report(run, draw=False)
    >>> len(timeline.groups), len(timeline.checks), len(timeline.events), timeline.widths["stage2.block2.inner"][-1]
    (12, 4, 4, (4002527880192.0, 16))
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from search_spaces.errors import GrowthError

from .runstore import RunError, RunStore, atomic_write_bytes

if TYPE_CHECKING:
    from search_spaces import Genotype

GROWTH_PNG = "growth.png"
# Events after which the widths are the final genotype's (a prune or an SCS extraction, not a growth step).
_CUT_EVENTS = ("prune", "scs_extract")


@dataclass
class GrowthTimeline:
    """What :func:`growth_report` drew, in training FLOPs.

    ``widths[group]``: (training FLOPs, width from then on), the first at 0 (or where the group appeared);
    width 0 means the group was removed; ``kinds[group]``: its family's kind (``stage``, ``inner``, ...).
    ``checks``: the training FLOPs of every scored check, ``windows`` the span each check's scores were
    measured over, ``scores[i][k]`` group ``groups[i]``'s score at check k (None: not scored), ``chosen[k]``
    the groups check k chose. ``events``: where the network grew. ``note``: why it shows no growth, if so.
    """

    run: Path
    png: Path
    budget_flops: float
    groups: list[str]
    widths: dict[str, list[tuple[float, int]]]
    kinds: dict[str, str] = field(default_factory=dict)
    checks: list[float] = field(default_factory=list)
    windows: list[tuple[float, float]] = field(default_factory=list)
    scores: list[list[float | None]] = field(default_factory=list)
    chosen: list[list[str]] = field(default_factory=list)
    events: list[float] = field(default_factory=list)
    val_acc: list[tuple[float, float]] = field(default_factory=list)
    test_acc: tuple[float, float] | None = None
    note: str = ""

    def describe(self) -> str:
        """One line: where the figure is and what it shows."""
        what = (f"{len(self.checks)} checks x {len(self.groups)} channel groups, grew at {len(self.events)} "
                "moment(s)" if self.checks else f"{len(self.groups)} channel groups; panels (a) and (c) only")
        return f"wrote {self.png} ({what}){': ' + self.note if self.note else ''}"


def growth_report(run: Path, draw: bool = True) -> GrowthTimeline:
    """Read ``run``'s files, draw ``run/growth.png`` (unless ``draw`` is False) and return what it shows.

    Raises :class:`~growth.runstore.RunError` (one line) where ``run`` is not a run directory."""
    timeline = read_timeline(Path(run))
    if draw:
        atomic_write_bytes(timeline.png, _figure_png(timeline))
    return timeline


def is_run_dir(path: Path) -> bool:
    """Whether ``path`` looks like a run directory (its ``config.json`` and ``metrics.jsonl``)."""
    return (path / "config.json").is_file() and (path / "metrics.jsonl").is_file()


def read_timeline(run: Path) -> GrowthTimeline:
    if not run.is_dir():
        raise RunError(f"{run}: no such directory")
    if not is_run_dir(run):
        raise RunError(f"{run} is neither a run directory (config.json and metrics.jsonl) nor a bench (bench.json)")
    store = RunStore(run)
    saved = store.read_json("config.json")
    cfg = saved.get("config") if isinstance(saved, dict) else None
    if not isinstance(cfg, dict) or not isinstance(cfg.get("budget_flops"), (int, float)):
        raise RunError(f"{run / 'config.json'} is not a run's config (no config.budget_flops)")
    metrics = store.read_jsonl("metrics.jsonl")
    log = store.read_jsonl("growth.jsonl")
    summary = store.read_json("summary.json") if (run / "summary.json").is_file() else None
    timeline = GrowthTimeline(run=run, png=run / GROWTH_PNG, budget_flops=float(cfg["budget_flops"]), groups=[],
                              widths={})
    _read_widths(timeline, _seed_genotype(cfg), log, run)
    _read_checks(timeline, log, metrics)
    timeline.val_acc = [(float(m["train_flops"]), float(m["val_acc"])) for m in metrics
                        if isinstance(m.get("val_acc"), (int, float))]
    if summary is not None and isinstance(summary.get("test_acc"), (int, float)):
        timeline.test_acc = (float(summary.get("train_flops", timeline.budget_flops)), float(summary["test_acc"]))
    timeline.note = _note(timeline, log)
    return timeline


def _seed_genotype(cfg: dict[str, Any]) -> Genotype | None:
    """The network the run started from (its explicit genotype, else its seed's), or None if unknown."""
    import search_spaces

    try:
        if cfg.get("genotype"):
            return search_spaces.genotype_from_dict(cfg["genotype"])
        return search_spaces.get_genotype(str(cfg.get("seed")))
    except (GrowthError, KeyError, TypeError, ValueError):
        return None


def _groups(genotype: Genotype | None) -> list[tuple[str, int, Any]]:
    """(name, width, key) of every channel group of ``genotype``, in network order; [] where its family has
    none (a timm reference network) or it is unknown."""
    if genotype is None:
        return []
    from .graph import groups_of_genotype

    try:
        return [(g.name, g.width, g.key) for g in groups_of_genotype(genotype)]
    except (GrowthError, KeyError, ValueError, NotImplementedError):
        return []


def _read_widths(timeline: GrowthTimeline, genotype: Genotype | None, log: list[dict[str, Any]], run: Path) -> None:
    """Every group's width over training: the seed's groups, then each event's change. The genotype is edited
    along (widen, deepen: the family's own edits) so that a new block's groups appear where it was added."""
    widths = timeline.widths
    groups = _groups(genotype)
    keys = {name: key for name, _, key in groups}
    order = [name for name, _, _ in groups]
    for name, width, key in groups:
        widths[name] = [(0.0, width)]
        timeline.kinds[name] = str(key[0])
    grew: set[float] = set()
    for event in log:
        kind, t = event.get("event"), float(event.get("train_flops", 0.0))
        if kind == "widen" and isinstance(event.get("group"), str):
            name, old, new = event["group"], int(event["old_width"]), int(event["new_width"])
            if name not in widths:  # the seed's groups were unknown: the group starts at its logged width
                widths[name] = [(0.0, old)]
                order.append(name)
            widths[name].append((t, new))
            grew.add(t)
            if genotype is not None and name in keys:
                genotype = _edit(genotype, lambda g, f: f.resized(g, keys[name], range(old), new - old))
        elif kind == "deepen" and isinstance(event.get("stage"), int):
            grew.add(t)
            if genotype is not None:
                stage = event["stage"] - 1
                genotype = _edit(genotype, lambda g, f: f.deepened(g, stage))
                _follow(timeline, _groups(genotype), t, order, keys)
        elif kind in _CUT_EVENTS and (run / "genotype.json").is_file():
            import search_spaces

            try:
                genotype = search_spaces.genotype_from_dict(RunStore(run).read_json("genotype.json"))
            except (GrowthError, KeyError, TypeError, ValueError):
                genotype = None
            _follow(timeline, _groups(genotype), t, order, keys)
    timeline.groups = order
    timeline.events = sorted(grew)


def _edit(genotype: Genotype, edit: Any) -> Genotype | None:
    """``edit(genotype, family)``, or None where the family cannot (the widths then come from the events)."""
    from search_spaces import family_of

    try:
        result: Genotype = edit(genotype, family_of(genotype))
        return result
    except (GrowthError, KeyError, ValueError, IndexError, NotImplementedError):
        return None


def _follow(timeline: GrowthTimeline, groups: list[tuple[str, int, Any]], t: float, order: list[str],
            keys: dict[str, Any]) -> None:
    """Enter the groups of the network after a structural change at ``t``: new ones start there, changed
    widths step, vanished ones drop to 0; ``order`` becomes the new network order (vanished ones kept)."""
    if not groups:
        return
    widths = timeline.widths
    present = {name for name, _, _ in groups}
    for name, width, key in groups:
        keys[name] = key
        timeline.kinds[name] = str(key[0])
        if name not in widths:
            widths[name] = [(t, width)]
        elif widths[name][-1][1] != width:
            widths[name].append((t, width))
    for name in widths:
        if name not in present and widths[name][-1][1] != 0:
            widths[name].append((t, 0))
    order[:] = [name for name, _, _ in groups] + [name for name in order if name not in present]


def _read_checks(timeline: GrowthTimeline, log: list[dict[str, Any]], metrics: list[dict[str, Any]]) -> None:
    """The scored checks (``check`` and ``refused`` events): when, over which window, the scores and choices."""
    evals = sorted((int(m.get("step", 0)), float(m.get("train_flops", 0.0))) for m in metrics)
    checks = [e for e in log if e.get("event") in ("check", "refused") and isinstance(e.get("scores"), dict)]
    for name in (n for e in checks for n in e["scores"]):
        if name not in timeline.widths and name not in timeline.groups:
            timeline.groups.append(name)  # a group scored but never seen otherwise (unknown seed)
    for e in checks:
        step, t = int(e.get("step", 0)), float(e.get("train_flops", 0.0))
        start = max((flops for s, flops in evals if s < step), default=0.0)
        timeline.checks.append(t)
        timeline.windows.append((start, t))
        timeline.chosen.append([str(n) for n in e.get("selected") or []] if e.get("event") == "check" else [])
    timeline.scores = [[_score(e["scores"].get(name)) for e in checks] for name in timeline.groups]


def _score(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def _note(timeline: GrowthTimeline, log: list[dict[str, Any]]) -> str:
    """Why a run shows no checks or no growth, in a few words ('' where it grew at scored checks)."""
    plan = next((e for e in log if e.get("event") == "plan"), None)
    late = next((e for e in log if e.get("event") == "too_late"), None)
    refused = sum(1 for e in log if e.get("event") == "refused")
    notes = []
    if not log:
        notes.append("no growth.jsonl: a run that never grows")
    elif plan is not None and plan.get("grows") is False:
        seed, target = plan.get("seed_macs"), plan.get("target_macs")
        size = (f" (target {target / 1e6:.3g}M MACs, seed {seed / 1e6:.3g}M)"
                if isinstance(seed, (int, float)) and isinstance(target, (int, float)) else "")
        notes.append(f"no growth: the plan kept the seed{size}")
    if timeline.events and not timeline.checks:
        notes.append("grew without Γ scores (the method does not read Γ)")
    elif not timeline.events and not notes:
        notes.append("no growth checks" if not timeline.checks else "the checks grew nothing")
    if refused:
        notes.append(f"{refused} check(s) refused (non-finite state)")
    if late is not None:
        notes.append("later checks came too late to grow")
    return "; ".join(notes)


# -- drawing ------------------------------------------------------------------------------------------


def si(value: float, digits: int = 3) -> str:
    """A number with an SI suffix, e.g. ``2.6M``, ``500k``, ``10T``.

    >>> si(2.6e6), si(5e5), si(1e13), si(0), si(1.25e12)
    ('2.6M', '500k', '10T', '0', '1.25T')
    """
    if value == 0:
        return "0"
    for scale, suffix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.{digits}g}{suffix}"
    return f"{value:.{digits}g}"


def _figure_png(timeline: GrowthTimeline) -> bytes:
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle
    from matplotlib.ticker import FuncFormatter

    scored = bool(timeline.checks)
    n_groups = max(len(timeline.groups), 1)
    heights = [3.0, max(1.6, 0.2 * n_groups), 2.0] if scored else [3.0, 2.0]
    fig = Figure(figsize=(10, 1.2 + sum(heights)), dpi=110)
    axes = fig.subplots(len(heights), 1, sharex=True, gridspec_kw={"height_ratios": heights})
    ax_w, ax_acc = axes[0], axes[-1]
    end = max([timeline.budget_flops] + [t for t, _ in timeline.val_acc])
    growth_lines = {"color": "0.25", "lw": 0.9, "ls": "--", "zorder": 1}

    # (a) widths
    colors = _group_colors(len(timeline.groups))
    first_kind = next(iter(timeline.kinds.values()), None)  # the residual streams of a ResNet: drawn thick
    for i, name in enumerate(timeline.groups):
        points = timeline.widths.get(name)
        if not points:
            continue
        xs = [t for t, _ in points] + [end]
        ys = [w if w > 0 else math.nan for _, w in points]
        main = timeline.kinds.get(name, first_kind) == first_kind
        ax_w.step(xs, ys + ys[-1:], where="post", color=colors[i], lw=2.2 if main else 1.2,
                  ls="-" if main else (0, (4, 1.5)), label=name)
    all_widths = [w for pts in timeline.widths.values() for _, w in pts if w > 0]
    if all_widths and max(all_widths) >= 4 * min(all_widths):
        from matplotlib.ticker import FixedLocator, NullLocator

        ax_w.set_yscale("log", base=2)
        least, most = min(all_widths), max(all_widths)
        ticks = [v for k in range(math.floor(math.log2(least)), math.ceil(math.log2(most)) + 1)
                 for v in (2 ** k, 3 * 2 ** (k - 1)) if v == int(v) and least / 1.2 <= v <= most * 1.2]
        ax_w.yaxis.set_major_locator(FixedLocator(ticks))  # 4, 6, 8, 12, 16, ...: widths read off at a glance
        ax_w.yaxis.set_minor_locator(NullLocator())
        ax_w.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax_w.set_ylabel("width (channels)")
    ax_w.set_title("(a) width of each channel group", fontsize=9, loc="left")
    if timeline.groups:
        ax_w.legend(fontsize=6.5, loc="upper left", bbox_to_anchor=(1.01, 1.0), ncol=1 if n_groups <= 16 else 2,
                    frameon=False, title="channel group", title_fontsize=7)

    # (b) Γ's scores
    if scored:
        ax_s = axes[1]
        import numpy as np

        values = np.array([[math.nan if s is None else s for s in row] for row in timeline.scores], dtype=float)
        edges_y = np.arange(len(timeline.groups) + 1) - 0.5
        vmax = max(1.0, float(np.nanmax(values)) if np.isfinite(values).any() else 1.0)
        mesh = None
        for k, (start, stop) in enumerate(timeline.windows):
            if stop <= start:
                start = stop - 0.01 * end
            mesh = ax_s.pcolormesh([start, stop], edges_y, values[:, k:k + 1], cmap="viridis", vmin=0, vmax=vmax)
            wide = (stop - start) / end > 0.035 and len(timeline.groups) <= 24
            for i, name in enumerate(timeline.groups):
                chosen = name in timeline.chosen[k]
                if chosen:
                    ax_s.add_patch(Rectangle((start, i - 0.5), stop - start, 1, fill=False, ec="#ff3b30", lw=1.2))
                if wide and not math.isnan(values[i, k]):
                    ax_s.text((start + stop) / 2, i, f"{values[i, k]:.2f}", ha="center", va="center", fontsize=5.5,
                              color="white" if values[i, k] < 0.55 * vmax else "black",
                              fontweight="bold" if chosen else "normal")
        ax_s.set_yticks(range(len(timeline.groups)))
        ax_s.set_yticklabels(timeline.groups, fontsize=6)
        ax_s.set_ylim(len(timeline.groups) - 0.5, -0.5)
        ax_s.set_title("(b) Γ's score of each group at each check (over the window ending at the check; "
                       "red outline: chosen)", fontsize=9, loc="left")
        if mesh is not None:
            bar = fig.colorbar(mesh, cax=ax_s.inset_axes((1.01, 0.0, 0.012, 1.0)))
            bar.ax.tick_params(labelsize=6)
            bar.set_label("score", fontsize=7)

    # (c) validation accuracy
    if timeline.val_acc:
        ax_acc.plot([t for t, _ in timeline.val_acc], [100 * a for _, a in timeline.val_acc], "o-", color="tab:blue",
                    ms=3.5, lw=1.3, label="validation")
    if timeline.test_acc is not None:
        ax_acc.plot([timeline.test_acc[0]], [100 * timeline.test_acc[1]], "*", color="tab:red", ms=10, clip_on=False,
                    zorder=3, label=f"test {100 * timeline.test_acc[1]:.2f}% (end)")
    if timeline.val_acc or timeline.test_acc is not None:
        ax_acc.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    else:
        ax_acc.text(0.5, 0.5, "no evaluation yet", transform=ax_acc.transAxes, ha="center", va="center")
    ax_acc.set_ylabel("accuracy (%)")
    ax_acc.set_title("(c) validation accuracy", fontsize=9, loc="left")

    # growth moments and checks that grew nothing, on every panel
    quiet = [t for t in timeline.checks if t not in timeline.events]
    for ax in axes:
        for t in timeline.events:
            ax.axvline(t, **growth_lines)
        for t in quiet:
            ax.axvline(t, color="0.55", lw=0.8, ls=":", zorder=1)
        ax.grid(alpha=0.25, axis="y")
    ax_acc.set_xlim(0, end)
    ax_acc.xaxis.set_major_formatter(FuncFormatter(lambda v, _: si(v)))
    marks = ([f"dashed: the network grew ({len(timeline.events)}x)"] if timeline.events else []) + (
        [f"dotted: a check that grew nothing ({len(quiet)}x)"] if quiet else [])
    ax_acc.set_xlabel("training FLOPs" + (f"  ({'; '.join(marks)})" if marks else ""))
    where = timeline.run.resolve()
    title = f"growth timeline of {where.parent.name}/{where.name}"
    fig.suptitle(title + (f"\n{timeline.note}" if timeline.note else ""), fontsize=10)
    fig.subplots_adjust(left=0.17 if scored else 0.08, right=0.80, top=0.88 if timeline.note else 0.93,
                        bottom=0.07, hspace=0.35)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _group_colors(n: int) -> list[Any]:
    """``n`` distinct colours (tab20's, then a continuous map beyond 20)."""
    from matplotlib import colormaps

    if n <= 20:
        palette = colormaps["tab20"]
        # pairs of tab20 are a dark and a light shade: take the dark ones first
        order = list(range(0, 20, 2)) + list(range(1, 20, 2))
        return [palette(order[i]) for i in range(n)]
    turbo = colormaps["turbo"]
    return [turbo(i / max(n - 1, 1)) for i in range(n)]
