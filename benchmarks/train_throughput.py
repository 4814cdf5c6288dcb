"""Training throughput: the Lightning recipe against a plain PyTorch loop.

Both train the same model (same initial weights, optimizer, schedule, gradient clipping and CTC
loss) over the same pre-built batches, so the ratio isolates what Lightning adds: its
loop, hooks and optimizer/clipping plumbing. Target: overhead <= 10%.

    .venv/bin/python benchmarks/train_throughput.py [--model lstm_small] [--batches 40]
"""

from __future__ import annotations

import argparse
import copy
import time

import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from torch.utils.data import DataLoader

from asr.features.config import FeatureConfig
from asr.text.vocab import CharVocab
from asr.train.config import CONF_DIR
from asr.train.module import CTCModule, build_optimizer


def make_batches(n: int, dim: int, seed: int = 0) -> list[dict]:
    """Batches shaped like bucketed speech: 16 utterances of 250-300 frames, 40-60 labels."""
    gen = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(n):
        lengths = torch.randint(250, 301, (16,), generator=gen)
        lengths[0] = 300
        labels = torch.randint(40, 61, (16,), generator=gen)
        batches.append({
            "features": torch.randn(16, 300, dim, generator=gen),
            "feature_lengths": lengths,
            "tokens": torch.randint(1, 29, (16, int(labels.max())), generator=gen),
            "token_lengths": labels,
            "utt_ids": [str(i) for i in range(16)],
        })
    return batches


def plain_loop(module: CTCModule, batches: list[dict], clip: float) -> float:
    optimizer, scheduler = build_optimizer(module.parameters(), module.hparams.optim,
                                           len(batches))
    module.train()
    start = time.perf_counter()
    for batch in batches:
        loss, _, _ = module._loss(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), clip)
        optimizer.step()
        scheduler.step()
    return time.perf_counter() - start


class _TimedCallback(pl.Callback):
    """Times the training batches only (not Trainer start-up or teardown)."""

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.seconds = time.perf_counter() - self.start


def lightning_loop(module: CTCModule, batches: list[dict], clip: float) -> float:
    timer = _TimedCallback()
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_epochs=1, gradient_clip_val=clip,
                         logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0,
                         limit_val_batches=0, callbacks=[timer])
    loader = DataLoader(batches, batch_size=None, shuffle=False)
    trainer.fit(module, train_dataloaders=loader)
    return timer.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="lstm_small", help="a conf/model preset")
    parser.add_argument("--features", default="fbank_stack3", help="a conf/features preset")
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[f"model={args.model}", f"features={args.features}"])
    features = OmegaConf.to_container(cfg.features, resolve=True)
    optim = OmegaConf.to_container(cfg.optim, resolve=True)
    dim = FeatureConfig(**features).dim
    torch.manual_seed(0)
    reference = CTCModule(OmegaConf.to_container(cfg.model), features, CharVocab().tokens, optim)
    batches = make_batches(args.batches, dim)
    frames = sum(int(b["feature_lengths"].sum()) for b in batches)
    clip = float(cfg.trainer.gradient_clip_val)

    # Warm-up: one pass each so allocator and kernels are primed for both.
    plain_loop(copy.deepcopy(reference), batches[:3], clip)
    t_plain = plain_loop(copy.deepcopy(reference), batches, clip)
    t_light = lightning_loop(copy.deepcopy(reference), batches, clip)
    print(f"model={args.model} features={args.features} batches={args.batches} "
          f"frames={frames} threads={args.threads}")
    print(f"plain PyTorch loop: {frames / t_plain:10.0f} frames/s ({t_plain:.2f} s)")
    print(f"Lightning recipe:   {frames / t_light:10.0f} frames/s ({t_light:.2f} s)")
    print(f"Lightning / plain time ratio: {t_light / t_plain:.3f} "
          f"(overhead {100 * (t_light / t_plain - 1):+.1f}%, target <= +10%)")


if __name__ == "__main__":
    main()
