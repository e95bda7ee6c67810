"""How to spend the cores on a training step: one process with every core as a torch thread,
against DDP processes (torchrun) with one thread each, the same images per step in both; and
the training convs in float32 against bfloat16 (model.train --bf16) on this CPU.

    python bench/train_parallel.py [--checkpoint runs/spikingformer-2-64-e200/last.pt]
                                   [--batch 64] [--steps 8] [--rounds 3]

Prints images/s of a training step (augmented training images, forward, backward, AdamW, the
LIF loops compiled, as model.train --compile trains) for each layout and precision, best of
--rounds rounds of --steps steps after three warm-up steps, and whether the CPU has bfloat16
instructions (without them torch emulates bfloat16 and the convs get slower, not faster). Run
it on a quiet machine: another job on the cores changes every figure. With W processes each
takes batch / W images, so the optimiser sees the same batch size as the single process (batch
norm then normalises over batch / W images per process).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from model.config import Config  # noqa: E402
from model.data import augment, crop_fill, load_split  # noqa: E402
from model.layers import conv_precision  # noqa: E402
from model.lif import compile_loops  # noqa: E402
from model.train import Dist, load_checkpoint, model_from_checkpoint, native_bf16  # noqa: E402


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=str(REPO / "runs/spikingformer-2-64-e200/last.pt"),
                   help="a float training checkpoint (its config and weights)")
    p.add_argument("--data", default=None, help="CIFAR-10 folder or file (default ../shared)")
    p.add_argument("--batch", type=int, default=64, help="images per step, all processes")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--bf16", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    cores = os.cpu_count() or 1
    if args.steps < 1 or args.rounds < 1 or args.batch < cores or args.batch % cores:
        p.error(f"--steps and --rounds must be at least 1, --batch a multiple of the {cores} "
                f"cores (each process takes an equal share)")
    return args


def worker(args):
    """One process of a layout: times the steps, rank 0 prints one JSON line."""
    dev = Dist()
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // dev.world))
    compile_loops(True)
    model = model_from_checkpoint(args.checkpoint)[0].to(memory_format=torch.channels_last)
    model.train()
    net = torch.nn.parallel.DistributedDataParallel(model) if dev.enabled else model
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    train_x, train_y = load_split(args.data, "train")
    per = args.batch // dev.world
    gen = torch.Generator().manual_seed(dev.rank)
    fill = crop_fill(model)
    dtype = torch.bfloat16 if args.bf16 else None

    def step(i):
        b = np.arange(i * args.batch + dev.rank * per, i * args.batch + (dev.rank + 1) * per)
        x = augment(torch.from_numpy(train_x[b]), gen, fill=fill).to(
            torch.float32, memory_format=torch.channels_last)
        with conv_precision(dtype):
            out = net(x)
        loss = F.cross_entropy(out, torch.from_numpy(train_y[b]), label_smoothing=0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for i in range(3):
        step(i)
    rounds = []
    for r in range(args.rounds):
        dev.sum(0.0)  # start each round together
        t = time.perf_counter()
        for i in range(args.steps):
            step(3 + r * args.steps + i)
        rounds.append(dev.sum(time.perf_counter() - t)[0] / dev.world)
    if dev.main:
        best = min(rounds)
        print(json.dumps({"processes": dev.world, "threads": torch.get_num_threads(),
                          "step_s": best / args.steps,
                          "images_per_s": args.batch * args.steps / best}))
    dev.close()


def run_layout(processes: int, argv: list[str]) -> dict:
    me = [str(Path(__file__).resolve()), "--worker", *argv]
    if processes == 1:
        cmd = [sys.executable, *me]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={processes}", *me]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
    if res.returncode or not lines:
        sys.exit(f"error: the {processes}-process layout failed:\n{res.stderr[-2000:]}")
    return json.loads(lines[-1])


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    if args.worker:
        return worker(args)
    cores = os.cpu_count() or 1
    ck = load_checkpoint(args.checkpoint)
    native = {True: "yes", False: "no (emulated)", None: "unknown"}[native_bf16()]
    print(f"{Config.from_dict(ck['config']).name} from {args.checkpoint} (epoch "
          f"{ck.get('epoch')}), {args.batch} images per step, {cores} cores; bfloat16 "
          f"instructions: {native}")
    rows = []
    for bf16 in (False, True):
        for n in [1] + ([cores] if cores > 1 else []):
            r = run_layout(n, argv + (["--bf16"] if bf16 else []))
            rows.append({**r, "convs": "bfloat16" if bf16 else "float32"})
    print("\n| convs | processes x threads | s per step | images/s | against the first |")
    print("| --- | --- | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['convs']} | {r['processes']} x {r['threads']} | {r['step_s']:.3f} | "
              f"{r['images_per_s']:.1f} | {r['images_per_s'] / rows[0]['images_per_s']:.2f}x |")


if __name__ == "__main__":
    main()
