"""Tests for growth.dessilbi: exact step against an independent reference, Γ path queries,
sparse-model context, param-group assignment, state_dict round trip, resized parameters."""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch
from torch import nn

from growth.dessilbi import DessiLBI, dessilbi_param_groups

# --------------------------------------------------------------------------- reference


def _ref_prox(V: torch.Tensor, penalty: str, kappa: float, lam: float) -> torch.Tensor:
    """Straightforward prox: explicit loop over filters for the group lasso."""
    if penalty == "lasso":
        return kappa * torch.sign(V) * torch.clamp(V.abs() - lam, min=0.0)
    G = torch.zeros_like(V)
    for i in range(V.shape[0]):
        v = V[i].flatten()
        nrm = float(torch.sqrt((v * v).sum()))
        if nrm > 0:
            G[i] = kappa * max(0.0, 1.0 - lam / nrm) * V[i]
    return G


def _ref_run(W0, grads, penalty, *, lr, kappa, nu, lam, momentum, wd, nesterov):
    """Reference DessiLBI on one tensor, written from the formulas in docs/algorithms.md §1."""
    W = W0.clone()
    V = torch.zeros_like(W)
    G = torch.zeros_like(W)
    m = None
    for g in grads:
        d = g + wd * W
        m = d.clone() if m is None else momentum * m + d
        m_eff = d + momentum * m if nesterov else m
        if penalty is None:
            W = W - lr * kappa * m_eff
        else:
            W_new = W - lr * kappa * (m_eff + (W - G) / nu)
            V = V + (lr / nu) * (W - G)
            G = _ref_prox(V, penalty, kappa, lam)
            W = W_new
    return W, G


SHAPES = [(6, 3, 3, 3), (5, 7), (4,)]


@pytest.mark.parametrize("penalty", ["group", "lasso", None])
@pytest.mark.parametrize("nesterov", [False, True])
def test_matches_reference(penalty, nesterov):
    torch.manual_seed(0)
    hyper = dict(lr=0.3, kappa=1.5, nu=2.0, lam=0.4, momentum=0.9, wd=1e-2, nesterov=nesterov)
    # Filters of very different scales so some enter supp(Γ) within 5 steps and some don't.
    W0s = []
    for s in SHAPES:
        w = torch.randn(s, dtype=torch.float64)
        w *= torch.linspace(0.05, 2.0, s[0], dtype=torch.float64).view((-1,) + (1,) * (len(s) - 1))
        W0s.append(w)
    steps = 5
    grads = [[torch.randn(s, dtype=torch.float64) * 0.3 for s in SHAPES] for _ in range(steps)]

    params = [nn.Parameter(w.clone()) for w in W0s]
    opt = DessiLBI(
        params, lr=hyper["lr"], kappa=hyper["kappa"], nu=hyper["nu"], lam=hyper["lam"],
        momentum=hyper["momentum"], weight_decay=hyper["wd"], nesterov=nesterov, penalty=penalty,
    )
    for t in range(steps):
        for p, g in zip(params, grads[t]):
            p.grad = g.clone()
        opt.step()

    n_support = 0
    for i, p in enumerate(params):
        W_ref, G_ref = _ref_run(W0s[i], [g[i] for g in grads], penalty, **hyper)
        torch.testing.assert_close(p.detach(), W_ref, atol=1e-9, rtol=1e-9)
        torch.testing.assert_close(opt.gamma(p), G_ref, atol=1e-9, rtol=1e-9)
        if penalty is not None:
            n_support += int(opt.support(p).sum())
    if penalty is not None:
        total = sum(s[0] if penalty == "group" else math.prod(s) for s in SHAPES)
        assert 0 < n_support < total, "test should exercise both in- and out-of-support groups"
    assert opt.step_count == steps


def test_float32_close_to_reference_and_grads_untouched():
    torch.manual_seed(1)
    W0 = torch.randn(8, 4, 3, 3)
    grads = [torch.randn_like(W0) for _ in range(5)]
    p = nn.Parameter(W0.clone())
    opt = DessiLBI([p], lr=0.1, nu=1.0, lam=0.5, weight_decay=5e-4, penalty="group")
    for g in grads:
        p.grad = g.clone()
        opt.step()
        torch.testing.assert_close(p.grad, g, atol=0, rtol=0)  # the gradient is not modified
    W_ref, G_ref = _ref_run(W0.double(), [g.double() for g in grads], "group", lr=0.1, kappa=1.0,
                            nu=1.0, lam=0.5, momentum=0.9, wd=5e-4, nesterov=False)
    torch.testing.assert_close(p.detach().double(), W_ref, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(opt.gamma(p).double(), G_ref, atol=1e-6, rtol=1e-6)


def test_mixed_groups_and_skipped_params():
    torch.manual_seed(2)
    a, b, c = (nn.Parameter(torch.randn(3, 2)) for _ in range(3))
    opt = DessiLBI([{"params": [a], "penalty": "group", "lam": 0.0},
                    {"params": [b], "penalty": "lasso", "lr": 0.05},
                    {"params": [c]}], lr=0.1, nu=1.0)
    c0 = c.detach().clone()
    a.grad = torch.randn(3, 2)
    b.grad = torch.randn(3, 2)
    opt.step()  # c has no grad: skipped, no state
    assert torch.equal(c.detach(), c0) and len(opt.state[c]) == 0
    # lam = 0: every non-zero filter is in the support right after the first step
    assert opt.support(a).all() and (opt.entry_steps(a) == 1).all()
    assert torch.equal(opt.gamma(c), torch.zeros_like(c))
    with pytest.raises(ValueError):
        opt.support(c)
    with pytest.raises(ValueError):
        opt.gamma(nn.Parameter(torch.zeros(1)))


def test_no_nan_at_zero():
    for lam in (0.0, 1.0):
        p = nn.Parameter(torch.zeros(3, 4))
        q = nn.Parameter(torch.zeros(3, 4))
        opt = DessiLBI([{"params": [p], "penalty": "group"}, {"params": [q], "penalty": "lasso"}],
                       lr=0.1, lam=lam)
        for _ in range(3):
            p.grad = torch.zeros(3, 4)
            q.grad = torch.zeros(3, 4)
            opt.step()
        for x in (p, q):
            assert torch.isfinite(x).all() and torch.isfinite(opt.gamma(x)).all()
            assert not opt.support(x).any() and (opt.entry_steps(x) == -1).all()


# --------------------------------------------------------------------------- Γ path


def _toy_path(penalty: str):
    """Quadratic loss 0.5‖W − T‖² with target filters of increasing norm."""
    torch.manual_seed(3)
    n = 6
    scales = torch.tensor([0.2, 1.5, 0.6, 3.0, 1.0, 0.05])
    T = torch.randn(n, 4, 3, 3)
    T = T / T.flatten(1).norm(dim=1).view(n, 1, 1, 1) * scales.view(n, 1, 1, 1)
    if penalty == "lasso":
        T = T[:, 0, 0, :]  # (6, 3) entries, scaled per row
    p = nn.Parameter(torch.zeros_like(T))
    opt = DessiLBI([p], lr=0.1, kappa=1.0, nu=10.0, lam=1.0, momentum=0.9, penalty=penalty)
    for _ in range(300):
        opt.zero_grad()
        (0.5 * (p - T).pow(2).sum()).backward()
        opt.step()
    return p, T, opt


def test_inverse_scale_space_order_group():
    p, T, opt = _toy_path("group")
    sup, entry, g = opt.support(p), opt.entry_steps(p), opt.gamma(p)
    assert sup.dtype == torch.bool and sup.shape == (6,)
    assert entry.dtype == torch.int64 and entry.shape == (6,)
    # support is exactly "filter of Γ non-zero"; every supported filter has an entry step
    assert torch.equal(sup, g.flatten(1).abs().sum(1) > 0)
    assert torch.equal(entry >= 0, sup)  # V grows monotonically here: nothing leaves
    assert opt.saturation(p) == pytest.approx(sup.float().mean().item())
    assert 0 < sup.sum() < 6, "toy should leave the weakest filters out"
    # inverse scale space: larger filters enter first
    norms = T.flatten(1).norm(dim=1)
    order = torch.argsort(norms, descending=True)
    e = entry[order].tolist()
    entered = [x for x in e if x >= 0]
    assert entered == sorted(entered) and e[: len(entered)] == entered
    assert entry[order[0]] < entry[order[len(entered) - 1]]


def test_inverse_scale_space_order_lasso():
    p, T, opt = _toy_path("lasso")
    sup, entry = opt.support(p), opt.entry_steps(p)
    assert sup.shape == p.shape and entry.shape == p.shape
    assert torch.equal(sup, opt.gamma(p) != 0) and torch.equal(entry >= 0, sup)
    mags = T.abs().flatten()
    e = entry.flatten()
    inside = e >= 0
    assert 0 < inside.sum() < e.numel()
    # every entry in the support is larger than every one outside, and bigger enters earlier
    assert mags[inside].min() > mags[~inside].max()
    order = torch.argsort(mags[inside], descending=True)
    assert torch.all(e[inside][order].diff() >= 0)
    assert opt.saturation(p) == pytest.approx(inside.float().mean().item())


# --------------------------------------------------------------------------- sparse model


def test_sparse_weights_masks_and_restores():
    p, _, opt = _toy_path("group")
    q = nn.Parameter(torch.randn(6, 3))
    opt.add_param_group({"params": [q], "penalty": "lasso", "lam": 0.3, "nu": 1.0})
    free = nn.Parameter(torch.randn(4))
    opt.add_param_group({"params": [free], "penalty": None})
    for _ in range(3):
        opt.zero_grad()
        (0.5 * (p.pow(2).sum() + q.pow(2).sum() + free.sum())).backward()
        opt.step()
    saved = [x.detach().clone() for x in (p, q, free)]
    sup_p, sup_q = opt.support(p), opt.support(q)
    assert sup_q.any() and not sup_q.all()
    with opt.sparse_weights():
        assert torch.all(p[~sup_p] == 0) and torch.equal(p[sup_p], saved[0][sup_p])
        assert torch.all(q[~sup_q] == 0) and torch.equal(q[sup_q], saved[1][sup_q])
        assert torch.equal(free, saved[2])  # unpenalised: untouched
    for x, s in zip((p, q, free), saved):
        assert torch.equal(x.detach(), s)
    with pytest.raises(RuntimeError, match="boom"):
        with opt.sparse_weights():
            raise RuntimeError("boom")
    for x, s in zip((p, q, free), saved):
        assert torch.equal(x.detach(), s)


# --------------------------------------------------------------------------- param groups


class _Small(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.hidden = nn.Linear(4, 8)
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn(self.conv(x)))
        x = self.conv2(x).mean(dim=(2, 3))
        return self.fc(torch.relu(self.hidden(x)))


def test_param_groups_assignment():
    m = _Small()
    groups = dessilbi_param_groups(m, lr=0.1, nu=50.0)
    by_id = {}
    for g in groups:
        assert g["params"], "no empty groups"
        assert g["lr"] == 0.1 and g["nu"] == 50.0
        for p in g["params"]:
            assert id(p) not in by_id, "each parameter once"
            by_id[id(p)] = g["penalty"]
    assert set(by_id) == {id(p) for p in m.parameters()}
    assert by_id[id(m.conv.weight)] == "group" and by_id[id(m.conv2.weight)] == "group"
    assert by_id[id(m.hidden.weight)] == "lasso"
    assert by_id[id(m.fc.weight)] is None
    for p in (m.conv.bias, m.bn.weight, m.bn.bias, m.hidden.bias, m.fc.bias):
        assert by_id[id(p)] is None
    # overrides and a usable optimizer
    groups = dessilbi_param_groups(m, conv="lasso", classifier="group")
    pen = {id(p): g["penalty"] for g in groups for p in g["params"]}
    assert pen[id(m.conv.weight)] == "lasso" and pen[id(m.fc.weight)] == "group"
    opt = DessiLBI(dessilbi_param_groups(m), lr=0.1)
    m(torch.randn(2, 3, 8, 8)).sum().backward()
    opt.step()
    assert opt.support(m.conv.weight).shape == (4,)
    with pytest.raises(ValueError):
        dessilbi_param_groups(m, conv="l1")


# --------------------------------------------------------------------------- state dict


def _train(model, opt, batches):
    for x, y in batches:
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()


def test_state_dict_round_trip():
    torch.manual_seed(4)
    batches = [(torch.randn(8, 3, 8, 8), torch.randint(0, 3, (8,))) for _ in range(10)]
    m1 = _Small()
    kw = dict(lr=0.2, nu=1.0, lam=0.05, weight_decay=1e-3, nesterov=True)
    opt1 = DessiLBI(dessilbi_param_groups(m1), **kw)
    _train(m1, opt1, batches[:5])

    buf = io.BytesIO()
    torch.save({"model": m1.state_dict(), "opt": opt1.state_dict()}, buf)
    buf.seek(0)
    ckpt = torch.load(buf)
    m2 = _Small()
    m2.load_state_dict(ckpt["model"])
    opt2 = DessiLBI(dessilbi_param_groups(m2), lr=1.0)  # hyperparameters come from the checkpoint
    opt2.load_state_dict(ckpt["opt"])
    assert opt2.step_count == 5
    assert opt2.entry_steps(m2.conv.weight).dtype == torch.int64
    assert torch.equal(opt2.entry_steps(m2.conv.weight), opt1.entry_steps(m1.conv.weight))

    _train(m1, opt1, batches[5:])
    _train(m2, opt2, batches[5:])
    assert opt1.step_count == opt2.step_count == 10
    for (n1, p1), (_, p2) in zip(m1.named_parameters(), m2.named_parameters()):
        assert torch.equal(p1, p2), n1
        assert torch.equal(opt1.gamma(p1), opt2.gamma(p2)), n1
    for p1, p2 in zip(opt1.penalised_params(), opt2.penalised_params()):
        assert torch.equal(opt1.entry_steps(p1), opt2.entry_steps(p2))
    assert any(opt1.support(p).any() for p in opt1.penalised_params())


def test_load_does_not_alias_source():
    p = nn.Parameter(torch.randn(3, 2))
    opt = DessiLBI([p], lr=0.1, penalty="lasso", lam=0.0)
    p.grad = torch.ones(3, 2)
    opt.step()
    q = nn.Parameter(p.detach().clone())
    opt2 = DessiLBI([q], lr=0.1, penalty="lasso", lam=0.0)
    opt2.load_state_dict(opt.state_dict())  # in memory, no serialisation
    before = opt.state[p]["V"].clone()
    q.grad = torch.ones(3, 2)
    opt2.step()
    assert torch.equal(opt.state[p]["V"], before)


# --------------------------------------------------------------------------- resized params


@pytest.mark.parametrize("penalty", ["group", "lasso", None])
def test_param_grows_between_steps(penalty):
    torch.manual_seed(5)
    W0 = torch.randn(4, 3, dtype=torch.float64)
    p = nn.Parameter(W0.clone())
    ref = nn.Parameter(W0.clone())  # never grows: its rows must match p's leading rows
    kw = dict(lr=0.2, nu=1.0, lam=0.3, weight_decay=1e-2, penalty=penalty)
    opt, opt_ref = DessiLBI([p], **kw), DessiLBI([ref], **kw)
    for _ in range(3):
        g = torch.randn(4, 3, dtype=torch.float64)
        p.grad, ref.grad = g.clone(), g.clone()
        opt.step()
        opt_ref.step()

    # widen p from 4 to 6 rows and pad its state the way the growth code does
    p.data = torch.cat([p.data, torch.randn(2, 3, dtype=torch.float64)])
    st = opt.state[p]
    for k in ("momentum_buffer", "V", "gamma"):
        if k in st:
            st[k] = torch.cat([st[k], torch.zeros(2, 3, dtype=torch.float64)])
    if "entry_step" in st:
        e = st["entry_step"]
        pad = torch.full((2,) + tuple(e.shape[1:]), -1, dtype=torch.int64)
        st["entry_step"] = torch.cat([e, pad])
    p.grad = None

    for _ in range(3):
        g = torch.randn(6, 3, dtype=torch.float64)
        p.grad, ref.grad = g.clone(), g[:4].clone()
        opt.step()
        opt_ref.step()
    assert p.shape == (6, 3) and torch.isfinite(p).all()
    torch.testing.assert_close(p.detach()[:4], ref.detach(), atol=1e-12, rtol=0)
    torch.testing.assert_close(opt.gamma(p)[:4], opt_ref.gamma(ref), atol=1e-12, rtol=0)
    if penalty is not None:
        assert opt.support(p).shape[0] == 6
        assert torch.equal(opt.entry_steps(p)[:4], opt_ref.entry_steps(ref))


def test_unresized_state_raises_clearly():
    p = nn.Parameter(torch.randn(4, 3))
    opt = DessiLBI([p], lr=0.1, penalty="group")
    p.grad = torch.randn(4, 3)
    opt.step()
    p.data = torch.randn(5, 3)
    p.grad = torch.randn(5, 3)
    with pytest.raises(RuntimeError, match="resize the optimizer state"):
        opt.step()


def test_invalid_arguments():
    p = nn.Parameter(torch.randn(2))
    with pytest.raises(ValueError):
        DessiLBI([p], lr=0.1, penalty="l2")
    with pytest.raises(ValueError):
        DessiLBI([p], lr=0.1, nu=0.0)
    with pytest.raises(ValueError):
        DessiLBI([p], lr=0.1, momentum=0.0, nesterov=True)
    with pytest.raises(ValueError):
        DessiLBI([nn.Parameter(torch.tensor(1.0))], lr=0.1, penalty="group")


def test_closure_and_copy():
    p = nn.Parameter(torch.randn(3, 2))
    opt = DessiLBI([p], lr=0.1, penalty="group")

    def closure():
        opt.zero_grad()
        loss = p.pow(2).sum()
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert isinstance(loss, torch.Tensor)
    assert copy.deepcopy(opt).step_count == 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    torch.manual_seed(6)
    W0 = torch.randn(6, 3, 3, 3)
    grads = [torch.randn_like(W0) for _ in range(4)]
    out = []
    for dev in ("cpu", "cuda"):
        p = nn.Parameter(W0.clone().to(dev))
        opt = DessiLBI([p], lr=0.2, nu=1.0, lam=0.5, weight_decay=1e-3, penalty="group")
        for g in grads:
            p.grad = g.to(dev)
            opt.step()
        with opt.sparse_weights():
            sparse = p.detach().cpu().clone()
        out.append((p.detach().cpu(), opt.gamma(p).cpu(), opt.entry_steps(p).cpu(), sparse))
    for a, b in zip(*out):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


# --------------------------------------------------------------------------- the batched step


class _PerParameterDessiLBI(DessiLBI):
    """The step as it was before it was batched: one param group at a time, the group prox one
    conv at a time (about ten kernels per conv). The batched step must match it bit for bit."""

    @torch.no_grad()
    def step(self, closure=None):
        from growth.dessilbi import _check_state, _init_state, _tiny

        self._global_step += 1
        t = self._global_step
        step_tensor = torch.tensor(t, dtype=torch.int64)
        for group in self.param_groups:
            penalty = group["penalty"]
            lr, kappa, nu = group["lr"], group["kappa"], group["nu"]
            lam, beta, wd = group["lam"], group["momentum"], group["weight_decay"]
            params, grads, states, is_fresh = [], [], [], []
            for p in group["params"]:
                if p.grad is None:
                    continue
                st = self.state[p]
                fresh_p = "momentum_buffer" not in st
                _init_state(st, p, penalty) if fresh_p else _check_state(st, p, penalty)
                st["step"] = step_tensor
                params.append(p)
                grads.append(p.grad)
                states.append(st)
                is_fresh.append(fresh_p or beta == 0)
            if not params:
                continue
            d = torch._foreach_add(grads, params, alpha=wd) if wd != 0 else grads
            bufs = [st["momentum_buffer"] for st in states]
            fresh = [b for b, f in zip(bufs, is_fresh) if f]
            old = [b for b, f in zip(bufs, is_fresh) if not f]
            if fresh:
                torch._foreach_copy_(fresh, [x for x, f in zip(d, is_fresh) if f])
            if old:
                torch._foreach_mul_(old, beta)
                torch._foreach_add_(old, [x for x, f in zip(d, is_fresh) if not f])
            m_eff = torch._foreach_add(d, bufs, alpha=beta) if group["nesterov"] else bufs
            if penalty is None:
                torch._foreach_add_(params, m_eff, alpha=-lr * kappa)
                continue
            Vs = [st["V"] for st in states]
            gammas = [st["gamma"] for st in states]
            diff = torch._foreach_sub(params, gammas)
            torch._foreach_add_(params, m_eff, alpha=-lr * kappa)
            torch._foreach_add_(params, diff, alpha=-lr * kappa / nu)
            torch._foreach_add_(Vs, diff, alpha=lr / nu)
            if penalty == "lasso":
                torch._foreach_copy_(gammas, Vs)
                torch._foreach_clamp_min_(gammas, -lam)
                torch._foreach_clamp_max_(gammas, lam)
                torch._foreach_sub_(gammas, Vs)
                torch._foreach_mul_(gammas, -kappa)
                for st, gm in zip(states, gammas):
                    st["entry_step"].masked_fill_(gm.ne(0).logical_and_(st["entry_step"].lt(0)), t)
            else:
                for st, V, gm in zip(states, Vs, gammas):
                    n = V.shape[0]
                    norms = torch.linalg.vector_norm(V.reshape(n, -1), dim=1)
                    scale = (norms - lam).clamp_min_(0).div_(norms.clamp_min(_tiny(norms)))
                    scale.mul_(kappa)
                    torch.mul(V, scale.view((n,) + (1,) * (V.dim() - 1)), out=gm)
                    st["entry_step"].masked_fill_(scale.ne(0).logical_and_(st["entry_step"].lt(0)), t)


def _per_layer_groups(model: nn.Module, lam0: float, **kw) -> list[dict]:
    """Growth's layout: one param group per penalised weight, each with its own λ."""
    groups = []
    for g in dessilbi_param_groups(model, hidden_linear="lasso", **kw):
        if g["penalty"] is None:
            groups.append(g)
            continue
        groups += [{**g, "params": [p], "lam": lam0 + 0.013 * i} for i, p in enumerate(g["params"])]
    return groups


@pytest.mark.parametrize("nesterov,classifier,lam0", [(True, None, 1.0), (False, "lasso", 0.3)])
def test_batched_step_is_bit_identical_to_the_per_parameter_step(nesterov, classifier, lam0):
    """A channels-last ResNet, λ per conv, widened twice mid-run (resized state, new filters): the
    batched step leaves every weight, V, Γ, momentum and entry step exactly as the per-layer loop."""
    import search_spaces
    from growth.operators import widen

    torch.manual_seed(0)
    model = search_spaces.create_model("resnet8-thin").to(memory_format=torch.channels_last)
    ref_model = copy.deepcopy(model)
    kw = dict(lr=0.1, nu=1.0, kappa=1.3, weight_decay=5e-4, nesterov=nesterov)
    opt = DessiLBI(_per_layer_groups(model, lam0, classifier=classifier), **kw)
    ref = _PerParameterDessiLBI(_per_layer_groups(ref_model, lam0, classifier=classifier), **kw)
    for step in range(30):
        if step in (8, 19):
            for m, o in ((model, opt), (ref_model, ref)):
                torch.manual_seed(step)
                widen(m, "stage2", 3, o)
                widen(m, "stage1.block1.inner", 2, o)
        torch.manual_seed(100 + step)
        x = torch.randn(8, 3, 32, 32).to(memory_format=torch.channels_last)
        y = torch.randint(0, 10, (8,))
        for m, o in ((model, opt), (ref_model, ref)):
            o.zero_grad()
            nn.functional.cross_entropy(m(x), y).backward()
            o.step()
        for (name, p), q in zip(model.named_parameters(), ref_model.parameters()):
            assert torch.equal(p, q), (step, name)
            for key, value in ref.state[q].items():
                assert torch.equal(opt.state[p][key], value), (step, name, key)
    entered = torch.cat([opt.entry_steps(p).flatten() for p in opt.penalised_params()])
    assert (entered > 1).any() and (entered == -1).any(), "filters should enter supp Γ at different steps"


def _launches(opt: DessiLBI) -> int:
    """Ops of one step that launch a kernel (views, splits and the CPU step counter do not)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    free = {"view", "_unsafe_view", "slice", "split_with_sizes", "split", "select", "as_strided", "expand",
            "lift_fresh", "detach", "alias", "_record_function_enter_new", "_record_function_exit"}

    class Count(TorchDispatchMode):
        n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func.overloadpacket.__name__ not in free:
                Count.n += 1
            return func(*args, **(kwargs or {}))

    with Count():
        opt.step()
    return Count.n


def test_step_kernels_do_not_grow_with_the_number_of_layers():
    """A handful of kernels for the whole model: ResNet-56 (55 convs, each its own λ group) steps in
    as many as ResNet-20 (19 convs), because filters of one size are stacked (the per-layer loop
    launched 385 and 1,105)."""
    import search_spaces

    counts = {}
    for name in ("resnet20", "resnet56"):
        torch.manual_seed(0)
        model = search_spaces.create_model(name).to(memory_format=torch.channels_last)
        opt = DessiLBI(_per_layer_groups(model, 0.5), lr=0.1, weight_decay=5e-4, nesterov=True)
        for _ in range(2):
            opt.zero_grad()
            nn.functional.cross_entropy(model(torch.randn(2, 3, 32, 32)), torch.tensor([0, 1])).backward()
            opt.step()
        counts[name] = _launches(opt)
    assert counts["resnet20"] == counts["resnet56"] <= 60, counts
