"""The generated training model under DistributedDataParallel (gloo, 2 CPU processes on localhost)."""
from __future__ import annotations

import os
import socket

import pytest

from conftest import ROOT

pytestmark = pytest.mark.slow  # builds and runs full-size networks (pytest -m "not slow" leaves them out)
torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")
mp = pytest.importorskip("torch.multiprocessing")

STEPS = 3


def _worker(rank: int, world: int, port: int, path: str, results):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        from archspec.verify import import_generated

        module = import_generated(path)
        torch.manual_seed(0)  # same initial weights on both ranks
        model = torch.nn.parallel.DistributedDataParallel(module.GoogLeNet(num_classes=10))
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        gen = torch.Generator().manual_seed(100 + rank)  # different data on each rank
        losses, same = [], []
        for _ in range(STEPS):
            x = torch.randn(2, 3, 64, 64, generator=gen)
            y = torch.randint(0, 10, (2,), generator=gen)
            out = model(x)
            assert out._fields == ("logits", "aux_logits2", "aux_logits1")  # torchvision's GoogLeNetOutputs
            loss = module.loss(out, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            flat = torch.cat([p.detach().flatten() for p in model.parameters()])
            gathered = [torch.empty_like(flat) for _ in range(world)]
            dist.all_gather(gathered, flat)
            same.append(all(torch.equal(gathered[0], g) for g in gathered))
            losses.append(loss.item())
        results[rank] = (losses, same)
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_training_with_aux_loss_keeps_ranks_identical():
    manager = mp.Manager()
    results = manager.dict()
    path = str(ROOT / "generated" / "googlenet.py")
    mp.spawn(_worker, args=(2, _free_port(), path, results), nprocs=2, join=True)
    assert sorted(results.keys()) == [0, 1]
    for rank in (0, 1):
        losses, same = results[rank]
        assert len(losses) == STEPS and all(l > 0 for l in losses)
        assert same == [True] * STEPS  # parameters identical across ranks after every step
    assert results[0][0] != results[1][0]  # the ranks really saw different data
