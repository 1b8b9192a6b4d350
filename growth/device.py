"""Which torch device a run trains on."""

from __future__ import annotations

import torch

from .config import ConfigError


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA, else MPS, else CPU) or a torch device name; ``ConfigError`` if unusable."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda asked for, but no CUDA device is available")
    return device


def uses_bf16(precision: str, device: torch.device) -> bool:
    """Whether the training step runs under bf16 autocast: ``bf16`` always, ``fp32`` never, ``auto`` on
    a GPU that computes in bf16 natively (Ampere and later), where it is faster at no measured cost."""
    if precision != "auto":
        return precision == "bf16"
    return device.type == "cuda" and torch.cuda.is_bf16_supported(including_emulation=False)
