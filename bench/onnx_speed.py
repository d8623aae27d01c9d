"""CPU embedding speed: PyTorch eager against onnxruntime, for a trained run at its image size.

    python bench/onnx_speed.py RUN [--images 64] [--batch 16] [--threads 2]

Times the model alone on random pixels (no decoding), after one warm-up batch, and checks that the
two engines agree.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from jaguar_reid.inference.onnx import run_onnx_model
from jaguar_reid.runs import Run


def images_per_second(model, batches) -> tuple[float, np.ndarray]:
    with torch.no_grad():
        model(batches[0])
        start = time.perf_counter()
        outputs = [model(batch) for batch in batches]
    return sum(len(b) for b in batches) / (time.perf_counter() - start), torch.cat(outputs).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    run = Run(args.run)
    size = run.config.data.image_size
    generator = torch.Generator().manual_seed(0)
    batches = list(torch.rand(args.images, 3, size, size, generator=generator).split(args.batch))
    eager, eager_out = images_per_second(run.load_model(), batches)
    onnx, onnx_out = images_per_second(run_onnx_model(run, threads=args.threads), batches)
    print(json.dumps({"backbone": run.config.model.backbone, "image_size": size, "threads": args.threads,
                      "batch": args.batch, "torch_eager_img_per_s": round(eager, 1), "onnxruntime_img_per_s": round(onnx, 1),
                      "speedup": round(onnx / eager, 2), "max_abs_difference": float(np.abs(eager_out - onnx_out).max())}, indent=1))


if __name__ == "__main__":
    main()
