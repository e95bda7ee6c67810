"""Training curves: test accuracy per epoch of training runs, against the goal.

    python -m model.curve --runs runs/spikingformer-2-64 runs/spikformer-2-64 \\
        --out docs/training/curve.png

Reads each run's ``log.jsonl`` (one line per epoch, written by ``model.train``) and plots the
test accuracy per epoch (with the number of test images it was measured on), the learning
rate on a second axis, and, as horizontal lines, the integer accuracy of the bundled models on
the 10,000 test images (``models/*.json``) and the goal. Prints the table it plotted.

With ``--project`` it also says what the rest of an unfinished run's schedule should give. Test
accuracy is fitted as

    acc(e) = a - b S(e)^-c - d lr(e) / lr_max

where S(e) is the learning rate summed over epochs 1..e (in epochs at the full rate) and lr(e)
the rate at the end of epoch e, both from the run's own schedule (warm-up, cosine): the first
term is what training has learned so far, the second what the noise of the current rate still
costs, which the falling cosine pays back. Fits in the epoch alone (a power law, a saturating
exponential) cannot see that and disagree with each other by points. The interval comes from
refitting to epochs drawn with replacement, so it measures the noise of the curve, not
whether the form is right.

``--to-epochs N`` carries the fit along the run's schedule stretched to N epochs (the same
warm-up, rates and floor, a longer cosine): what the same network would end at with a longer
schedule, from a run that is finished or not. That extrapolates the learned term beyond the
rate-sums the run has seen; when the fitted exponent sits at the end of its range the form has
no ceiling there, and the projection is an upper estimate. A run among ``--runs`` that
follows the stretched schedule (same rates and warm-up, N epochs) tests that projection: the
notes give its test accuracy less the projected curve's, per block of ten epochs.

Two runs on the same rates, one schedule longer, are also compared at equal rate, with no
fitted form: the longer run's test accuracy, read off at the rate each of the shorter run's
epochs ended at, less the shorter run's. The rate term is then the same for both, so the lead
is what the longer run has learned beyond the shorter; once the shorter run has finished, the
notes say where the longer would end if its latest lead held, and if the lead went on falling
as b (S_short^-c - S_long^-c), fitted to it.

Runs on the same schedule (a deeper network, a teacher's help) are compared epoch by epoch
with the first of ``--runs`` on it: their test and train accuracy less its, over the epochs
before ``--fit-from`` and then per block of ten.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from .data import REPO, shown


def read_log(run: str | Path) -> list[dict]:
    """The epochs of a run, in order; a clear error for a folder without a readable log."""
    log = Path(run) / "log.jsonl"
    if not log.exists():
        raise FileNotFoundError(f"No training log at {log}")
    rows = []
    for n, line in enumerate(log.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            int(row["epoch"]), float(row["test_acc"])
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{log}, line {n}: not an epoch record ({e})") from None
        rows.append(row)
    if not rows:
        raise ValueError(f"{log} holds no epochs yet")
    return sorted(rows, key=lambda r: r["epoch"])


def plan(run: str | Path) -> dict | None:
    """The schedule a run was started with (epochs, lr, min_lr, warmup), from its last.pt."""
    last = Path(run) / "last.pt"
    if not last.exists():
        return None
    from .train import load_checkpoint

    args = load_checkpoint(last)["args"]
    return {k: args[k] for k in ("epochs", "lr", "min_lr", "warmup")}


def schedule(sched: dict, resolution: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Per epoch 1..E: (learning rate summed through the epoch in epochs at the full rate,
    rate at the epoch's end / full rate), from model.train's warm-up + cosine."""
    from .train import lr_at

    n = sched["epochs"] * resolution
    warm = int(sched["warmup"] * resolution)
    rate = np.array([lr_at(k, n, warm, sched["lr"], sched["min_lr"]) for k in range(n)])
    rate = rate.reshape(sched["epochs"], resolution) / sched["lr"]
    return np.cumsum(rate.mean(1)), rate[:, -1]


def _fit(s: np.ndarray, r: np.ndarray, y: np.ndarray, cs: np.ndarray):
    """Least squares of y = a - b s^-c - d r: (a, b, d) exactly for each c of the grid, keeping
    only fits where learning helps and the rate's noise costs (b, d >= 0)."""
    best = (np.inf, None, None)
    for c in cs:
        m = np.stack([np.ones_like(s), -s ** -c, -r], 1)
        coef = np.linalg.lstsq(m, y, rcond=None)[0]
        err = float(np.sum((m @ coef - y) ** 2))
        if coef[1] >= 0 and coef[2] >= 0 and err < best[0]:
            best = (err, c, coef)
    return best


def project(rows: list[dict], sched: dict, fit_from: int = 8, draws: int = 200,
            seed: int = 0, epochs: int | None = None) -> dict:
    """Fit the epochs from ``fit_from`` on and project the test accuracy at the schedule's end.

    With ``epochs``, the fit (to the run's own schedule) is carried along that schedule
    stretched to ``epochs`` epochs (the same warm-up, rates and floor, the cosine longer): what
    a longer run of the same network would end at, projected from this one, finished or not.

    Returns the projection (``acc``, 10-90 % ``low``/``high`` over refits to resampled
    epochs), the fitted parameters, the rms residual, and the fitted curve for every epoch of
    the schedule projected along.
    """
    total = int(sched["epochs"])
    target = dict(sched, epochs=int(epochs)) if epochs is not None else sched
    end = int(target["epochs"])
    ep = np.array([r["epoch"] for r in rows if fit_from <= r["epoch"] <= total])
    if len(ep) < 6:
        raise ValueError(f"{len(ep)} epochs from epoch {fit_from} on; the projection needs 6")
    if epochs is not None and end <= total:
        raise ValueError(f"--to-epochs {end} is no longer than the run's own {total} epochs")
    if ep.max() >= end:
        raise ValueError(f"the run has finished its {total} epochs; nothing to project "
                         f"(--to-epochs projects a longer schedule)")
    y = np.array([100 * r["test_acc"] for r in rows if fit_from <= r["epoch"] <= total])
    s_own, r_own = schedule(sched)
    s_all, r_all = schedule(target)
    s, r = s_own[ep - 1], r_own[ep - 1]
    cs = np.geomspace(0.05, 3, 100)
    err, c, coef = _fit(s, r, y, cs)
    if coef is None:
        raise ValueError("no fit with accuracy rising in training and falling with the rate")
    a, b, d = coef

    def form(c, coef, s, r):
        return coef[0] - coef[1] * s ** -c - coef[2] * r

    def at(c, coef, i):  # along the schedule projected along
        return form(c, coef, s_all[i], r_all[i])

    rng = np.random.default_rng(seed)
    ends = []
    for _ in range(draws):
        i = rng.integers(0, len(ep), len(ep))
        if len(np.unique(i)) < 4:
            continue
        _, cb, coef = _fit(s[i], r[i], y[i], cs)
        if coef is not None:
            ends.append(at(cb, coef, end - 1))
    low, high = np.percentile(ends, [10, 90]) if ends else (np.nan, np.nan)
    return {"epoch": end, "acc": float(at(c, (a, b, d), end - 1)), "low": float(low),
            "high": float(high), "a": float(a), "b": float(b), "c": float(c), "d": float(d),
            "rms": float(np.sqrt(err / len(ep))), "fitted": (int(ep.min()), int(ep.max())),
            "edge": bool(c in (cs[0], cs[-1])), "stretched": end != total,
            "curve": (np.arange(1, end + 1), at(c, (a, b, d), np.arange(end))),
            "own": form(c, (a, b, d), s_own, r_own),  # the fit along the run's own schedule
            "lr": r_all * sched["lr"]}


def against(p: dict, rows: list[dict], start: int = 8, block: int = 10) -> list[tuple]:
    """How a run on the schedule a projection was carried along compares with it: per block
    of ``block`` epochs from ``start`` on, (first, last, mean, min, max) of the run's test
    accuracy less the projected curve's, in points."""
    x, y = p["curve"]
    off = offsets(y, [r for r in rows if start <= r["epoch"] <= len(x)])
    return [(got[0], got[-1], *spread([off[e] for e in got]))
            for got in blocks_of(off, start, block)]


def blocks_of(epochs, start: int, size: int) -> list[list[int]]:
    """The given epochs from ``start`` on in blocks of ``size`` consecutive epoch numbers
    (start, start + size, ...), each block the epochs it holds, empty blocks left out."""
    have = set(epochs)
    got = ([e for e in range(lo, lo + size) if e in have]
           for lo in range(start, max(have, default=0) + 1, size))
    return [g for g in got if g]


def offsets(curve: np.ndarray, rows: list[dict]) -> dict[int, float]:
    """Each row's test accuracy less ``curve`` (indexed by epoch - 1), in points, by epoch."""
    return {r["epoch"]: 100 * r["test_acc"] - float(curve[r["epoch"] - 1]) for r in rows}


def spread(d: list[float]) -> tuple[float, float, float]:
    """Mean, min and max."""
    return float(np.mean(d)), min(d), max(d)


def equal_rate(short: list[dict], short_sched: dict, long: list[dict],
               long_sched: dict) -> dict[int, tuple[float, float, float, float, float]]:
    """A run on a longer schedule of the same rates against a shorter run at the same point
    of the cosine, with no fitted form: for each of the shorter run's epochs past its warm-up,
    (its rate at the epoch's end / full rate, the lead, its rate-sum S, the longer run's S at
    that rate, the longer run's epoch at that rate, fractional). The lead is the longer run's
    test accuracy at the same rate less the shorter run's. The longer run, with more epochs
    per step of the rate, is the one read off at the rate, by linear interpolation between
    its epochs past its warm-up (where its rate only falls); epochs of the shorter run at rates
    the longer has not reached are left out."""
    s_s, r_s = schedule(short_sched)
    s_l, r_l = schedule(long_sched)
    past = [r for r in long if np.ceil(long_sched["warmup"]) < r["epoch"] <= len(r_l)]
    if len(past) < 2:
        return {}
    e_l = np.array([r["epoch"] for r in past])[::-1]  # rising rates, for np.interp
    x = r_l[e_l - 1]
    y = np.array([100 * r["test_acc"] for r in past])[::-1]
    out = {}
    for r in short:
        e = r["epoch"]
        if (np.ceil(short_sched["warmup"]) < e <= len(r_s)
                and x[0] <= (rate := r_s[e - 1]) <= x[-1]):
            out[e] = (float(rate), float(np.interp(rate, x, y)) - 100 * r["test_acc"],
                      float(s_s[e - 1]), float(np.interp(rate, x, s_l[e_l - 1])),
                      float(np.interp(rate, x, e_l)))
    return out


def fit_lead(lead: dict[int, tuple], s_short: float, s_long: float, draws: int = 200,
             seed: int = 0) -> dict | None:
    """The lead at equal rate as what the longer run has learned beyond the shorter, in the
    learned term of the projection's form: lead = b (S_short^-c - S_long^-c) with b >= 0; the
    rate term is the same for both and drops out. Carried to the rate-sums the two schedules
    end at, ``s_short`` and ``s_long``: ``end``, with ``low`` and ``high`` its 10-90 % over
    refits to epochs drawn with replacement; also ``b``, ``c`` and the ``rms`` residual. None
    when no b >= 0 fits (the longer run is behind)."""
    _, d, s1, s2, _ = (np.array(v) for v in zip(*lead.values(), strict=True))
    fit = _fit_lead(d, s1, s2)
    if fit is None:
        return None
    b, c, rms = fit
    rng = np.random.default_rng(seed)
    ends = []
    for _ in range(draws):
        i = rng.integers(0, len(d), len(d))
        if (refit := _fit_lead(d[i], s1[i], s2[i])) is not None:
            ends.append(refit[0] * (s_short ** -refit[1] - s_long ** -refit[1]))
    low, high = np.percentile(ends, [10, 90])
    return {"b": b, "c": c, "rms": rms, "end": float(b * (s_short ** -c - s_long ** -c)),
            "low": float(low), "high": float(high)}


def _fit_lead(d, s1, s2) -> tuple[float, float, float] | None:
    best = None
    for c in np.geomspace(0.05, 3, 100):
        f = s1 ** -c - s2 ** -c
        b = float(f @ d / (f @ f))
        err = float(np.sum((b * f - d) ** 2))
        if b >= 0 and (best is None or err < best[0]):
            best = (err, b, float(c))
    return None if best is None else (best[1], best[2], float(np.sqrt(best[0] / len(d))))


def paired(first: list[dict], second: list[dict], start: int = 8,
           block: int = 10) -> list[tuple]:
    """Two runs on the same schedule, epoch by epoch: over the epochs before ``start`` (the
    warm-up and the steep first epochs) as one block, then blocks of ``block`` epochs, (first
    epoch, last, mean test accuracy, mean train accuracy of ``second`` less ``first``'s, in
    points), on the epochs both have; the train figure None where a log lacks it."""
    a = {r["epoch"]: r for r in first}
    b = {r["epoch"]: r for r in second}
    both = sorted(a.keys() & b.keys())
    early = [e for e in both if e < start]
    out = []
    for got in ([early] if early else []) + blocks_of(both, start, block):
        test = np.mean([b[e]["test_acc"] - a[e]["test_acc"] for e in got])
        train = None
        if all("train_acc" in a[e] and "train_acc" in b[e] for e in got):
            train = 100 * float(np.mean([b[e]["train_acc"] - a[e]["train_acc"] for e in got]))
        out.append((got[0], got[-1], 100 * float(test), train))
    return out


def _paired_notes(plans: dict, runs: dict, start: int) -> list[str]:
    """A note on each run that shares its schedule (epochs, rates, warm-up) with one before it
    in ``--runs``: ``paired``'s blocks against the first run on that schedule."""
    names = [n for n, p in plans.items() if p]
    notes = []
    for i, second in enumerate(names):
        first = next((n for n in names[:i] if plans[n] == plans[second]), None)
        if first is not None and (blocks := paired(runs[first], runs[second], start)):
            notes.append(
                f"{second} against {first}, the same {plans[first]['epochs']}-epoch schedule, "
                f"epoch by epoch (its accuracy less {first}'s, points): " + "; ".join(
                    f"epochs {lo}-{hi}: test {test:+.2f}"
                    + ("" if train is None else f", train {train:+.2f}")
                    for lo, hi, test, train in blocks))
    return notes


def _equal_rate_notes(plans: dict, runs: dict, start: int,
                      block: int = 10) -> tuple[list[str], dict[str, dict]]:
    """Notes on each pair of runs on the same rates, one schedule longer than the other: the
    lead at equal rate from the shorter run's epoch ``start`` on, in blocks of about ``block``
    of the longer run's epochs, and, when the shorter run has finished, where the longer would
    end if its lead over those last epochs held, and if the lead went on as ``fit_lead``
    fits it. Also that end, by the longer run's name, for the plot."""
    notes, ends = [], {}
    for short, ss in plans.items():
        for long, ls in plans.items():
            if not (ss and ls) or ls["epochs"] <= ss["epochs"] or any(
                    ls[k] != ss[k] for k in ("lr", "min_lr", "warmup")):
                continue
            lead = {e: v for e, v in equal_rate(runs[short], ss, runs[long], ls).items()
                    if e >= start}
            if not lead:
                continue
            step = max(1, round(block * ss["epochs"] / ls["epochs"]))  # short epochs a block
            # (first epoch of the block, last, the longer run's first and last, rate, lead)
            blocks = [(got[0], got[-1], round(lead[got[0]][4]), round(lead[got[-1]][4]),
                       *np.mean([lead[e][:2] for e in got], 0))
                      for got in blocks_of(lead, start, step)]
            note = (f"{long} ({ls['epochs']} epochs) against {short} ({ss['epochs']}) at the "
                    f"same rate (its test accuracy less {short}'s at the same rate / full "
                    f"rate, points): " + "; ".join(
                        f"epochs {lo}-{hi} of {short}, about {a}-{b} of {long}, rate {r:.2f}: "
                        f"{m:+.2f}" for lo, hi, a, b, r, m in blocks))
            end = runs[short][-1]
            if end["epoch"] == ss["epochs"]:
                acc = 100 * end["test_acc"]
                lo, hi, *_, m = blocks[-1]
                note += (f". {short} ended at {acc:.2f} %; if the lead of its epochs {lo}-{hi} "
                         f"({m:+.2f}) held to the end of the cosine, {long} would end near "
                         f"{acc + m:.1f} %")
                if len(blocks) > 1 and m < blocks[0][-1]:
                    note += f" (it has fallen from {blocks[0][-1]:+.2f})"
                f = fit_lead(lead, schedule(ss)[0][-1], schedule(ls)[0][-1]) \
                    if len(lead) >= 6 else None
                if f:
                    note += (f"; fitted as {f['b']:.2f} (S_short^-{f['c']:.3f} - "
                             f"S_long^-{f['c']:.3f}) in the rate-sums (rms residual "
                             f"{f['rms']:.2f} points), the lead comes to {f['end']:+.2f} at the "
                             f"end ({f['low']:+.2f} to {f['high']:+.2f}): near "
                             f"{acc + f['end']:.1f} % ({acc + f['low']:.1f}-{acc + f['high']:.1f})")
                    ends[long] = {"epoch": int(ls["epochs"]), "acc": acc + f["end"],
                                  "low": acc + f["low"], "high": acc + f["high"], "from": short}
                elif len(lead) >= 6:
                    note += "; no lead that grows with the extra epochs fits (b < 0: behind)"
            notes.append(note)
    return notes, ends


def describe(name: str, p: dict) -> str:
    lo, hi = p["fitted"]
    return (f"{name}: {p['acc']:.1f} % projected at epoch {p['epoch']}"
            + (f" of the same schedule stretched to {p['epoch']} epochs" if p.get("stretched")
               else "") + " "
            f"(10-90 %: {p['low']:.1f}-{p['high']:.1f}), fitted to epochs {lo}-{hi}: "
            f"acc = {p['a']:.2f} - {p['b']:.2f} S^-{p['c']:.3f} - {p['d']:.2f} lr/lr_max, "
            f"rms residual {p['rms']:.2f} points"
            + (" (the exponent is at the end of its range: these epochs do not show where "
               "the curve levels off, so a is no asymptote)" if p["edge"] else ""))


def bundled(models_dir: Path = REPO / "models") -> dict[str, float]:
    """Integer accuracy on the 10,000 test images of each bundled model with a manifest."""
    out = {}
    for f in sorted(models_dir.glob("*.json")):
        t = json.loads(f.read_text()).get("cifar10_test") or {}
        if t.get("images") == 10000:
            out[f.stem] = float(t["accuracy_int"])
    return out


def table(runs: dict[str, list[dict]]) -> str:
    lines = ["| run | epoch | test acc (%) | test images | mode | lr |",
             "| --- | ---: | ---: | ---: | --- | ---: |"]
    for name, rows in runs.items():
        lines += [f"| {name} | {r['epoch']} | {100 * r['test_acc']:.2f} | "
                  f"{r.get('test_images', '?'):,} | {r.get('eval_mode', '?')} | "
                  f"{r.get('lr', float('nan')):.2e} |" for r in rows]
    return "\n".join(lines)


def wide(runs: dict[str, list[dict]], first: int = 1, last: int | None = None,
         per_row: int = 10) -> str:
    """The runs' test and train accuracy (%) side by side, one column per epoch from ``first``
    to ``last`` (at most the last any run has), ``per_row`` epochs to a table; a run
    without an epoch, or a log without the train figure, shows a dash."""
    got = {n: {r["epoch"]: r for r in rows} for n, rows in runs.items()}
    end = max(max(g) for g in got.values())
    last = min(last or end, end)
    if first > last:
        raise ValueError(f"--wide from epoch {first}: the runs end at epoch {end}")
    tables = []
    for lo in range(first, last + 1, per_row):
        epochs = range(lo, min(lo + per_row - 1, last) + 1)
        lines = ["| epoch | " + " | ".join(map(str, epochs)) + " |",
                 "| --- |" + " ---: |" * len(epochs)]
        for key, digits in (("test_acc", 2), ("train_acc", 1)):
            for name, g in got.items():
                cells = [f"{100 * g[e][key]:.{digits}f}" if key in g.get(e, {}) else "-"
                         for e in epochs]
                if any(c != "-" for c in cells):
                    lines.append(f"| {key.removesuffix('_acc')}, {name} | "
                                 + " | ".join(cells) + " |")
        tables.append("\n".join(lines))
    return "\n\n".join(tables)


def plot(runs: dict[str, list[dict]], marks: dict[str, float], goal: float | None, out: Path,
         planned: int | None = None, projections: dict[str, dict] | None = None,
         ends: dict[str, dict] | None = None):
    """``ends``: by run, where the run ends by its comparison at equal rate with another
    (``acc``, ``low``, ``high`` at ``epoch``, ``from`` the other), drawn as a diamond."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.8))
    lr_ax = ax.twinx()
    for name, rows in runs.items():
        ep = [r["epoch"] for r in rows]
        line, = ax.plot(ep, [100 * r["test_acc"] for r in rows], "o-", ms=3,
                        label=f"{name} ({rows[-1].get('eval_mode', '?')}, "
                              f"{rows[-1].get('test_images', 0):,} test images)")
        if all("lr" in r for r in rows):
            lr_ax.plot(ep, [r["lr"] for r in rows], ":", color=line.get_color(), alpha=0.6)
        p = (projections or {}).get(name)
        if p:
            x, y = p["curve"]
            # along a stretched schedule the curve is another run's, whole; else the fit's
            keep = x >= (1 if p.get("stretched") else p["fitted"][0])
            what = (f"projected for {p['epoch']} epochs" if p.get("stretched")
                    else "fit and projection")
            ax.plot(x[keep], y[keep], "--", color=line.get_color(), lw=1,
                    label=f"{name}, {what}: {p['acc']:.1f} % at epoch {p['epoch']} "
                          f"(10-90 %: {p['low']:.1f}-{p['high']:.1f})")
            # the refits' 10-90 % range need not hold the fit's own value when few epochs
            # pin the form down: drawn as a range beside the point, not as error bars, and
            # within 0-100 % (a young run's refits can run past 100)
            ax.vlines([p["epoch"]], max(p["low"], 0.0), min(p["high"], 100.0),
                      color=line.get_color(), lw=1)
            ax.plot([p["epoch"]], [p["acc"]], "o", ms=4, color=line.get_color())
            since = 0 if p.get("stretched") else ep[-1] - 1
            lr_ax.plot(x[since:], p["lr"][since:], ":", color=line.get_color(), alpha=0.25)
        q = (ends or {}).get(name)
        if q:
            ax.vlines([q["epoch"] + 1], q["low"], q["high"], color=line.get_color(), lw=1)
            ax.plot([q["epoch"] + 1], [q["acc"]], "D", ms=5, color=line.get_color(),
                    label=f"{name}, by equal rate with {q['from']}: {q['acc']:.1f} % at epoch "
                          f"{q['epoch']} ({q['low']:.1f}-{q['high']:.1f})")
    for i, (name, acc) in enumerate(marks.items()):
        ax.axhline(100 * acc, color=f"C{i + len(runs)}", lw=1, ls="--",
                   label=f"models/{name}.sfm, integer: {100 * acc:.2f} %")
    if goal is not None:
        ax.axhline(100 * goal, color="k", lw=1, label=f"goal {100 * goal:.0f} %")
    if planned:
        ax.set_xlim(0, planned + 3)
    ax.set_xlabel("epoch" + (f" (of the {planned}-epoch schedule)" if planned else ""))
    ax.set_ylabel("CIFAR-10 test accuracy (%)")
    lr_ax.set_ylabel("learning rate (dotted)")
    lr_ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("training curves")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def _tracking(projections: dict, plans: dict, runs: dict, start: int) -> list[str]:
    """Notes on runs that follow a schedule another run's fit was stretched to: the test of
    that projection, block by block."""
    notes = []
    for name, p in projections.items():
        if not p["stretched"]:
            continue
        target = dict(plans[name], epochs=p["epoch"])
        for other, sched in plans.items():
            if other == name or sched != target:
                continue
            blocks = against(p, runs[other], start)
            if blocks:
                notes.append(f"{other} against {name}'s projection to {p['epoch']} epochs "
                             f"(its test accuracy less the projected, points): " + "; ".join(
                                 f"epochs {a}-{b} {m:+.2f} ({lo:+.2f} to {hi:+.2f})"
                                 for a, b, m, lo, hi in blocks))
    return notes


def main(argv=None) -> dict[str, list[dict]]:
    p = argparse.ArgumentParser(prog="python -m model.curve", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", nargs="+", required=True, help="run folders (with log.jsonl)")
    p.add_argument("--out", default=str(REPO / "docs" / "training" / "curve.png"))
    p.add_argument("--goal", type=float, default=0.86, help="accuracy goal line (0..1)")
    p.add_argument("--no-bundled", action="store_true",
                   help="leave out the bundled models' accuracy lines")
    p.add_argument("--project", action="store_true",
                   help="project each unfinished run's accuracy at the end of its schedule")
    p.add_argument("--fit-from", type=int, default=8,
                   help="first epoch the projection fits (default 8: past the warm-up)")
    p.add_argument("--to-epochs", type=int, default=None, metavar="N",
                   help="with --project: carry each run's fit along its schedule stretched to "
                        "N epochs (what a longer run would end at; finished runs too; a run "
                        "already on an N-epoch schedule along its own)")
    p.add_argument("--wide", nargs="*", type=int, default=None, metavar="EPOCH",
                   help="print the runs' test and train accuracy side by side, one column per "
                        "epoch, instead of the long table (optionally from FIRST [to LAST])")
    p.add_argument("--upto", type=int, default=None,
                   help="use epochs up to this one only (to check an earlier projection "
                        "against the epochs that followed)")
    args = p.parse_args(argv)
    if args.to_epochs is not None and not args.project:
        p.error("--to-epochs needs --project")
    if args.wide is not None and (len(args.wide) > 2 or any(e < 1 for e in args.wide)
                                  or args.wide != sorted(args.wide)):
        p.error("--wide takes a first epoch and a last, both 1 or more, first <= last")
    names = {shown(r).removeprefix("runs/"): r for r in args.runs}
    runs = {name: read_log(r) for name, r in names.items()}
    full = runs
    if args.upto is not None:
        runs = {n: [r for r in rows if r["epoch"] <= args.upto] for n, rows in runs.items()}
        if not all(runs.values()):
            raise ValueError(f"--upto {args.upto} leaves a run without epochs")
    marks = {} if args.no_bundled else bundled()
    plans = {name: plan(r) for name, r in names.items()}  # the schedules the runs follow
    projections, notes = {}, []
    if args.project:
        for name, sched in plans.items():
            if sched is None:
                notes.append(f"{name}: no last.pt, so no schedule to project along")
                continue
            try:
                # a run already on an N-epoch schedule is projected along its own
                to = None if args.to_epochs == int(sched["epochs"]) else args.to_epochs
                projections[name] = project(runs[name], sched, args.fit_from, epochs=to)
                notes.append(describe(name, projections[name]))
                later = [r for r in full[name] if r["epoch"] > args.upto] if args.upto else []
                if later:
                    # the later epochs ran the own schedule
                    m, lo, hi = spread(list(offsets(projections[name]["own"], later).values()))
                    notes.append(f"{name}: epochs {later[0]['epoch']}-{later[-1]['epoch']} "
                                 f"came out {m:+.2f} points from this fit "
                                 f"on average ({lo:+.2f} to {hi:+.2f})")
            except ValueError as e:
                notes.append(f"{name}: not projected: {e}")
        notes += _tracking(projections, plans, full, args.fit_from)
    rate_notes, ends = _equal_rate_notes(plans, runs, args.fit_from)
    notes += rate_notes + _paired_notes(plans, runs, args.fit_from)
    planned = max([int(p["epochs"]) for p in plans.values() if p]
                  + [p["epoch"] for p in projections.values()], default=0)
    plot(runs, marks, args.goal, Path(args.out), planned or None, projections, ends)
    if args.wide is None:
        print(table(runs))
    else:
        print(wide(runs, *args.wide))
    for note in notes:
        print(note)
    print(f"wrote {shown(args.out)}", file=sys.stderr)
    return runs


if __name__ == "__main__":
    from model.cli import run

    run(main)
