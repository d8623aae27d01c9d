"""ONNX export of trained runs, and onnxruntime as an embedding engine on CPU.

``export_onnx`` writes one graph from pixels to the final embedding: every member of the
run(s), flip TTA and the ensemble's normalisation included, so ``session.run`` gives exactly what
``Embedder.embed`` gives (a test checks 1e-4). Resizing and the alpha policy stay outside the
graph; the file's metadata says which (``image_size``, ``alpha``) and names the model
(``fingerprint``).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import torch
from torch import nn

from ..errors import RunFolderError
from ..files import atomic_path
from ..runs import Run, as_runs, ensemble_fingerprint

OPSET = 18


class EmbeddingGraph(nn.Module):
    """Images (N, 3, H, W) in [0, 1] -> L2-normalised ensemble embeddings, as ``Embedder.embed`` computes them."""

    def __init__(self, models: list[nn.Module], flip_tta: bool):
        super().__init__()
        self.models, self.flip_tta = nn.ModuleList(models), flip_tta

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Images (N, 3, H, W) in [0, 1] to L2-normalised ensemble embeddings (N, D)."""
        parts = []
        for model in self.models:
            embedding = nn.functional.normalize(model(images), dim=1, eps=1e-12)
            if self.flip_tta:
                mirrored = nn.functional.normalize(model(torch.flip(images, dims=[3])), dim=1, eps=1e-12)
                embedding = nn.functional.normalize(embedding + mirrored, dim=1, eps=1e-12)
            parts.append(embedding)
        return torch.cat(parts, dim=1) / math.sqrt(len(parts))


def _export(module: nn.Module, image_size: int, path: Path, metadata: dict[str, str]) -> Path:
    import onnx

    example = torch.rand(2, 3, image_size, image_size)
    # The TorchScript exporter: with the pinned torch it exports lite0 in 1.5 s, the dynamo one in 9 s.
    with atomic_path(path) as tmp, torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(module.eval(), (example,), str(tmp), input_names=["images"], output_names=["embeddings"],
                          dynamic_axes={"images": {0: "batch"}, "embeddings": {0: "batch"}}, opset_version=OPSET,
                          dynamo=False)
        graph = onnx.load(str(tmp))
        for key, value in metadata.items():
            graph.metadata_props.add(key=key, value=value)
        onnx.save(graph, str(tmp))
    return path


def export_onnx(runs, out: str | Path, flip_tta: bool | None = None) -> Path:
    """Write the run(s) as one ONNX model (see the module docstring); returns ``out``."""
    runs = as_runs(runs)
    members = [m for run in runs for m in run.members]
    sizes = {m.config.data.image_size for m in members}
    if len(sizes) > 1:
        raise RunFolderError(f"runs of different image sizes ({sorted(sizes)}) cannot share one graph")
    flip = runs[0].config.postprocess.flip_tta if flip_tta is None else flip_tta
    graph = EmbeddingGraph([m.load_model() for m in members], flip)
    metadata = {"image_size": str(sizes.pop()), "alpha": members[0].config.data.alpha, "flip_tta": str(flip).lower(),
                "fingerprint": ensemble_fingerprint(runs), "producer": "jaguar-reid"}
    return _export(graph, int(metadata["image_size"]), Path(out), metadata)


class OnnxModule(nn.Module):
    """A module of images (N, 3, H, W) executed by onnxruntime on the CPU: exported to ``path``
    once (from ``module``, at ``image_size``) and reused from there."""

    def __init__(self, path: Path, module: nn.Module | None = None, image_size: int | None = None,
                 threads: int | None = None, metadata: dict[str, str] | None = None):
        import onnxruntime

        super().__init__()
        if not path.exists():
            _export(module, image_size, path, metadata or {})
        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Run the exported graph with onnxruntime on a CPU batch (N, 3, H, W); returns a tensor."""
        return torch.from_numpy(self.session.run(None, {"images": images.float().cpu().numpy()})[0])


def run_onnx_model(run: Run, threads: int | None = None) -> OnnxModule:
    """A single run's model (raw embeddings, as ``ReIDModel``) on onnxruntime, exported once into
    ``RUN/onnx/<fingerprint>.onnx``."""
    fingerprint = run.fingerprint()
    path = run.path / "onnx" / f"{fingerprint}.onnx"
    return OnnxModule(path, None if path.exists() else run.load_model(), run.config.data.image_size, threads,
                      {"fingerprint": fingerprint})
