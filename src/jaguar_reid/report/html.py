"""A self-contained HTML report of a run: every image is embedded, nothing is fetched."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image, ImageDraw, ImageOps  # noqa: E402

from ..data.images import load_image  # noqa: E402
from ..evaluation.metrics import METRIC_NAMES, compute_metrics, per_query_ap  # noqa: E402
from ..training.trainer import METRICS_FILE, read_run_config, run_members  # noqa: E402

REPORT_FILE = "report.html"
_THUMB = 128
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
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{margin-bottom:0}.sub{color:#666;margin-top:.2em}table{border-collapse:collapse;margin:1em 0}
td,th{border-bottom:1px solid #ddd;padding:4px 10px;text-align:right}td:first-child,th:first-child{text-align:left}
img{max-width:100%}figure{margin:1em 0}figcaption{color:#555;font-size:90%}
</style>"""


def _data_uri(buffer: io.BytesIO) -> str:
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _png(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    return _data_uri(buffer)


def _pil_png(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return _data_uri(buffer)


def training_curves(run: Path) -> str | None:
    members = run_members(run)
    histories = {m.name: [json.loads(l) for l in (m / METRICS_FILE).read_text().splitlines()] for m in members
                 if (m / METRICS_FILE).exists()}
    if not histories:
        return None
    figure, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    for name, rows in histories.items():
        trained = [r for r in rows if r["loss"] is not None]
        axes[0].plot([r["epoch"] for r in trained], [r["loss"] for r in trained], marker="o", label=name)
        for metric in _CURVE_METRICS:
            axes[1].plot([r["epoch"] for r in rows], [r[metric] for r in rows], marker=".", label=f"{metric} ({name})")
    axes[0].set(title="training loss", xlabel="epoch")
    axes[1].set(title="validation (epoch 0 = untrained)", xlabel="epoch", ylim=(0, 1.02))
    axes[1].legend(fontsize=7)
    return _png(figure)


def identity_bars(per_identity: dict[str, float]) -> str:
    names = sorted(per_identity, key=per_identity.get)
    figure, axis = plt.subplots(figsize=(11, max(2.5, 0.22 * len(names))))
    axis.barh(names, [per_identity[n] for n in names], color="#c58b2b")
    axis.set(xlim=(0, 1), xlabel="mean AP of the identity's queries", title="AP per identity")
    axis.tick_params(axis="y", labelsize=7)
    return _png(figure)


def similarity_histogram(similarity: np.ndarray, labels: np.ndarray) -> str:
    off = ~np.eye(len(labels), dtype=bool)
    same = (labels[:, None] == labels[None, :])[off]
    values = similarity[off]
    figure, axis = plt.subplots(figsize=(8, 3.2))
    bins = np.linspace(values.min(), values.max(), 60)
    axis.hist(values[~same], bins=bins, alpha=0.6, density=True, label="different identity", color="#777")
    axis.hist(values[same], bins=bins, alpha=0.6, density=True, label="same identity", color="#d2691e")
    axis.set(xlabel="similarity", ylabel="density", title="pair similarities")
    axis.legend()
    return _png(figure)


def embedding_map(embeddings: np.ndarray, labels: np.ndarray) -> str:
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    x = PCA(n_components=min(32, embeddings.shape[1], len(embeddings))).fit_transform(embeddings)
    if 5 < len(x) <= 3000:
        x = TSNE(n_components=2, perplexity=min(30, (len(x) - 1) / 3), init="pca", random_state=0).fit_transform(x)
        method = "t-SNE"
    else:
        x, method = x[:, :2], "PCA"
    codes = {name: i for i, name in enumerate(sorted(set(labels)))}
    figure, axis = plt.subplots(figsize=(7, 6))
    axis.scatter(x[:, 0], x[:, 1], c=[codes[l] for l in labels], cmap="tab20", s=14)
    axis.set(title=f"embeddings ({method}), coloured by identity", xticks=[], yticks=[])
    return _png(figure)


def _thumb(path: Path, border: str | None, alpha: str) -> Image.Image:
    image = ImageOps.pad(load_image(path, alpha), (_THUMB, _THUMB), color=(255, 255, 255))
    if border:
        ImageDraw.Draw(image).rectangle([0, 0, _THUMB - 1, _THUMB - 1], outline=border, width=6)
    return image


def retrieval_grid(similarity: np.ndarray, labels: np.ndarray, paths: list[Path], query: int, alpha: str = "keep",
                   top: int = 5) -> str:
    """A query and its top matches, shown as the model saw them (``alpha`` policy); green border =
    same identity, red = different."""
    scores = similarity[query].astype(float).copy()
    scores[query] = -np.inf
    ranked = np.argsort(-scores, kind="stable")[:top]
    tiles = [_thumb(paths[query], "#3366cc", alpha)]
    tiles += [_thumb(paths[j], "#2e9e44" if labels[j] == labels[query] else "#cc3333", alpha) for j in ranked]
    grid = Image.new("RGB", (len(tiles) * (_THUMB + 6), _THUMB), "white")
    for i, tile in enumerate(tiles):
        grid.paste(tile, (i * (_THUMB + 6), 0))
    return _pil_png(grid)


def _metrics_table(rows: list[tuple[str, dict]]) -> str:
    head = "<tr><th></th>" + "".join(f"<th>{k}</th>" for k in METRIC_NAMES) + "</tr>"
    body = "".join(
        f"<tr><td>{html.escape(name)}</td>" + "".join(f"<td>{m[k]:.4f}</td>" for k in METRIC_NAMES) + "</tr>" for name, m in rows
    )
    return f"<table>{head}{body}</table>"


def write_report(run: str | Path, details: dict, ablation_rows: list[tuple[str, dict]] | None = None,
                 out: str | Path | None = None, title: str | None = None) -> Path:
    """Write the report; ``details`` holds paths, labels, embeddings and the final similarity of an image set."""
    run = Path(run)
    out = Path(out) if out else run / REPORT_FILE
    paths, labels = details["paths"], np.asarray(details["labels"])
    similarity = np.asarray(details["similarity"], dtype=np.float64)
    metrics = compute_metrics(similarity, labels)
    per_identity = metrics["per_identity_ap"]
    ap_by_query = per_query_ap(similarity, labels)[0]
    order = sorted(per_identity, key=per_identity.get)
    alpha = read_run_config(run_members(run)[0]).data.alpha
    sections = [f"<h1>{html.escape(title or 'jaguar-reid report')}</h1>",
                f"<p class='sub'>run <code>{html.escape(str(run))}</code>; {len(labels)} images of "
                f"{len(set(labels))} identities ({html.escape(details.get('set_name', 'validation split'))})</p>"]
    if ablation_rows:
        sections.append("<h2>What each box adds</h2>" + _metrics_table(ablation_rows))
    curves = training_curves(run)
    if curves:
        sections.append(f"<h2>Training</h2><figure><img alt='training curves' src='{curves}'></figure>")
    sections.append(f"<h2>Per identity</h2><figure><img alt='AP per identity' src='{identity_bars(per_identity)}'></figure>")
    sections.append(f"<h2>Similarities</h2><figure><img alt='similarity histogram' src='{similarity_histogram(similarity, labels)}'></figure>")
    grids = []
    for kind, identity in (("best", order[-1]), ("worst", order[0])):
        queries = [i for i in np.flatnonzero(labels == identity) if not np.isnan(ap_by_query[i])]
        query = queries[int(np.argsort([ap_by_query[i] for i in queries])[len(queries) // 2])]
        grids.append(f"<figure><img alt='retrieval {kind}' src='{retrieval_grid(similarity, labels, paths, query, alpha)}'>"
                     f"<figcaption>{kind} identity <b>{html.escape(str(identity))}</b> (AP {per_identity[identity]:.3f}): "
                     f"query (blue) and its top 5; green = same animal, red = another</figcaption></figure>")
    sections.append("<h2>Retrieval examples</h2>" + "".join(grids))
    sections.append(f"<h2>Embedding map</h2><figure><img alt='embedding map' src='{embedding_map(np.asarray(details['embeddings']), labels)}'></figure>")
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title or 'jaguar-reid report')}</title>"
            f"{_STYLE}{_RENDER_CHECK}</head><body>{''.join(sections)}</body></html>")
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(page)
    tmp.replace(out)
    return out

