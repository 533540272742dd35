"""Sequence parallelism on this machine: time per DiT forward with 1 and N processes, and the bytes each
rank sends per block, measured against the model in docs/scaling.md (parallel/cost.py).

    python3 bench/parallel_forward.py [--ranks 2] [--latent 4x32x32] [--runs 5] [--mode auto]
    python3 bench/parallel_forward.py --device cuda --ranks 8 --preset 14b --latent 21x60x104   # a GPU node

Every rank builds the same model (mid-size by default: dim 512, 8 heads, 4 blocks, ffn 1536) with the
same random weights and inputs; the processes talk over gloo on the CPU (NCCL with ``--device cuda``, one
GPU per rank). Prints the median forward time of each world size, the speed-up, the bytes one rank sent
per block (counted at the collectives) next to the model's figure, and the max relative difference of the
N-process output from the 1-process one. On a shared 2-core VM the CPU figures show the overhead of the
exchange, not a speed-up (two processes share the two cores the single one already used).
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

REPO_ROOT = Path(__file__).resolve().parents[1]
PRESETS = {"cpu": dict(dim=512, heads=8, blocks=4, ffn=1536), "14b": dict(dim=5120, heads=40, blocks=40, ffn=13824)}


def load_pack():
    sys.path.insert(0, str(REPO_ROOT))
    import standalone
    sys.path.remove(str(REPO_ROOT))
    return standalone.load_pack()


def build(args, device):
    import torch
    from poseanimate.models.wan.config import WanDiTConfig
    from poseanimate.models.wan.dit import WanDiT
    p = PRESETS[args.preset]
    config = WanDiTConfig(dim=p["dim"], ffn_dim=p["ffn"], num_heads=p["heads"], num_layers=p["blocks"],
                          in_dim=16, out_dim=16, text_dim=4096, freq_dim=256, image_embed_dim=None)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[args.dtype]
    torch.manual_seed(0)
    model = WanDiT(config, device="cpu", dtype=dtype)
    with torch.no_grad():
        for name, param in model.named_parameters():
            param.normal_(0.0, 0.02 if param.dim() > 1 else 0.1)
    g = torch.Generator().manual_seed(1)
    f, h, w = (int(v) for v in args.latent.split("x"))
    inputs = (torch.randn(1, 16, f, h, w, generator=g), torch.tensor([500.0]), torch.randn(1, 64, 4096, generator=g))
    return model.to(device).eval(), [t.to(device) for t in inputs]


def count_bytes(sent: dict):
    """Wrap the collectives parallel/exchange.py calls, adding what this rank sends to other ranks."""
    import torch.distributed as dist
    from poseanimate.parallel import exchange
    real_a2a, real_gather, real_p2p = dist.all_to_all_single, dist.all_gather, dist.batch_isend_irecv

    def a2a(out, inp, *a, group=None, **k):
        ranks = dist.get_world_size(group)
        sent["a2a"] += inp.numel() * inp.element_size() * (ranks - 1) / ranks
        return real_a2a(out, inp, *a, group=group, **k)

    def gather(parts, tensor, *a, group=None, **k):
        sent["gather"] += tensor.numel() * tensor.element_size() * (len(parts) - 1)
        return real_gather(parts, tensor, *a, group=group, **k)

    def p2p(ops):
        sent["ring"] += sum(op.tensor.numel() * op.tensor.element_size() for op in ops if op.op is dist.isend)
        return real_p2p(ops)

    exchange.dist = SimpleNamespace(all_to_all_single=a2a, all_gather=gather, batch_isend_irecv=p2p,
                                    P2POp=dist.P2POp, isend=dist.isend, irecv=dist.irecv)


def rank_main(rank: int, world: int, port: int, args, out: str) -> None:
    import torch
    import torch.distributed as dist
    load_pack()
    torch.set_num_threads(args.threads)
    device = f"cuda:{rank}" if args.device == "cuda" else "cpu"
    if args.device == "cuda":
        torch.cuda.set_device(rank)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("nccl" if args.device == "cuda" else "gloo", rank=rank, world_size=world)
    from poseanimate.parallel.launch import block_runner
    from poseanimate.parallel.layout import make_layout
    model, (x, t, context) = build(args, device)
    runner = block_runner(make_layout(1, args.mode))
    sent = {"a2a": 0.0, "gather": 0.0, "ring": 0.0}
    count_bytes(sent)
    times = []
    with torch.no_grad():
        for i in range(args.warmup + args.runs):
            if i == args.warmup:
                sent.update(a2a=0.0, gather=0.0, ring=0.0)
            dist.barrier()
            if args.device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            result = model(x, t, context, runner=runner)
            if args.device == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
    if rank == 0:
        torch.save({"times": torch.tensor(times[args.warmup:]), "out": result.cpu(),
                    "sent": torch.tensor([sent["a2a"], sent["gather"], sent["ring"]]) / args.runs},
                   str(Path(out) / f"world{world}.pt"))
    dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    parser.add_argument("--latent", default="4x32x32", help="latent FxHxW (tokens = F * H/2 * W/2)")
    parser.add_argument("--mode", choices=("auto", "ulysses", "ring"), default="auto")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    load_pack()
    import torch
    import torch.multiprocessing as mp
    from poseanimate.parallel.cost import DiTShape, gather_bytes, ring_bytes_per_block, ulysses_bytes_per_block
    if args.device == "cuda" and torch.cuda.device_count() < args.ranks:
        print(f"only {torch.cuda.device_count()} CUDA GPUs here, {args.ranks} ranks asked for: nothing measured")
        return
    p = PRESETS[args.preset]
    f, h, w = (int(v) for v in args.latent.split("x"))
    tokens = f * (h // 2) * (w // 2)
    shape = DiTShape(dim=p["dim"], heads=p["heads"], blocks=p["blocks"], ffn_dim=p["ffn"], image_tokens=0)
    element = 4 if args.dtype == "fp32" else 2
    with tempfile.TemporaryDirectory() as out:
        results = {}
        for world in (1, args.ranks):
            mp.start_processes(rank_main, args=(world, free_port(), args, out), nprocs=world, start_method="spawn")
            results[world] = torch.load(str(Path(out) / f"world{world}.pt"), weights_only=True)
    one, many = results[1], results[args.ranks]
    t1, tn = statistics.median(one["times"].tolist()), statistics.median(many["times"].tolist())
    ring = args.mode == "ring" or (args.mode == "auto" and p["heads"] % args.ranks)
    model_block = (ring_bytes_per_block if ring else ulysses_bytes_per_block)(shape, tokens, args.ranks, element)
    a2a, gathered, ring_sent = (float(v) for v in many["sent"])
    err = ((many["out"] - one["out"]).abs().max() / one["out"].abs().max()).item()
    print(f"preset {args.preset} ({p}), latent {args.latent} = {tokens} tokens, {args.dtype}, {args.device}, "
          f"{'ring' if ring else 'ulysses'}, torch {torch.__version__}, {args.threads} thread(s) per process")
    print(f"forward: 1 process {t1 * 1e3:.1f} ms, {args.ranks} processes {tn * 1e3:.1f} ms, speed-up {t1 / tn:.2f}x")
    print(f"sent per block by rank 0: {(a2a + ring_sent) / p['blocks'] / 1e6:.3f} MB measured, "
          f"{model_block / 1e6:.3f} MB model; final all-gather {gathered / 1e6:.3f} MB measured, "
          f"{gather_bytes(shape, tokens, args.ranks) / 1e6:.3f} MB model")
    print(f"max relative difference {args.ranks} vs 1 process: {err:.2e}")


if __name__ == "__main__":
    main()
