"""Growth (and pruning) operators that edit a model in place, keeping what it has learned.

Every operator edits the genotype first, builds the new architecture from it, and moves the old
tensors across along the channel group's dimensions, so ``model.genotype`` always describes the
module exactly. Existing ``nn.Parameter`` objects are kept (their ``.data`` is replaced), so an
optimizer keeps pointing at them; its per-parameter state is resized alongside (new entries 0,
DessiLBI's ``entry_step`` -1).

* :func:`widen` adds channels to a coupled group. New filters get a fresh initialisation on their
  incoming weights and zero outgoing weights in every consumer, so the function does not change
  (in train and eval mode: new channels have their own BatchNorm statistics and nobody reads them).
* :func:`prune` keeps a chosen subset of a group's channels and :func:`remove_block` deletes a
  residual block (both used by the pruning baselines).
* :func:`replicate` appends exact copies of chosen channels (Net2Net's widening,
  ``baselines.literature_growth``, which then splits the consumers' weights among the copies).
* :func:`deepen` appends a block to a stage that computes the identity: for a ResNet a basic block
  whose last BatchNorm weight is 0 (exact in both modes); for a VGG a conv+BN+ReLU whose conv is a
  Dirac kernel and whose BN is the identity in eval mode (in train mode the new BN normalises with
  the batch's statistics, so there the function changes until the layer adapts).

What is specific to a family (its genotype edits, which block deepening appends and how it is made
the identity, which blocks may go, the zero-padding shortcut's routing) is asked of the genotype's
family object (:func:`search_spaces.family_of`); the operators themselves are the same for all.

Example:
    >>> import torch, search_spaces
    >>> model = search_spaces.create_model("resnet8-thin").eval()
    >>> x = torch.randn(2, 3, 32, 32); before = model(x)
    >>> _ = widen(model, "stage1", 4)
    >>> model.genotype.stages[0].width, bool(torch.allclose(model(x), before, atol=1e-6))
    (8, True)
"""

from __future__ import annotations

from typing import cast

import torch
from torch import nn

from search_spaces import FamilyError, Genotype, build_model, family_of, genotype_of

from .graph import ChannelGroup, find_group


def widen(model: nn.Module, group: str | ChannelGroup, n: int,
          optimizer: torch.optim.Optimizer | None = None) -> nn.Module:
    """Add ``n`` channels to a channel group, preserving the network function. Returns ``model``."""
    if n <= 0:
        raise ValueError(f"widen needs n > 0, got {n}")
    group = _resolve(model, group)
    keep = torch.arange(group.width)
    return _resize(model, group, keep, n, optimizer)


def prune(model: nn.Module, group: str | ChannelGroup, keep: torch.Tensor | list[int],
          optimizer: torch.optim.Optimizer | None = None) -> nn.Module:
    """Keep only channels ``keep`` (indices, in the order given) of a group. Returns ``model``."""
    group = _resolve(model, group)
    keep = torch.as_tensor(keep, dtype=torch.long).flatten()
    if keep.numel() == 0 or keep.unique().numel() != keep.numel() or int(keep.max()) >= group.width:
        raise ValueError(f"prune of {group.name} needs distinct indices in [0, {group.width}), "
                         "at least one")
    return _resize(model, group, keep, 0, optimizer)


def replicate(model: nn.Module, group: str | ChannelGroup, sources: torch.Tensor | list[int],
              optimizer: torch.optim.Optimizer | None = None) -> nn.Module:
    """Append one channel per entry of ``sources``, each an exact copy of that existing channel.

    A copy takes its source's incoming weights, BatchNorm parameters and statistics, its routing
    through a zero-padding shortcut and its optimizer state, so it computes the same values in
    train and eval mode. Every consumer reads a copy with the source's weights, so the function
    changes (each source now counts once per copy) until the caller divides the consumers' columns
    among the copies, as Net2Net's widening does. Returns ``model``.
    """
    group = _resolve(model, group)
    sources = torch.as_tensor(sources, dtype=torch.long).flatten()
    if sources.numel() == 0 or int(sources.min()) < 0 or int(sources.max()) >= group.width:
        raise ValueError(f"replicate of {group.name} needs source indices in [0, {group.width}), at least one")
    keep = torch.cat([torch.arange(group.width), sources])
    return _resize(model, group, keep, 0, optimizer)


def deepen(model: nn.Module, stage: int, optimizer: torch.optim.Optimizer | None = None) -> nn.Module:
    """Append an identity-initialised block (ResNet) or conv layer (VGG) to ``stage`` (0-based)."""
    family = family_of(model.genotype)
    genotype = family.deepened(model.genotype, stage)
    fresh = build_model(genotype)
    name = family.block_name(stage, family.stage_depth(genotype, stage) - 1)
    block = fresh.get_submodule(name)
    with torch.no_grad():
        family.make_identity(block)
    ref = next(model.parameters())
    block = block.to(device=ref.device, dtype=ref.dtype)
    block.train(model.training)
    if _is_channels_last(model):
        block = block.to(memory_format=torch.channels_last)
    cast(nn.Sequential, model.get_submodule(name.rpartition(".")[0])).append(block)  # a stage's blocks
    model.genotype = genotype
    if optimizer is not None:
        _add_params(optimizer, model, list(block.parameters()))
    return model


def remove_block(model: nn.Module, stage: int, block: int,
                 optimizer: torch.optim.Optimizer | None = None) -> nn.Module:
    """Delete residual block ``block`` of ``stage`` (pruning baselines). Returns ``model``.

    The family says which blocks may go (:meth:`search_spaces.Family.removable_blocks`; a ResNet keeps
    the downsampling first block of stages 2+, which changes resolution and width), and every stage
    keeps at least one block; ``FamilyError`` (a ``ValueError``) for any other.
    """
    family = family_of(model.genotype)
    genotype = family.without_block(model.genotype, stage, block)
    if family.stage_depth(model.genotype, stage) <= 1:
        raise FamilyError(f"block {block} of stage {stage} cannot be removed: a stage keeps one block")
    name = family.block_name(stage, block)
    removed = model.get_submodule(name)
    if optimizer is not None:
        gone = {id(p) for p in removed.parameters()}
        for group in optimizer.param_groups:
            group["params"] = [p for p in group["params"] if id(p) not in gone]
        for p in removed.parameters():
            optimizer.state.pop(p, None)
    parent, _, index = name.rpartition(".")
    del cast(nn.Sequential, model.get_submodule(parent))[int(index)]
    model.genotype = genotype
    return model


def deepened_genotype(genotype: Genotype, stage: int) -> Genotype:
    """The genotype with one block (ResNet: of the stage's median inner width) or conv (VGG) appended to ``stage``."""
    return family_of(genotype).deepened(genotype, stage)


def stage_depth(genotype: Genotype, stage: int) -> int:
    """Blocks (ResNet) or convs (VGG) in ``stage`` (0-based)."""
    return family_of(genotype).stage_depth(genotype, stage)


# ---------------------------------------------------------------------------------------------------


def _resolve(model: nn.Module, group: str | ChannelGroup) -> ChannelGroup:
    return find_group(model, group) if isinstance(group, str) else group


def _is_channels_last(model: nn.Module) -> bool:
    # A conv with one input channel (e.g. a grayscale stem) is contiguous in both layouts, so look
    # for any weight that is strictly channels_last.
    return any(m.weight.is_contiguous(memory_format=torch.channels_last) and not m.weight.is_contiguous()
               for m in model.modules() if isinstance(m, nn.Conv2d))


def resized_genotype(genotype: Genotype, group: ChannelGroup, keep: torch.Tensor | list[int],
                     n_new: int) -> Genotype:
    """The genotype with the group's width changed (old channels ``keep``, then ``n_new`` new ones) and
    the zero-pad routing kept consistent (:meth:`search_spaces.Family.resized`)."""
    kept = keep.tolist() if torch.is_tensor(keep) else [int(k) for k in keep]
    return family_of(genotype).resized(genotype, group.key, kept, n_new)


def _resize(model: nn.Module, group: ChannelGroup, keep: torch.Tensor, n_new: int,
            optimizer: torch.optim.Optimizer | None) -> nn.Module:
    new_genotype = resized_genotype(genotype_of(model), group, keep, n_new)
    fresh = build_model(new_genotype)
    ref = next(model.parameters())
    keep = keep.to(ref.device)
    channels_last = _is_channels_last(model)
    modules = dict(model.named_modules())
    # (module name, dim) pairs along which the group's channels run
    edits = [(name, 0) for name in group.producers + group.norms]
    edits += [(name, 1) for name in group.consumers if isinstance(modules[name], (nn.Conv2d, nn.Linear))]
    state_of = optimizer.state if optimizer is not None else {}
    for name, dim in edits:
        old_mod, new_mod = modules[name], fresh.get_submodule(name)
        for attr, new_tensor in list(new_mod.named_parameters(recurse=False)) + list(
                new_mod.named_buffers(recurse=False)):
            old = getattr(old_mod, attr)
            if old.dim() == 0 or (dim == 1 and old.dim() == 1):
                continue  # num_batches_tracked; a consumer's bias does not see input channels
            # Producers: new filters keep the fresh module's init (incoming weights, BN defaults).
            # Consumers: the columns reading new channels are zero, so the output is unchanged.
            fill = None if dim == 0 else 0.0
            new_data = _take(old.detach(), dim if old.dim() > 1 else 0, keep, n_new, fill,
                             new_tensor.detach().to(old))
            if channels_last and new_data.dim() == 4:
                # .to() gives the canonical strides that placing a rebuilt model gives (Trainer.place):
                # .contiguous() keeps a 1-input-channel stem's (C, 1, k, k) weight as it is, whose other
                # strides pick another conv kernel, so a resumed run would drift from an uninterrupted one.
                new_data = new_data.to(memory_format=torch.channels_last)
            if isinstance(old, nn.Parameter):
                if old in state_of:
                    _resize_state(state_of[old], tuple(old.shape), dim, keep, n_new, new_data)
                old.data, old.grad = new_data, None
            else:
                setattr(old_mod, attr, new_data)
        _copy_shape_attrs(old_mod, new_mod)
    # Parameter-free routing layers (zero-padding shortcuts) hold their channel routing as a derived
    # buffer: take the new ones.
    for name, op in family_of(new_genotype).graph(new_genotype).nodes(data="op"):
        if op == "route":
            model.set_submodule(name, fresh.get_submodule(name).to(ref.device))
    setattr(model, "genotype", new_genotype)  # nn.Module.__setattr__ is typed for tensors and modules only
    _check_shapes(model, fresh)
    return model


def _take(old: torch.Tensor, dim: int, keep: torch.Tensor, n_new: int, fill: float | None,
          fresh: torch.Tensor | None = None) -> torch.Tensor:
    """``old`` indexed by ``keep`` along ``dim``, then ``n_new`` slices of ``fill`` (or of ``fresh``)."""
    kept = old.index_select(dim, keep)
    if n_new == 0:
        return kept
    if fill is None:
        assert fresh is not None, "new slices need either a fill value or fresh values"
        tail = fresh.narrow(dim, keep.numel(), n_new).to(kept.dtype)
    else:
        shape = list(kept.shape)
        shape[dim] = n_new
        tail = kept.new_full(shape, fill)
    return torch.cat([kept, tail], dim)


def _resize_state(state: dict, old_shape: tuple[int, ...], dim: int, keep: torch.Tensor,
                  n_new: int, param: torch.Tensor) -> None:
    """Resize a parameter's optimizer state like the parameter (now ``param``), in its memory layout:
    the optimizer's foreach kernels run on parameter and state together, and a layout mismatch
    costs a copy every step."""
    for key, value in state.items():
        if not torch.is_tensor(value) or value.dim() == 0:
            continue
        fill = -1 if key == "entry_step" else 0
        if tuple(value.shape) == old_shape:
            taken = _take(value, dim, keep.to(value.device), n_new, fill)
            state[key] = torch.empty_like(param, dtype=taken.dtype).copy_(taken)
        elif dim == 0 and value.dim() == 1 and value.shape[0] == old_shape[0]:
            state[key] = _take(value, 0, keep.to(value.device), n_new, fill)


def _copy_shape_attrs(old: nn.Module, new: nn.Module) -> None:
    for attr in ("in_channels", "out_channels", "num_features", "in_features", "out_features"):
        if hasattr(new, attr):
            setattr(old, attr, getattr(new, attr))


def _check_shapes(model: nn.Module, fresh: nn.Module) -> None:
    """The edited model must have exactly the shapes its genotype builds (catches a missed edit)."""
    expected = {k: v.shape for k, v in fresh.state_dict().items()}
    actual = {k: v.shape for k, v in model.state_dict().items()}
    if expected != actual:
        diff = [k for k in expected.keys() | actual.keys() if expected.get(k) != actual.get(k)]
        raise RuntimeError(f"resize left inconsistent tensors: {sorted(diff)[:5]}")


def _add_params(optimizer: torch.optim.Optimizer, model: nn.Module, params: list[nn.Parameter]) -> None:
    """Register new parameters with the optimizer, in the param group their kind belongs to."""
    penalty_of = {}
    if any("penalty" in g for g in optimizer.param_groups):
        from .dessilbi import dessilbi_param_groups

        for spec in dessilbi_param_groups(model):
            for p in spec["params"]:
                penalty_of[p] = spec.get("penalty")
    for p in params:
        penalty = penalty_of.get(p)
        # Same penalty, and undecayed groups for BatchNorm and biases where the optimizer has one.
        candidates = [g for g in optimizer.param_groups if g.get("penalty") == penalty]
        target = next((g for g in candidates if (g.get("weight_decay") == 0) == (p.dim() <= 1)),
                      candidates[0] if candidates else None)
        if target is None:
            optimizer.add_param_group({"params": [p], "penalty": penalty})
        else:
            target["params"].append(p)
