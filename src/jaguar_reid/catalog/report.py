"""Plain-text views of identifications and catalogue statistics (what the CLI prints)."""

from __future__ import annotations

from .catalog import Identification


def format_identification(result: Identification) -> str:
    """The verdict in words (``Identification.says``), then one line per candidate individual with
    its best-matching catalogue photos."""
    photos = f" ({len(result.photos)} photos: {', '.join(result.photos[:4])}{', ...' if len(result.photos) > 4 else ''})" \
        if result.photos else ""
    lines = [f"{result.photo}{photos}: {result.says}"]
    for rank, candidate in enumerate(result.candidates, 1):
        photos = ", ".join(f"{p['original_name']} {p['similarity']:.3f}" for p in candidate.photos)
        lines.append(f"  {rank}. {candidate.individual:20} similarity {candidate.score:.3f}  decision {candidate.decision_score:5.2f}"
                     f"  p {candidate.probability:.2f}  [{photos}]")
    return "\n".join(lines)


def format_stats(stats: dict) -> str:
    """``catalog stats`` as aligned text lines."""
    per = stats["photos_per_individual"]
    lines = [
        f"catalogue          {stats['catalogue']} (schema version {stats['schema_version']})",
        f"photo store        {stats['image_store']}",
        f"individuals        {stats['individuals']}",
        f"photos             {stats['photos_known']} identified, {stats['photos_queued']} queued for review, "
        f"{stats['photos_rejected']} rejected",
        f"photos/individual  min {per['min']}, median {per['median']:g}, max {per['max']}",
        f"decisions logged   {stats['decisions']}",
    ]
    for model in stats["models"]:
        lines.append(f"model {model['fingerprint']}{' (active)' if model['active'] else ''}  "
                     f"threshold {model['threshold']:.4f}  runs {', '.join(model['runs'])}")
    return "\n".join(lines)
