"""Batched augmentation and normalisation of uint8 images, on whatever device they live on."""

from __future__ import annotations

from typing import Sequence

import torch


def normalize(
    x_uint8: torch.Tensor, mean: Sequence[float] | torch.Tensor, std: Sequence[float] | torch.Tensor
) -> torch.Tensor:
    """Return float32 ``(x / 255 - mean) / std`` on ``x``'s device, per channel.

    Works for ``[N, C, H, W]`` and ``[C, H, W]`` inputs. ``mean`` and ``std`` may be float32 tensors
    on ``x``'s device already (the trainer makes them once): then nothing is copied to the device,
    whereas Python numbers are copied at every call (a host-device synchronisation on a GPU).

    Example::

        >>> x = torch.full((2, 1, 4, 4), 255, dtype=torch.uint8)
        >>> normalize(x, (0.5,), (0.5,)).unique().tolist()
        [1.0]
    """
    m = torch.as_tensor(mean, dtype=torch.float32, device=x_uint8.device).view(-1, 1, 1)
    s = torch.as_tensor(std, dtype=torch.float32, device=x_uint8.device).view(-1, 1, 1)
    return (x_uint8.to(torch.float32) / 255.0 - m) / s


def augment(
    x_uint8: torch.Tensor, generator: torch.Generator, pad: int = 4, flip: bool = True
) -> torch.Tensor:
    """Random crop (zero padding ``pad``) then random horizontal flip, batched.

    Runs on ``x``'s device with one gather (no per-image Python loop); the
    result is uint8 with the same shape and depends only on the generator
    state. ``generator`` must live on ``x``'s device.

    Example::

        >>> g = torch.Generator().manual_seed(0)
        >>> x = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
        >>> augment(x, g).shape
        torch.Size([8, 3, 32, 32])
    """
    if x_uint8.dim() != 4:
        raise ValueError(f"augment expects [N, C, H, W], got shape {tuple(x_uint8.shape)}")
    if pad < 0:
        raise ValueError(f"pad must be >= 0, got {pad}")
    if generator.device.type != x_uint8.device.type:
        raise ValueError(
            f"generator is on {generator.device} but images are on {x_uint8.device}; "
            "create the generator with torch.Generator(device=x.device)"
        )
    n, dev = x_uint8.shape[0], x_uint8.device
    if pad > 0:
        offsets = torch.randint(0, 2 * pad + 1, (2, n), generator=generator, device=dev)
        off_y, off_x = offsets[0], offsets[1]
    else:
        off_y = off_x = torch.zeros(n, dtype=torch.long, device=dev)
    if flip:
        flip_mask = torch.randint(0, 2, (n,), generator=generator, device=dev).bool()
    else:
        flip_mask = torch.zeros(n, dtype=torch.bool, device=dev)
    return _crop_flip(x_uint8, off_y, off_x, flip_mask, pad)


def _crop_flip(
    x: torch.Tensor, off_y: torch.Tensor, off_x: torch.Tensor, flip_mask: torch.Tensor, pad: int
) -> torch.Tensor:
    """Crop each image at (off_y, off_x) of the ``pad``-padded batch, flipping where masked."""
    n, c, h, w = x.shape
    dev = x.device
    xp = torch.nn.functional.pad(x, (pad, pad, pad, pad)) if pad > 0 else x
    ar_h = torch.arange(h, device=dev)
    ar_w = torch.arange(w, device=dev)
    rows = off_y.view(n, 1) + ar_h.view(1, h)  # [N, H]
    # Flip is folded into the column index (read the crop window backwards),
    # so crop + flip costs a single gather.
    cols = off_x.view(n, 1) + torch.where(flip_mask.view(n, 1), (w - 1 - ar_w).view(1, w), ar_w.view(1, w))
    n_idx = torch.arange(n, device=dev).view(n, 1, 1, 1)
    c_idx = torch.arange(c, device=dev).view(1, c, 1, 1)
    return xp[n_idx, c_idx, rows.view(n, 1, h, 1), cols.view(n, 1, 1, w)]
