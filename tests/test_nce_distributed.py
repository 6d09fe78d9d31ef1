"""semantic_nce_loss across 2 gloo processes: same loss as one process on the whole batch, local gradients only."""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from muse_hf.objectives import semantic_nce_loss

WORLD = 2
SIZES = [3, 2]  # uneven local batches
CAPTIONS = [
    "a red circle",
    "a blue square",
    "two green stars",
    "a red circle",
    "a yellow cross",
]  # dup across ranks


def _global_batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(sum(SIZES), 6, generator=g), torch.randn(sum(SIZES), 6, generator=g)


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        images, texts = _global_batch()
        lo, hi = sum(SIZES[:rank]), sum(SIZES[: rank + 1])
        results = {}
        for scaled in (True, False):
            img = images[lo:hi].clone().requires_grad_()
            txt = texts[lo:hi].clone().requires_grad_()
            loss = semantic_nce_loss(img, txt, 3.0, captions=CAPTIONS[lo:hi], scale_grad_by_world_size=scaled)
            loss.backward()
            results[scaled] = (loss.detach(), img.grad, txt.grad)
        not_gathered = semantic_nce_loss(images[lo:hi], texts[lo:hi], 3.0, gather=False)
        torch.save({"results": results, "local": not_gathered}, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.distributed
def test_two_process_gloo_matches_single_process(tmp_path):
    import muse_hf.models.grad_ops  # noqa: F401  (imported before forking so the workers start warm)

    # fork: the workers inherit this process's imports (spawn would re-import torch/transformers: ~4x slower)
    mp.start_processes(
        _worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True, start_method="fork"
    )

    images, texts = _global_batch()
    img = images.clone().requires_grad_()
    txt = texts.clone().requires_grad_()
    reference = semantic_nce_loss(img, txt, 3.0, captions=CAPTIONS)
    reference.backward()

    for rank in range(WORLD):
        out = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        lo, hi = sum(SIZES[:rank]), sum(SIZES[: rank + 1])
        for scaled, (loss, img_grad, txt_grad) in out["results"].items():
            # every process computes the loss of the whole (concatenated) batch
            torch.testing.assert_close(loss, reference.detach(), rtol=1e-6, atol=1e-6)
            # the gradient reaches only this process's rows: the local slice of the global gradient
            # (times the world size by default, so DDP's averaging gives the global-batch gradient)
            factor = WORLD if scaled else 1
            assert img_grad.shape == (SIZES[rank], 6)
            torch.testing.assert_close(img_grad, factor * img.grad[lo:hi], rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(txt_grad, factor * txt.grad[lo:hi], rtol=1e-5, atol=1e-6)
        # gather=False is the plain local loss, which differs from the global one
        local = semantic_nce_loss(images[lo:hi], texts[lo:hi], 3.0)
        torch.testing.assert_close(out["local"], local)
        assert abs(out["local"].item() - reference.item()) > 1e-3
