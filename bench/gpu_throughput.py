"""GPU throughput of the project's own training step and embedding path (random weights, synthetic images).

Measures img/s, achieved TFLOP/s and MFU for the seed's configuration and faster settings of the
same math (effective batch 32, AdamW, bf16 autocast): larger micro-batches, torch.compile,
activation checkpointing; plus inference batch sizes, data loading from PNG and from the uint8
cache, and a bf16 matmul to measure the card's peak. Results go to --out as JSON, one section at
a time, so a run cut short still reports what it measured.

    python bench/gpu_throughput.py --out gpu_results.json              # EVA-02 L @448 on CUDA
    python bench/gpu_throughput.py --model eva02_tiny_patch14_224 --image-size 224 --device cpu --quick
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torch.utils.flop_counter import FlopCounterMode

from jaguar_reid.config import Config, ModelConfig
from jaguar_reid.data.dataset import ImageSet
from jaguar_reid.devices import autocast
from jaguar_reid.models import create_reid_model
from jaguar_reid.training.losses import ReIDCriterion
from jaguar_reid.training.optim import build_optimizer
from jaguar_reid.training.session import TrainStep

N_CLASSES = 31


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_peak(device: torch.device) -> float:
    a = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    sync(device)
    start = time.perf_counter()
    for _ in range(10):
        a @ b
    sync(device)
    return 10 * 2 * 8192**3 / (time.perf_counter() - start) / 1e12


def forward_flops(model: torch.nn.Module, image_size: int, device: torch.device) -> float:
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter, autocast(device, "bf16"):
        model(torch.rand(1, 3, image_size, image_size, device=device))
    return float(counter.get_total_flops())


def build(args, device: torch.device, compile_: bool, checkpointing: bool):
    cfg = Config(model=ModelConfig(backbone=args.model, pretrained="none", pooling="gem", head="arcface"))
    torch.manual_seed(0)
    with device:  # initialise the weights on the device: seconds instead of a minute for EVA-02 L
        model = create_reid_model(cfg.model, image_size=args.image_size)
    if checkpointing:
        model.backbone.set_grad_checkpointing(True)
    criterion = ReIDCriterion(cfg, N_CLASSES, model.embedding_dim)
    model.to(device)
    criterion.to(device)
    optimizer = build_optimizer(cfg, model, criterion, device)
    step = TrainStep(model, criterion, device, "bf16")
    return model, optimizer, (torch.compile(step) if compile_ else step)


def train_rate(args, device, micro_batch, accumulation, compile_=False, checkpointing=False) -> dict:
    model, optimizer, step = build(args, device, compile_, checkpointing)
    images = torch.rand(micro_batch, 3, args.image_size, args.image_size, device=device)
    labels = torch.randint(0, N_CLASSES, (micro_batch,), device=device)

    def optimizer_step() -> torch.Tensor:
        for _ in range(accumulation):
            loss, _ = step(images, labels)
            (loss / accumulation).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    first_loss = float(optimizer_step())
    for _ in range(args.warmup - 1):
        optimizer_step()
    sync(device)
    start = time.perf_counter()
    for _ in range(args.steps):
        optimizer_step()
    sync(device)
    seconds = time.perf_counter() - start
    result = {"micro_batch": micro_batch, "accumulation": accumulation, "compile": compile_,
              "grad_checkpointing": checkpointing, "img_per_s": args.steps * micro_batch * accumulation / seconds,
              "first_step_loss": first_loss}
    if device.type == "cuda":
        result["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
        torch.cuda.reset_peak_memory_stats()
    return result  # the model and optimizer go out of scope here; main() empties the CUDA cache


def loss_agreement(args, device) -> dict:
    """Loss of one fixed batch, eager vs compiled, same weights: must agree within bf16 tolerance."""
    losses = {}
    for compile_ in (False, True):
        _, _, step = build(args, device, compile_, False)
        torch.manual_seed(1)  # batch 32, as in train_rate: the compiled graph is cached
        images = torch.rand(32, 3, args.image_size, args.image_size, device=device)
        labels = torch.arange(32, device=device) % N_CLASSES
        with torch.no_grad():
            losses["compiled" if compile_ else "eager"] = float(step(images, labels)[0])
    losses["relative_difference"] = abs(losses["compiled"] - losses["eager"]) / abs(losses["eager"])
    return losses


@torch.no_grad()
def inference_rate(args, device, batch: int, compile_: bool, pure_bf16: bool) -> dict:
    torch.manual_seed(0)
    with device:
        model = create_reid_model(ModelConfig(backbone=args.model, pretrained="none"), image_size=args.image_size).eval()
    if pure_bf16:
        model = model.to(torch.bfloat16)
    forward = torch.compile(model) if compile_ else model
    images = torch.rand(batch, 3, args.image_size, args.image_size, device=device,
                        dtype=torch.bfloat16 if pure_bf16 else torch.float32)
    for _ in range(args.warmup):
        with autocast(device, "bf16"):
            forward(images)
    sync(device)
    start = time.perf_counter()
    for _ in range(args.steps):
        with autocast(device, "bf16"):
            forward(images)
    sync(device)
    rate = args.steps * batch / (time.perf_counter() - start)
    del model, forward
    return {"batch": batch, "compile": compile_, "bf16_weights": pure_bf16, "img_per_s": rate}


def loading_rate(args, workers: int) -> dict:
    """Decode + alpha + resize from PNG cut-outs (no cache) vs reading the uint8 cache."""
    folder = Path(tempfile.mkdtemp())
    rng = np.random.default_rng(0)
    paths = []
    for i in range(args.loader_images):
        array = rng.integers(0, 256, size=(480, 640, 4), dtype=np.uint8)
        paths.append(folder / f"{i}.png")
        Image.fromarray(array, mode="RGBA").save(paths[-1], compress_level=1)
    images = ImageSet(paths, None, args.image_size, "gray", cache=False)
    loader = DataLoader(images, batch_size=32, num_workers=workers, pin_memory=torch.cuda.is_available())
    start = time.perf_counter()
    for _ in loader:
        pass
    decode = len(paths) / (time.perf_counter() - start)
    cache = torch.randint(0, 256, (len(paths), 3, args.image_size, args.image_size), dtype=torch.uint8)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    start = time.perf_counter()
    for i in range(0, len(cache), 32):
        batch = cache[i : i + 32].pin_memory() if device.type == "cuda" else cache[i : i + 32]
        batch.to(device, non_blocking=True).float().div_(255)
    sync(device)
    cached = len(cache) / (time.perf_counter() - start)
    return {"workers": workers, "png_decode_resize_img_per_s": decode, "uint8_cache_to_device_img_per_s": cached}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="eva02_large_patch14_448.mim_m38m_ft_in22k_in1k")
    parser.add_argument("--image-size", type=int, default=448)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--loader-images", type=int, default=256)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks that every section runs")
    parser.add_argument("--out", type=Path, default=Path("gpu_results.json"))
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    results = {"date": date.today().isoformat(), "device": torch.cuda.get_device_name() if device.type == "cuda" else platform.processor(),
               "torch": torch.__version__, "model": args.model, "image_size": args.image_size}

    def save(key, value):
        results[key] = value
        print(json.dumps({key: value}), flush=True)
        args.out.write_text(json.dumps(results, indent=1))

    peak = matmul_peak(device) if device.type == "cuda" else None
    save("bf16_matmul_tflops", peak)
    with device:
        model = create_reid_model(ModelConfig(backbone=args.model, pretrained="none"), image_size=args.image_size).eval()
    flops = forward_flops(model, args.image_size, device)
    del model
    save("forward_gflop_per_image", flops / 1e9)

    def with_mfu(entry, training):
        achieved = entry["img_per_s"] * flops * (3 if training else 1) / 1e12
        entry["tflops"] = achieved
        entry["mfu"] = achieved / peak if peak else None
        return entry

    train_configs = [(4, 8, False, False), (32, 1, False, False), (32, 1, True, False)]
    infer_configs = [(64, False, False), (256, True, False), (256, True, True)]
    if args.quick:
        train_configs, infer_configs = [(4, 2, False, False), (8, 1, True, False)], [(8, False, False), (8, True, True)]
    for micro, accumulation, compile_, checkpointing in train_configs:
        name = f"train_b{micro}x{accumulation}{'_compiled' if compile_ else ''}{'_ckpt' if checkpointing else ''}"
        try:
            save(name, with_mfu(train_rate(args, device, micro, accumulation, compile_, checkpointing), True))
        except torch.OutOfMemoryError as error:
            save(name, {"error": f"out of memory: {str(error).splitlines()[0]}"})
        if device.type == "cuda":
            torch.cuda.empty_cache()
    save("loss_eager_vs_compiled", loss_agreement(args, device))
    for batch, compile_, pure in infer_configs:
        name = f"infer_b{batch}{'_compiled' if compile_ else ''}{'_bf16weights' if pure else ''}"
        try:
            save(name, with_mfu(inference_rate(args, device, batch, compile_, pure), False))
        except torch.OutOfMemoryError as error:
            save(name, {"error": f"out of memory: {str(error).splitlines()[0]}"})
    for workers in ((0, 2) if args.quick else (8, 16)):
        save(f"loading_{workers}_workers", loading_rate(args, workers))

    train_best = max((v["img_per_s"] for k, v in results.items() if k.startswith("train_") and "img_per_s" in v), default=None)
    infer_best = max((v["img_per_s"] for k, v in results.items() if k.startswith("infer_") and "img_per_s" in v), default=None)
    if train_best and infer_best:
        # The seed's protocol: 10 epochs over 1,516 training images plus 379 validation images per epoch.
        save("seed_protocol_estimate_seconds", 10 * (1516 / train_best + 379 / infer_best))


if __name__ == "__main__":
    main()
