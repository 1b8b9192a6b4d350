"""DessiLBI: Deep structure splitting Linearized Bregman Iteration as a PyTorch optimizer.

Each penalised weight ``W`` gets a sparse companion ``Γ`` (``gamma``) coupled through
``‖W − Γ‖² / (2ν)``. ``Γ`` follows an inverse-scale-space path: filters (``"group"``) or
entries (``"lasso"``) enter its support from the strongest to the weakest, which is what
the growth engine reads to decide which layers are saturated.

One step (α lr, κ kappa, ν nu, λ lam, β momentum, wd weight decay), as in
``docs/algorithms.md`` §1::

    d = ∇L(W) + wd·W
    m ← β m + d                     (first step: m = d; nesterov: m_eff = d + β m)
    penalised:  W ← W − ακ (m_eff + (W − Γ)/ν)
                V ← V + (α/ν)(W_old − Γ_old)
                Γ ← κ · prox_λ(V)
    unpenalised: W ← W − ακ m_eff

Example:
    >>> import torch
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.LazyLinear(10))
    >>> _ = model(torch.randn(2, 3, 8, 8))
    >>> opt = DessiLBI(dessilbi_param_groups(model), lr=0.1)
    >>> model(torch.randn(2, 3, 8, 8)).sum().backward()
    >>> opt.step()
    >>> opt.support(model[0].weight).shape
    torch.Size([8])
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["DessiLBI", "as_dessilbi", "dessilbi_param_groups", "PENALTIES"]

#: Valid values of the ``"penalty"`` param-group key.
PENALTIES: tuple[str | None, ...] = ("group", "lasso", None)

_CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


class DessiLBI(torch.optim.Optimizer):
    """DessiLBI optimizer with group-lasso (per output filter) or lasso sparse companions.

    Args:
        params: parameters or param-group dicts. Group keys: every hyperparameter below
            plus ``"penalty"`` in ``{"group", "lasso", None}``.
        lr: learning rate α (required).
        kappa: κ; scales Γ and also every parameter's step (as in the reference code).
        nu: ν, coupling strength 1/ν between W and Γ.
        lam: λ, shrinkage threshold of the prox.
        momentum: β, heavy-ball momentum applied to the loss gradient only.
        weight_decay: wd, added to the gradient before momentum.
        nesterov: use ``d + β m`` as the update direction (as ``torch.optim.SGD`` does).
        penalty: default penalty for groups that do not name one.

    State per parameter: ``"momentum_buffer"`` (shape of p), ``"step"`` (0-dim int64 CPU
    tensor holding the *global* step count at this parameter's last update) and, for
    penalised parameters, ``"V"``, ``"gamma"`` (shape of p) and ``"entry_step"`` (int64,
    shape ``[p.shape[0]]`` for group, shape of p for lasso; -1 = never entered supp(Γ)).
    Code that widens or prunes a layer may resize these tensors in place of the old ones
    (new entries 0, new ``entry_step`` entries -1); :meth:`step` uses whatever shapes it finds.

    Parameters whose ``grad`` is None are skipped (their Γ does not move either), as in SGD.

    Example:
        >>> import torch
        >>> w = torch.nn.Parameter(torch.randn(4, 3))
        >>> opt = DessiLBI([w], lr=0.1, penalty="group", lam=0.01, nu=1.0)
        >>> for _ in range(3):
        ...     opt.zero_grad()
        ...     (w ** 2).sum().backward()
        ...     opt.step()
        >>> opt.support(w).shape, opt.entry_steps(w).dtype
        (torch.Size([4]), torch.int64)
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float,
        kappa: float = 1.0,
        nu: float = 100.0,
        lam: float = 1.0,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        penalty: str | None = None,
    ) -> None:
        defaults = dict(
            lr=lr,
            kappa=kappa,
            nu=nu,
            lam=lam,
            momentum=momentum,
            weight_decay=weight_decay,
            nesterov=nesterov,
            penalty=penalty,
        )
        # Global step count; mirrored into state[p]["step"] so state_dict() carries it.
        self._global_step = 0
        self._plans: dict[Any, _GroupPlan] = {}  # see _group_plan; never checkpointed
        super().__init__(params, defaults)

    # ------------------------------------------------------------------ set-up
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a param group after validating its hyperparameters and penalty."""
        super().add_param_group(param_group)
        g = self.param_groups[-1]
        _validate_group(g)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load state; restores the global step and the int64 dtype of ``entry_step``.

        ``torch.optim.Optimizer.load_state_dict`` casts every non-"step" tensor to the
        parameter's dtype (which would turn ``entry_step`` into floats) and may alias the
        tensors of ``state_dict``; both are undone here.
        """
        super().load_state_dict(state_dict)
        for group in self.param_groups:
            _validate_group(group)
        step = 0
        for st in self.state.values():
            for k, v in list(st.items()):
                if isinstance(v, Tensor):
                    # Clone so the loaded optimizer never shares buffers with the source dict.
                    st[k] = v.clone()
            if "entry_step" in st:
                e = st["entry_step"]
                st["entry_step"] = (e.round() if e.is_floating_point() else e).to(torch.int64)
            if "step" in st:
                s = st["step"]
                st["step"] = torch.as_tensor(int(s), dtype=torch.int64)
                step = max(step, int(s))
        self._global_step = step

    def __getstate__(self) -> dict[str, Any]:
        # Optimizer pickles only defaults/state/param_groups; keep the step counter too.
        d = super().__getstate__()
        d["_global_step"] = self._global_step
        return d

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._plans = {}
        if "_global_step" not in self.__dict__:
            self._global_step = max(
                (int(st["step"]) for st in self.state.values() if "step" in st), default=0
            )

    @property
    def step_count(self) -> int:
        """Number of :meth:`step` calls so far (survives ``state_dict`` round-trips)."""
        return self._global_step

    # ------------------------------------------------------------------ step
    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """Perform one DessiLBI step; ``closure`` re-evaluates the loss (optional).

        The whole model is updated in a handful of kernels: parameters are bucketed by everything
        that shapes their update except λ (penalty, lr, κ, ν, momentum, weight decay, Nesterov,
        device, dtype; growth gives every conv its own param group only for its own λ), each bucket
        takes ``torch._foreach_*`` ops, and the group prox runs on all filters of a bucket at once
        with λ per filter. Per tensor the arithmetic is the reference's, op for op, so the result is
        bit-identical on CPU to a per-parameter loop (tests/test_dessilbi.py checks it).
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()

        self._global_step += 1
        t = self._global_step
        step_tensor = torch.tensor(t, dtype=torch.int64)

        buckets: dict[tuple[Any, ...], _Bucket] = {}
        for group in self.param_groups:
            penalty = group["penalty"]
            hyper = (penalty, group["lr"], group["kappa"], group["nu"], group["momentum"],
                     group["weight_decay"], group["nesterov"])
            beta = group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("DessiLBI does not support sparse gradients")
                st = self.state[p]
                fresh_p = "momentum_buffer" not in st
                if fresh_p:
                    _init_state(st, p, penalty)
                else:
                    _check_state(st, p, penalty)
                st["step"] = step_tensor
                key = hyper + (p.device, p.dtype)
                bucket = buckets.get(key)
                if bucket is None:
                    bucket = buckets[key] = _Bucket()
                bucket.params.append(p)
                bucket.grads.append(p.grad)
                bucket.states.append(st)
                bucket.fresh.append(fresh_p or beta == 0)
                bucket.lams.append(group["lam"])
        for key, bucket in buckets.items():
            penalty, lr, kappa, nu, beta, wd, nesterov = key[:7]
            self._update(bucket, penalty, lr, kappa, nu, beta, wd, nesterov, t)
        return loss

    def _update(self, b: _Bucket, penalty: str | None, lr: float, kappa: float, nu: float, beta: float,
                wd: float, nesterov: bool, t: int) -> None:
        """One bucket's update: W, momentum, V, Γ and entry steps of all its parameters."""
        params = b.params
        # d = grad + wd·W (new tensors: never modify .grad in place)
        d = torch._foreach_add(b.grads, params, alpha=wd) if wd != 0 else b.grads

        # Heavy-ball momentum on the loss gradient; the first step seeds m = d.
        bufs = [st["momentum_buffer"] for st in b.states]
        if all(b.fresh):
            torch._foreach_copy_(bufs, d)
        elif not any(b.fresh):
            torch._foreach_mul_(bufs, beta)
            torch._foreach_add_(bufs, d)
        else:
            fresh = [m for m, f in zip(bufs, b.fresh) if f]
            old = [m for m, f in zip(bufs, b.fresh) if not f]
            torch._foreach_copy_(fresh, [x for x, f in zip(d, b.fresh) if f])
            torch._foreach_mul_(old, beta)
            torch._foreach_add_(old, [x for x, f in zip(d, b.fresh) if not f])
        m_eff = torch._foreach_add(d, bufs, alpha=beta) if nesterov else bufs

        if penalty is None:
            torch._foreach_add_(params, m_eff, alpha=-lr * kappa)
            return

        Vs = [st["V"] for st in b.states]
        gammas = [st["gamma"] for st in b.states]
        entries = [st["entry_step"] for st in b.states]
        # Coupling uses W and Γ from before this step for both the W and V updates.
        diff = torch._foreach_sub(params, gammas)
        torch._foreach_add_(params, m_eff, alpha=-lr * kappa)
        torch._foreach_add_(params, diff, alpha=-lr * kappa / nu)
        torch._foreach_add_(Vs, diff, alpha=lr / nu)
        del diff

        if penalty == "lasso":
            # κ·sign(V)·max(|V|−λ, 0) == κ·(V − clamp(V, −λ, λ)): no sign/abs temporaries.
            torch._foreach_copy_(gammas, Vs)
            torch._foreach_clamp_min_(gammas, [-lam for lam in b.lams])
            torch._foreach_clamp_max_(gammas, list(b.lams))
            torch._foreach_sub_(gammas, Vs)
            torch._foreach_mul_(gammas, -kappa)
            # Entry steps of all entries at once, in the (contiguous) order of entry_step.
            support = torch.cat([g.reshape(-1) for g in gammas]).ne(0)
            _mark_entries(entries, [e.numel() for e in entries], support, t)
            return

        # "group": one group per index of dim 0, all filters of the bucket at once. Filters of the
        # same size are stacked (rows in (c, h, w) order, as V.reshape(n, -1) reads them), so that
        # their norms are the very reduction a per-layer loop computes.
        plan = self._group_plan(params, b.lams)
        stacks = [torch.cat([Vs[i] for i in idx]) for idx, _ in plan.stacks]  # new tensors, V's layout
        norms = torch.cat([torch.linalg.vector_norm(s.contiguous().reshape(rows, -1), dim=1)
                           for s, (_, rows) in zip(stacks, plan.stacks)])
        # (‖V‖−λ)₊/‖V‖ == max(0, 1−λ/‖V‖), guarded so 0/0 never yields NaN.
        scale = (norms - plan.lam_rows).clamp_min_(0).div_(norms.clamp_min(_tiny(norms)))
        scale.mul_(kappa)
        offset = 0
        for s, (_, rows) in zip(stacks, plan.stacks):  # Γ = κ·scale·V, filter by filter
            s.mul_(scale[offset:offset + rows].view((rows,) + (1,) * (s.dim() - 1)))
            offset += rows
        torch._foreach_copy_([gammas[i] for i in plan.order],
                             [part for s, (idx, _) in zip(stacks, plan.stacks)
                              for part in s.split([Vs[i].shape[0] for i in idx])])
        _mark_entries([entries[i] for i in plan.order], plan.rows, scale.ne(0), t)

    def _group_plan(self, params: list[Tensor], lams: list[float]) -> _GroupPlan:
        """How a bucket's filters are stacked, and λ per filter on the device: made once per set of
        shapes and λs (a growth event or a new λ makes a new one), so a step copies nothing to the device."""
        key = (params[0].device, params[0].dtype, tuple((tuple(p.shape), lam) for p, lam in zip(params, lams)))
        plan = self._plans.get(key)
        if plan is None:
            by_shape: dict[tuple[int, ...], list[int]] = {}
            for i, p in enumerate(params):
                by_shape.setdefault(tuple(p.shape[1:]), []).append(i)
            stacks = [(idx, sum(params[i].shape[0] for i in idx)) for idx in by_shape.values()]
            order = [i for idx in by_shape.values() for i in idx]
            lam_rows = torch.tensor([lams[i] for i in order for _ in range(params[i].shape[0])],
                                    dtype=params[0].dtype, device=params[0].device)
            plan = _GroupPlan(stacks, order, [params[i].shape[0] for i in order], lam_rows)
            if len(self._plans) >= 16:  # shapes of architectures long gone
                self._plans.clear()
            self._plans[key] = plan
        return plan

    # ------------------------------------------------------------------ queries
    def _group_of(self, p: Tensor) -> dict[str, Any]:
        for g in self.param_groups:
            for q in g["params"]:
                if q is p:
                    return g
        raise ValueError("parameter is not managed by this optimizer")

    def _penalised(self, p: Tensor) -> str:
        pen = self._group_of(p)["penalty"]
        if pen is None:
            raise ValueError("parameter has penalty None: it carries no Γ, so no support/path")
        return pen

    def gamma(self, p: Tensor) -> Tensor:
        """Γ for ``p``; zeros when p's penalty is None or it has not been stepped yet.

        Returns the live state tensor when it exists (do not modify it).
        """
        self._group_of(p)
        st = self.state.get(p, {})
        if "gamma" in st:
            return st["gamma"]
        return torch.zeros_like(p)

    def support(self, p: Tensor) -> Tensor:
        """Bool mask of supp(Γ): shape ``[p.shape[0]]`` (group) or ``p.shape`` (lasso).

        Raises ``ValueError`` for penalty-None parameters (they have no Γ).
        """
        pen = self._penalised(p)
        g = self.gamma(p)
        if pen == "group":
            return g.reshape(g.shape[0], -1).ne(0).any(dim=1)
        return g.ne(0)

    def entry_steps(self, p: Tensor) -> Tensor:
        """Int64 step at which each group/entry first entered supp(Γ); -1 if never.

        Same shape as :meth:`support`. Raises ``ValueError`` for penalty None.
        """
        pen = self._penalised(p)
        st = self.state.get(p, {})
        if "entry_step" in st:
            return st["entry_step"]
        shape = (p.shape[0],) if pen == "group" else p.shape
        return torch.full(shape, -1, dtype=torch.int64, device=p.device)

    def saturation(self, p: Tensor) -> float:
        """|supp Γ| / number of groups (group) or entries (lasso). ValueError for None."""
        s = self.support(p)
        return float(s.float().mean().item()) if s.numel() else 0.0

    def penalised_params(self) -> Iterator[Tensor]:
        """Yield every parameter whose group has a ``"group"`` or ``"lasso"`` penalty."""
        for g in self.param_groups:
            if g["penalty"] is not None:
                yield from g["params"]

    @contextlib.contextmanager
    def sparse_weights(self) -> Iterator[None]:
        """Temporarily set W ← W ⊙ 1[Γ ≠ 0] for every penalised parameter ("the sparse model").

        The group mask is broadcast over the whole filter. W is restored bit-exactly on
        exit, also when the body raises.

        Example:
            >>> import torch
            >>> w = torch.nn.Parameter(torch.ones(2, 2))
            >>> opt = DessiLBI([w], lr=0.1, penalty="lasso")
            >>> with opt.sparse_weights():
            ...     float(w.detach().sum())  # no step yet: Γ = 0, everything masked
            0.0
            >>> float(w.detach().sum())
            4.0
        """
        saved: list[tuple[Tensor, Tensor]] = []
        try:
            with torch.no_grad():
                for p in self.penalised_params():
                    keep = self.support(p)
                    if keep.shape != p.shape:
                        keep = keep.view((keep.shape[0],) + (1,) * (p.dim() - 1))
                    saved.append((p, p.detach().clone()))
                    # masked_fill, not multiply: exact zeros even where W is inf/NaN.
                    p.masked_fill_(~keep, 0)
            yield
        finally:
            with torch.no_grad():
                for p, w in saved:
                    p.copy_(w)


def as_dessilbi(optimizer: torch.optim.Optimizer) -> DessiLBI:
    """``optimizer``, which must be a :class:`DessiLBI` (whatever reads Γ needs one); ``TypeError`` if not.

    Example:
        >>> as_dessilbi(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1))
        Traceback (most recent call last):
        ...
        TypeError: this needs the DessiLBI optimizer (it reads Γ), not SGD
    """
    if not isinstance(optimizer, DessiLBI):
        raise TypeError(f"this needs the DessiLBI optimizer (it reads Γ), not {type(optimizer).__name__}")
    return optimizer


# ---------------------------------------------------------------------- helpers
class _Bucket:
    """Parameters of one step that share every hyperparameter but λ (and their state)."""

    __slots__ = ("params", "grads", "states", "fresh", "lams")

    def __init__(self) -> None:
        self.params: list[Tensor] = []
        self.grads: list[Tensor] = []
        self.states: list[dict[str, Any]] = []
        self.fresh: list[bool] = []
        self.lams: list[float] = []


class _GroupPlan:
    """A group bucket's filters stacked by size: ``stacks`` (indices into the bucket, rows), the
    bucket's indices in stacked order, rows per parameter in that order, λ per row."""

    __slots__ = ("stacks", "order", "rows", "lam_rows")

    def __init__(self, stacks: list[tuple[list[int], int]], order: list[int], rows: list[int],
                 lam_rows: Tensor) -> None:
        self.stacks, self.order, self.rows, self.lam_rows = stacks, order, rows, lam_rows


def _mark_entries(entries: list[Tensor], sizes: list[int], support: Tensor, t: int) -> None:
    """``entry_step`` ← t where the flat ``support`` (the concatenated entries' order) is on for the
    first time; one kernel for all of them, copied back in one more."""
    flat = torch.cat([e.reshape(-1) for e in entries])
    flat.masked_fill_(support.logical_and_(flat.lt(0)), t)
    torch._foreach_copy_(entries, [part.view(e.shape) for part, e in zip(flat.split(sizes), entries)])


def _tiny(t: Tensor) -> float:
    return torch.finfo(t.dtype).tiny


def _validate_group(g: dict[str, Any]) -> None:
    if g["penalty"] not in PENALTIES:
        raise ValueError(f"penalty must be one of {PENALTIES}, got {g['penalty']!r}")
    if g["lr"] < 0:
        raise ValueError(f"invalid lr {g['lr']}")
    if g["kappa"] < 0:
        raise ValueError(f"invalid kappa {g['kappa']}")
    if g["nu"] <= 0:
        raise ValueError(f"invalid nu {g['nu']} (must be > 0)")
    if g["lam"] < 0:
        raise ValueError(f"invalid lam {g['lam']}")
    if not 0 <= g["momentum"] < 1:
        raise ValueError(f"invalid momentum {g['momentum']}")
    if g["weight_decay"] < 0:
        raise ValueError(f"invalid weight_decay {g['weight_decay']}")
    if g["nesterov"] and g["momentum"] == 0:
        raise ValueError("nesterov needs momentum > 0")
    if g["penalty"] == "group":
        for p in g["params"]:
            if p.dim() == 0:
                raise ValueError("penalty 'group' needs parameters with at least one dimension")


def _init_state(st: dict[str, Any], p: Tensor, penalty: str | None) -> None:
    st["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
    if penalty is not None:
        st["V"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        st["gamma"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        shape = (p.shape[0],) if penalty == "group" else p.shape
        st["entry_step"] = torch.full(shape, -1, dtype=torch.int64, device=p.device)


def _check_state(st: dict[str, Any], p: Tensor, penalty: str | None) -> None:
    # A layer resized without its optimizer state would otherwise fail deep inside foreach.
    keys = ("momentum_buffer",) if penalty is None else ("momentum_buffer", "V", "gamma")
    for k in keys:
        if k not in st:
            if k in ("V", "gamma"):
                st[k] = torch.zeros_like(p)  # penalty switched on later: start from 0
                continue
            raise RuntimeError(f"DessiLBI state of a parameter is missing {k!r}")
        if st[k].shape != p.shape:
            raise RuntimeError(
                f"DessiLBI state {k!r} has shape {tuple(st[k].shape)} but the parameter has "
                f"{tuple(p.shape)}: resize the optimizer state together with the layer"
            )
    if penalty is not None:
        shape = (p.shape[0],) if penalty == "group" else p.shape
        e = st.get("entry_step")
        if e is None or e.shape != shape:
            if e is None:
                st["entry_step"] = torch.full(shape, -1, dtype=torch.int64, device=p.device)
            else:
                raise RuntimeError(
                    f"DessiLBI state 'entry_step' has shape {tuple(e.shape)}, expected {tuple(shape)}"
                )


def dessilbi_param_groups(
    model: nn.Module,
    *,
    conv: str | None = "group",
    hidden_linear: str | None = "lasso",
    classifier: str | None = None,
    other: str | None = None,
    **hyper: Any,
) -> list[dict[str, Any]]:
    """Split ``model``'s parameters into DessiLBI param groups by role.

    Roles: weights of ``nn.Conv1d/2d/3d`` -> ``conv``; weights of ``nn.Linear`` layers
    other than the classifier -> ``hidden_linear``; the classifier (the LAST ``nn.Linear``
    in registration order) weight -> ``classifier``; everything else (biases, BatchNorm,
    ``ConvTranspose`` weights, whose dim 0 is the *input* channel, unknown modules) ->
    ``other``. A parameter shared by several modules gets the role of its first owner.
    One group per distinct penalty, in order of first appearance, each carrying ``hyper``.

    Example:
        >>> from torch import nn
        >>> m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(),
        ...                   nn.Linear(4, 8), nn.Linear(8, 2))
        >>> [(g["penalty"], len(g["params"])) for g in dessilbi_param_groups(m, lr=0.1)]
        [('group', 1), (None, 6), ('lasso', 1)]
    """
    for name, pen in (("conv", conv), ("hidden_linear", hidden_linear),
                      ("classifier", classifier), ("other", other)):
        if pen not in PENALTIES:
            raise ValueError(f"{name} penalty must be one of {PENALTIES}, got {pen!r}")
    if "params" in hyper or "penalty" in hyper:
        raise ValueError("pass penalties through conv=/hidden_linear=/classifier=/other=")

    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    head = linears[-1] if linears else None

    buckets: dict[str | None, list[Tensor]] = {}
    seen: set[int] = set()
    for module in model.modules():
        for pname, p in module.named_parameters(recurse=False):
            if id(p) in seen:
                continue
            seen.add(id(p))
            if pname == "weight" and isinstance(module, _CONV_TYPES):
                pen = conv
            elif pname == "weight" and module is head:
                pen = classifier
            elif pname == "weight" and isinstance(module, nn.Linear):
                pen = hidden_linear
            else:
                pen = other
            buckets.setdefault(pen, []).append(p)
    return [{"params": ps, "penalty": pen, **hyper} for pen, ps in buckets.items() if ps]
