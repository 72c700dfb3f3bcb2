"""Optimiser, learning-rate schedule and loss of a run, from its `TrainConfig`."""
from __future__ import annotations

import torch
from torch import nn

from road_seg_training.config import TrainConfig
from road_seg_training.losses import PartialLabelCrossEntropy


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD or AdamW; no weight decay on norms and biases (decaying BN scales only hurts)."""
    decay, no_decay = [], []
    for _name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.optim.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    o = cfg.optim
    if o.name == "sgd":
        return torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov and o.momentum > 0)
    return torch.optim.AdamW(groups, lr=o.lr, betas=(o.momentum, 0.999))


def poly_warmup_factor(step: int, total_steps: int, cfg: TrainConfig) -> float:
    """LR multiplier at optimiser step `step`: linear warm-up, then poly decay to min_lr."""
    s = cfg.schedule
    warmup = min(s.warmup_iters, max(total_steps - 1, 0))
    if step < warmup:
        factor = s.warmup_ratio + (1.0 - s.warmup_ratio) * step / warmup
    else:
        progress = (step - warmup) / max(total_steps - warmup, 1)
        factor = (1.0 - min(progress, 1.0)) ** s.power
    return max(factor, s.min_lr / cfg.optim.lr)


def build_scheduler(optimizer: torch.optim.Optimizer, total_steps: int,
                    cfg: TrainConfig) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: poly_warmup_factor(step, total_steps, cfg))


def build_loss(cfg: TrainConfig, device: torch.device) -> nn.Module:
    return PartialLabelCrossEntropy(class_weights=cfg.class_weights or None, focal_gamma=cfg.focal_gamma,
                                    hard_pixel_fraction=cfg.hard_pixel_fraction).to(device)
