"""A self-contained HTML report of a run: every image is embedded, nothing is fetched.

Figures are ``matplotlib.figure.Figure`` objects rendered to PNG: importing this module picks no
plotting backend and changes no global state.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image, ImageDraw, ImageOps

from ..data.images import load_image
from ..evaluation.evaluate import Evaluation
from ..evaluation.metrics import (
    METRIC_LABELS,
    METRIC_NAMES,
    compute_metrics,
    per_query_ap,
)
from ..files import atomic_write_text
from ..runs import REPORT_FILE, Run

_THUMB = 128
_RETRIEVAL_ROWS = 6
_TOP = 5
_CURVE_METRICS = ("identity_balanced_map", "retrieval_map", "pair_auc")

# Marks the page once loaded: how many images rendered and whether any script error happened, so a
# headless browser (and a curious user) can check that the report is whole.
_RENDER_CHECK = """<script>
window.__errors = [];
window.addEventListener('error', e => window.__errors.push(String(e.message)));
window.addEventListener('load', () => {
  const images = Array.from(document.images);
  const broken = images.filter(i => !i.complete || i.naturalWidth === 0).length;
  document.body.setAttribute('data-render-check', `images=${images.length} broken=${broken} errors=${window.__errors.length}`);
});
</script>"""

_STYLE = """<style>
body{font-family:system-ui,sans-serif;max-width:1150px;margin:2em auto;padding:0 1em;color:#222}
h1{margin-bottom:0}.sub{color:#666;margin-top:.2em}table{border-collapse:collapse;margin:1em 0}
td,th{border-bottom:1px solid #ddd;padding:4px 10px;text-align:right}td:first-child,th:first-child{text-align:left}
tr.submission td{font-weight:bold;background:#fff6e0}img{max-width:100%}figure{margin:1em 0}
figcaption{color:#555;font-size:90%}dl{font-size:90%;color:#444}dt{font-weight:bold;float:left;margin-right:.5em}
dd{margin:0 0 .3em 0}.stage{color:#8a5a00;font-size:90%}
</style>"""


def _data_uri(buffer: io.BytesIO) -> str:
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _png(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return _data_uri(buffer)


def _pil_png(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return _data_uri(buffer)


def training_curves(run: Run) -> str | None:
    """Loss (and its parts) and validation metrics per epoch; the kept epoch is marked."""
    histories = {m.path.name: m.history for m in run.validated_members if m.history}
    if not histories:
        return None
    figure = Figure(figsize=(11, 3.8))
    loss_axis, metric_axis = figure.subplots(1, 2)
    for name, rows in histories.items():
        trained = [r for r in rows if r["loss"] is not None]
        suffix = f" ({name})" if len(histories) > 1 else ""
        loss_axis.plot([r["epoch"] for r in trained], [r["loss"] for r in trained], marker="o", label=f"total{suffix}")
        for part in sorted({k for r in trained for k in r if k.startswith("loss_")}):
            loss_axis.plot([r["epoch"] for r in trained], [r[part] for r in trained], marker=".", linestyle="--",
                           label=f"{part.removeprefix('loss_')}{suffix}")
        for metric in _CURVE_METRICS:
            metric_axis.plot([r["epoch"] for r in rows], [r[metric] for r in rows], marker=".",
                             label=f"{METRIC_LABELS[metric][0]}{suffix}")
    for member in run.validated_members:
        summary = member.summary or {}
        if "best_epoch" in summary:
            metric_axis.axvline(summary["best_epoch"], color="#c58b2b", linestyle=":", linewidth=1.5)
    loss_axis.set(title="training loss", xlabel="epoch", ylabel="loss (lower is better)")
    metric_axis.set(title="validation, raw similarity (epoch 0 = untrained; dotted = kept epoch)", xlabel="epoch",
                    ylabel="score (higher is better)", ylim=(0, 1.02))
    for axis in (loss_axis, metric_axis):
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.legend(fontsize=7)
    return _png(figure)


def identity_bars(per_identity: dict[str, float], stage: str) -> str:
    """A bar chart of the AP per identity (PNG as base64)."""
    names = sorted(per_identity, key=per_identity.get)
    figure = Figure(figsize=(11, max(2.5, 0.22 * len(names))))
    axis = figure.subplots()
    axis.barh(names, [per_identity[n] for n in names], color="#c58b2b")
    axis.set(xlim=(0, 1), xlabel="mean AP of the identity's query images (higher is better)", ylabel="identity",
             title=f"AP per identity ({stage})")
    axis.tick_params(axis="y", labelsize=7)
    return _png(figure)


def similarity_histogram(similarity: np.ndarray, labels: np.ndarray, stage: str) -> str:
    """Histograms of same- and different-identity similarities (PNG as base64)."""
    off = ~np.eye(len(labels), dtype=bool)
    same = (labels[:, None] == labels[None, :])[off]
    values = similarity[off]
    figure = Figure(figsize=(8, 3.2))
    axis = figure.subplots()
    bins = np.linspace(values.min(), values.max(), 60)
    axis.hist(values[~same], bins=bins, alpha=0.6, density=True, label="different identity", color="#777")
    axis.hist(values[same], bins=bins, alpha=0.6, density=True, label="same identity", color="#d2691e")
    axis.set(xlabel="similarity", ylabel="density (share of pairs)", title=f"pair similarities ({stage})")
    axis.legend()
    return _png(figure)


def embedding_map(embeddings: np.ndarray, labels: np.ndarray, stage: str) -> str:
    """t-SNE (or PCA) of the embeddings; each identity has its own colour and marker, named in a legend."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    x = PCA(n_components=min(32, embeddings.shape[1], len(embeddings))).fit_transform(embeddings)
    if 5 < len(x) <= 3000:
        x = TSNE(n_components=2, perplexity=min(30, (len(x) - 1) / 3), init="pca", random_state=0).fit_transform(x)
        method = "t-SNE"
    else:
        x, method = x[:, :2], "PCA"
    identities = sorted(set(labels))
    figure = Figure(figsize=(10, 7))
    axis = figure.subplots()
    colours = _palette(len(identities))
    markers = "os^DvP*Xh<>p"
    for i, identity in enumerate(identities):
        mask = labels == identity
        axis.scatter(x[mask, 0], x[mask, 1], color=colours[i], marker=markers[(i // 20) % len(markers)], s=18,
                     label=str(identity))
    axis.set(title=f"embeddings ({method}, {stage}), one colour and marker per identity", xticks=[], yticks=[])
    if len(identities) <= 60:
        axis.legend(fontsize=6, ncol=2, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    return _png(figure)


def _palette(n: int) -> list[tuple]:
    """n distinguishable colours: tab20's 20, then evenly spaced hues."""
    from matplotlib import colormaps

    tab = [colormaps["tab20"](i) for i in range(20)]
    return [tab[i] if i < 20 else colormaps["hsv"]((i - 20) / max(1, n - 20)) for i in range(n)]


def _thumb(path: Path, border: str | None, alpha: str) -> Image.Image:
    """A square thumbnail filled by the image (centre crop, no letterbox), as the model saw it."""
    image = ImageOps.fit(load_image(path, alpha), (_THUMB, _THUMB))
    if border:
        ImageDraw.Draw(image).rectangle([0, 0, _THUMB - 1, _THUMB - 1], outline=border, width=6)
    return image


def retrieval_row(similarity: np.ndarray, labels: np.ndarray, paths: list[Path], query: int, alpha: str = "keep",
                  top: int = _TOP) -> tuple[str, list[tuple[str, float, bool]], int]:
    """A query and its top matches as one image (green border = same identity, red = another);
    also the matches (name, score, same?) and the rank of the first true match (1-based)."""
    scores = similarity[query].astype(float).copy()
    scores[query] = -np.inf
    order = np.argsort(-scores, kind="stable")
    same = labels[order] == labels[query]
    first_true = int(np.argmax(same[:-1])) + 1 if same[:-1].any() else 0
    ranked = order[:top]
    tiles = [_thumb(paths[query], "#3366cc", alpha)]
    tiles += [_thumb(paths[j], "#2e9e44" if labels[j] == labels[query] else "#cc3333", alpha) for j in ranked]
    grid = Image.new("RGB", (len(tiles) * (_THUMB + 6), _THUMB), "white")
    for i, tile in enumerate(tiles):
        grid.paste(tile, (i * (_THUMB + 6), 0))
    matches = [(Path(paths[j]).name, float(scores[j]), bool(labels[j] == labels[query])) for j in ranked]
    return _pil_png(grid), matches, first_true


def _metrics_table(rows: list[tuple[str, dict]], marked: str | None) -> str:
    head = "<tr><th>step</th>" + "".join(f"<th>{METRIC_LABELS[k][0]}</th>" for k in METRIC_NAMES) + "</tr>"
    body = "".join(
        f"<tr{' class=submission' if name == marked else ''}><td>{html.escape(name)}"
        f"{' (submission.csv)' if name == marked else ''}</td>"
        + "".join(f"<td>{m[k]:.4f}</td>" for k in METRIC_NAMES) + "</tr>" for name, m in rows)
    return f"<table>{head}{body}</table>"


def _definitions() -> str:
    items = "".join(f"<dt>{name}</dt><dd>{html.escape(text)}.</dd>" for name, text in METRIC_LABELS.values())
    return f"<dl>{items}<dt>all</dt><dd>higher is better; 1.0 is perfect.</dd></dl>"


def _kept_epoch(run: Run) -> str:
    parts = []
    for member in run.validated_members:
        summary = member.summary or {}
        if "best_epoch" in summary:
            label = f"{member.path.name}: " if len(run.validated_members) > 1 else ""
            parts.append(f"{label}epoch {summary['best_epoch']} of {summary['epochs']} "
                         f"(by {METRIC_LABELS.get(summary['selection_metric'], (summary['selection_metric'],))[0]})")
    return "; ".join(parts)


def _retrieval_section(evaluation: Evaluation, stage: str) -> str:
    labels, similarity = evaluation.labels, np.asarray(evaluation.similarity, dtype=np.float64)
    ap = per_query_ap(similarity, labels)[0]
    queries = np.flatnonzero(~np.isnan(ap))
    order = queries[np.argsort(ap[queries], kind="stable")]
    # Best, worst and evenly spaced between: what typical, good and bad queries look like.
    picks = order[np.unique(np.linspace(0, len(order) - 1, min(_RETRIEVAL_ROWS, len(order))).round().astype(int))][::-1]
    figures = []
    for query in picks:
        image, matches, first_true = retrieval_row(similarity, labels, evaluation.paths, int(query), evaluation.alpha)
        names = ", ".join(f"{'✓' if same else '✗'} {html.escape(name)} ({score:.3f})" for name, score, same in matches)
        figures.append(f"<figure><img alt='retrieval {int(query)}' src='{image}'><figcaption>query "
                       f"<b>{html.escape(Path(evaluation.paths[query]).name)}</b> of <b>{html.escape(str(labels[query]))}</b>: "
                       f"AP {ap[query]:.3f}, first true match at rank {first_true}. Top {_TOP}: {names}</figcaption></figure>")
    return (f"<h2>Retrieval examples</h2><p class='stage'>{stage}; queries from best to worst AP. Blue: the query; "
            f"green: same animal; red: another; scores are the final similarity.</p>" + "".join(figures))


def write_report(run: str | Path | Run, evaluation: Evaluation, out: str | Path | None = None,
                 title: str | None = None) -> Path:
    """Write the report of ``run`` on ``evaluation``'s image set (default RUN/report.html)."""
    run = run if isinstance(run, Run) else Run(run)
    out = Path(out) if out else run.path / REPORT_FILE
    labels, similarity = evaluation.labels, np.asarray(evaluation.similarity, dtype=np.float64)
    per_identity = compute_metrics(similarity, labels)["per_identity_ap"]
    stage = f"stage shown: {evaluation.submission_step}"
    kept = _kept_epoch(run)
    sections = [f"<h1>{html.escape(title or 'jaguar-reid report')}</h1>",
                f"<p class='sub'>run <code>{html.escape(str(run.path))}</code>; {len(labels)} images of "
                f"{len(set(labels))} identities ({html.escape(evaluation.set_name)})"
                f"{'; kept checkpoint: ' + html.escape(kept) if kept else ''}</p>"]
    sections.append("<h2>What each box adds</h2><p>Each row adds one step of the post-processing chain to the one "
                    "above; the highlighted row is what submission.csv holds.</p>"
                    + _metrics_table(evaluation.rows, evaluation.submission_step) + _definitions())
    curves = training_curves(run)
    if curves:
        sections.append(f"<h2>Training</h2><figure><img alt='training curves' src='{curves}'></figure>")
    sections.append(f"<h2>Per identity</h2><figure><img alt='AP per identity' src='{identity_bars(per_identity, stage)}'></figure>")
    sections.append(f"<h2>Similarities</h2><figure><img alt='similarity histogram' "
                    f"src='{similarity_histogram(similarity, labels, stage)}'></figure>")
    sections.append(_retrieval_section(evaluation, stage))
    embedding_stage = "the embeddings that enter the chain" + (" (flip TTA)" if "flip" in " ".join(n for n, _ in evaluation.rows) else "")
    sections.append(f"<h2>Embedding map</h2><figure><img alt='embedding map' "
                    f"src='{embedding_map(np.asarray(evaluation.embeddings), labels, embedding_stage)}'></figure>")
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title or 'jaguar-reid report')}</title>"
            f"{_STYLE}{_RENDER_CHECK}</head><body>{''.join(sections)}</body></html>")
    return atomic_write_text(out, page)
