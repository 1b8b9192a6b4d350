"""Tests for the ``scs`` baseline (baselines.scs): sampled sub-networks and their charged FLOPs, the
analytic FLOP count, physical extraction, an end-to-end run within budget, and exact resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from baselines import MethodOptions, configure, parse_method
from baselines.scs import SCSController
from growth.compute import measure_cost
from growth.config import ConfigError, TrainConfig
from growth.run import Run
from search_spaces import (
    ResNetGenotype,
    ResNetStage,
    build_model,
    extract_genotype,
    family_of,
    genotype_from_dict,
    get_genotype,
)

SHAPE = (1, 28, 28)  # the shipped sample
# A small supernet with removable blocks in every stage (widths 4/8/16, 2 blocks each); its seed is
# widths 1/2/4 with 1 block per stage.
SPACE = ResNetGenotype.uniform([4, 8, 16], [2, 2, 2], in_chans=1).to_dict()
SCS_SETTINGS = {"space": SPACE, "seed_blocks": 1}
BUDGET = 4e10


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def analytic_flops(genotype, shape) -> int:
    """Forward FLOPs of a genotype by its family's analytic count (what scs charges a sampled step)."""
    return int(family_of(genotype).forward_flops(genotype, shape))


def _configure(spec: str = "scs", settings: dict | None = None, target: float | None = None,
               budget: float = BUDGET):
    base = TrainConfig(data="sample", subset=400, budget_flops=budget, seed_value=0, eval_every_frac=0.1,
                       batch_size=64)
    options = MethodOptions(target_macs=target, extra={"input_shape": SHAPE, "num_classes": 10,
                                                       "scs": dict(SCS_SETTINGS if settings is None else settings)})
    return configure(parse_method(spec), base, options)


def _trainer(out: Path, controller: SCSController | None = None, config: TrainConfig | None = None,
             resume: Path | None = None):
    if config is None:
        config, default = _configure()
        controller = controller or default
    return Run.open(config, out=out if resume is None else None, resume=resume, kind="bench").trainer(controller)


class _Stop(Exception):
    """Simulates a kill after a given step (a checkpoint exists from the latest evaluation)."""


def _stop_after(controller: SCSController, step: int) -> None:
    original = controller.after_step

    def after_step(trainer):
        original(trainer)
        if trainer.state.step + 1 == step:  # the loop counts the step after this hook
            raise _Stop

    controller.after_step = after_step


# --------------------------------------------------------------------------------- analytic FLOPs


GENOTYPES = {
    "resnet20@32": (get_genotype("resnet20"), (3, 32, 32)),
    "resnet32@28": (get_genotype("resnet32", in_chans=1), SHAPE),
    "resnet20-thin@28": (get_genotype("resnet20-thin", in_chans=1), SHAPE),
    "conv-shortcut-odd": (ResNetGenotype.uniform([4, 8, 16], [2, 1, 1], shortcut="conv"), (3, 31, 29)),
    "irregular": (ResNetGenotype([ResNetStage(3, [2, 5]), ResNetStage(7, [1], [0, 2]),
                                  ResNetStage(5, [4, 2, 3], [1, -1, 0])], num_classes=7, in_chans=2),
                  (2, 17, 23)),
}


@pytest.mark.parametrize("name", GENOTYPES)
def test_analytic_flops_equal_measure_cost(name: str) -> None:
    genotype, shape = GENOTYPES[name]
    assert analytic_flops(genotype, shape) == measure_cost(genotype, shape).forward_flops


def test_expected_flops_are_the_mean_of_sampled_flops() -> None:
    config, ctl = _configure()
    torch.manual_seed(0)
    p_ch, p_blk = torch.rand(ctl.n_channels), torch.rand(len(ctl.blocks))
    ctl.group_id = torch.repeat_interleave(torch.arange(len(ctl.groups)),
                                           torch.tensor([g.width for g in ctl.groups]))
    expected = ctl._flops_of(p_ch, p_blk, SHAPE)
    samples = [ctl._flops_of(torch.bernoulli(p_ch), torch.bernoulli(p_blk), SHAPE) for _ in range(4000)]
    assert all(isinstance(s, int) for s in samples[:10])
    assert sum(samples) / len(samples) == pytest.approx(expected, rel=0.02)


# ---------------------------------------------------------------------------------- configuration


def test_default_space_seed_and_target() -> None:
    base = TrainConfig(data="sample", eval_every_frac=0.15)
    config, ctl = configure(parse_method("scs"), base,
                            MethodOptions(extra={"input_shape": (3, 32, 32), "num_classes": 10}))
    assert config.seed == "resnet32" and genotype_from_dict(config.genotype) == get_genotype("resnet32")
    assert config.decay_start_frac == 0.5 and config.optimizer == "sgd"
    assert config.eval_every_frac == pytest.approx(0.5 / 4)  # the search ends at an evaluation, interval <= 0.15
    assert ctl.target_macs == measure_cost(get_genotype("resnet20"), (3, 32, 32)).macs
    # The sparse seed inside the space is exactly resnet20-thin (widths 4/8/16, 3 blocks).
    ch, blk = ctl._initial_scores()
    assert ctl.architecture(ch > 0, blk > 0) == get_genotype("resnet20-thin")
    assert set(ch.tolist()) == {2.0, -2.0}
    # One score per channel of each coupled group, one per removable block.
    assert ctl.n_channels == sum(g.width for g in ctl.groups) == 16 + 32 + 64 + 5 * (16 + 32 + 64)
    assert len(ctl.blocks) == 5 + 4 + 4

    config, ctl = configure(parse_method("scs:resnet56"), base,
                            MethodOptions(target_macs=1e7, extra={"input_shape": (3, 32, 32), "num_classes": 10}))
    assert config.seed == "resnet56" and ctl.target_macs == 1e7
    with pytest.raises(ConfigError):
        configure(parse_method("scs:vgg16-thin"), base,
                  MethodOptions(extra={"input_shape": (3, 32, 32), "num_classes": 10}))
    with pytest.raises(ConfigError):
        _configure(settings={"search_frac": 0.0})


# ------------------------------------------------------------------------------------- extraction


@pytest.mark.slow
def test_extraction_is_exact_and_physical(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path / "run")
    ctl = trainer.controller
    ctl.attach(trainer)
    model = trainer.model
    supernet = measure_cost(model, SHAPE)
    torch.manual_seed(1)
    with torch.no_grad():
        ctl.scores_ch.copy_(torch.randn(ctl.n_channels))
        ctl.scores_blk.copy_(torch.tensor([-1.0, -0.5, 1.0, -2.0]))  # stage 1: none on -> its best
        inner = ctl.groups[ctl.group_index["stage1.block2.inner"]]  # the inner group of the block stage 1 keeps
        offset = ctl.offsets[ctl.group_index[inner.name]]
        ctl.scores_ch[offset:offset + inner.width] = -1.0  # no channel on -> its best one
    x = torch.randn(8, *SHAPE)
    model.eval()
    with torch.no_grad():
        gated = model(x)
    expected = ctl.hard_genotype()
    ctl._extract(trainer, 0.0)
    assert model.genotype == expected and extract_genotype(model) == expected
    assert [st.depth for st in expected.stages] == [1, 2, 1]
    assert expected.stages[0].inner == [1]
    assert not model._forward_pre_hooks and not any(m._forward_hooks for m in model.modules())
    with torch.no_grad():
        assert torch.allclose(model(x), gated, atol=1e-5)
    cost = measure_cost(model, SHAPE)
    assert cost.params < supernet.params and cost.macs < supernet.macs
    assert cost.forward_flops == analytic_flops(expected, SHAPE)
    event = json.loads((tmp_path / "run" / "growth.jsonl").read_text().splitlines()[-1])
    assert event["event"] == "scs_extract" and event["widths"] == expected.compact()
    assert event["macs"] == cost.macs
    assert ctl.step_train_flops_per_sample(trainer) is None  # the model's own cost from now on


# ---------------------------------------------------------------------------- a run, end to end


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted run, instrumented: every sampled gate vector and every charge."""
    out = tmp_path_factory.mktemp("scs") / "run"
    torch.set_num_threads(1)
    trainer = _trainer(out)
    ctl = trainer.controller
    steps, charges = [], []
    hook = ctl.step_train_flops_per_sample

    def recording(t):
        value = hook(t)
        steps.append({"step": t.state.step, "charged": value, "model": t.cost.train_flops_per_sample,
                      "q_ch": ctl.q_ch.clone() if value is not None else None,
                      "q_blk": ctl.q_blk.clone() if value is not None else None,
                      "genotype": ctl.sampled_genotype() if value is not None else None})
        return value

    ctl.step_train_flops_per_sample = recording
    charge = trainer.ledger.charge

    def charging(flops, samples=0):
        charges.append((flops, samples))
        charge(flops, samples)

    trainer.ledger.charge = charging
    supernet = trainer.cost
    summary = trainer.fit()
    return {"out": out, "trainer": trainer, "steps": steps, "charges": charges, "summary": summary,
            "supernet": supernet}


@pytest.mark.slow
def test_scs_samples_sub_networks_and_charges_them(reference) -> None:
    steps, charges, supernet = reference["steps"], reference["charges"], reference["supernet"]
    search = [s for s in steps if s["charged"] is not None]
    assert 10 < len(search) < len(steps)  # a search phase, then fine-tuning
    # The gates vary from step to step while σ(βs) is not saturated (early in the search).
    early = [torch.cat([s["q_ch"], s["q_blk"]]) for s in search[:5]]
    assert any(not torch.equal(early[0], q) for q in early[1:])
    # Each step is charged 3x the forward FLOPs of the sub-network it sampled, below the supernet's.
    assert all(s["charged"] < supernet.train_flops_per_sample for s in search)
    assert all(s["charged"] == 3 * analytic_flops(s["genotype"], SHAPE) for s in search)
    buildable = [s for s in search if all(st.width > 0 and all(st.inner) for st in s["genotype"].stages)]
    for s in buildable[:: max(1, len(buildable) // 4)]:
        assert s["charged"] == measure_cost(s["genotype"], SHAPE).train_flops_per_sample
    assert len({s["charged"] for s in search}) > 1
    # After extraction each step costs the extracted model.
    assert all(s["charged"] is None and s["model"] < supernet.train_flops_per_sample
               for s in steps[len(search):])
    # The ledger is exactly the sum of the charged step costs.
    per_sample = [s["charged"] if s["charged"] is not None else s["model"] for s in steps]
    assert [flops for flops, _ in charges] == [n * c for (_, n), c in zip(charges, per_sample)]
    ledger = reference["trainer"].ledger
    assert ledger.spent_flops == sum(flops for flops, _ in charges)
    assert ledger.samples == sum(n for _, n in charges)


@pytest.mark.slow
def test_run_writes_summary_within_budget_and_extracts(reference) -> None:
    out, summary, trainer = reference["out"], reference["summary"], reference["trainer"]
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk == json.loads(json.dumps(summary))
    assert on_disk["train_flops"] <= on_disk["budget_flops"] == BUDGET
    assert on_disk["method"] == "scs" and on_disk["scs_extraction"] is not None
    events = [json.loads(line) for line in (out / "growth.jsonl").read_text().splitlines()]
    assert [e["event"] for e in events][-1] == "scs_extract"
    assert all(e["event"] == "scs_search" for e in events[:-1]) and len(events) == 5  # evals at 0.1..0.5
    extract = events[-1]
    assert extract["fraction"] == pytest.approx(0.5, abs=0.02)
    assert extract["widths"] == on_disk["widths"]
    assert on_disk["macs"] == extract["macs"] < reference["supernet"].macs
    # β rose geometrically to ~200 over the search.
    betas = [e["beta"] for e in events]
    assert betas == sorted(betas) and betas[-1] == pytest.approx(200, rel=0.1)
    # The saved architecture round-trips and the weights rebuild the same network.
    model = trainer.model.eval()
    genotype = genotype_from_dict(json.loads((out / "genotype.json").read_text()))
    assert genotype == model.genotype == extract_genotype(model)
    rebuilt = build_model(genotype)
    rebuilt.load_state_dict(torch.load(out / "weights.pt", weights_only=True))
    rebuilt = rebuilt.to(memory_format=torch.channels_last).eval()  # as the trainer holds it
    x = torch.randn(16, *SHAPE).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), model(x))


@pytest.mark.slow
def test_resume_mid_search_and_mid_finetune_is_exact(reference, tmp_path: Path) -> None:
    """Killed during the search and again during fine-tuning, the run ends as the uninterrupted one."""
    metrics = [json.loads(line) for line in (reference["out"] / "metrics.jsonl").read_text().splitlines()]
    evals = [m["step"] for m in metrics]  # a checkpoint follows each evaluation
    assert len(evals) >= 8
    out = tmp_path / "run"
    config, ctl = _configure()
    _stop_after(ctl, evals[2] + 3)  # in the search (the evaluations at 0.1, 0.2, 0.3 are done)
    with pytest.raises(_Stop):
        _trainer(out, ctl, config).fit()
    state = torch.load(out / "checkpoint.pt", weights_only=True)["controller"]
    assert state["phase"] == "search" and "gen" in state and "mask_opt" in state

    _, ctl = _configure()
    _stop_after(ctl, evals[6] + 3)  # fine-tuning, after the checkpoint at 0.7
    with pytest.raises(_Stop):
        _trainer(out, ctl, resume=out).fit()
    state = torch.load(out / "checkpoint.pt", weights_only=True)["controller"]
    assert state["phase"] == "finetune"

    _, ctl = _configure()
    summary = _trainer(out, ctl, resume=out).fit()
    ref = reference["summary"]
    for key in ("train_flops", "samples", "steps", "widths", "macs", "val_acc", "test_acc", "scs_extraction"):
        assert summary[key] == ref[key], key
    assert (out / "growth.jsonl").read_text() == (reference["out"] / "growth.jsonl").read_text()
    mine = torch.load(out / "weights.pt", weights_only=True)
    theirs = torch.load(reference["out"] / "weights.pt", weights_only=True)
    assert all(torch.equal(mine[k], theirs[k]) for k in theirs)


def test_compiled_search_compiles_once_per_architecture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        low_recompile_limit: int) -> None:
    # β rises every step; read as a Python number by the gates it would recompile the step every time
    # (and hit Dynamo's recompile limit). Compiled: the search supernet, then the extracted network.
    import dataclasses

    from torch._dynamo.backends.registry import lookup_backend

    from growth.trainer import Trainer

    monkeypatch.setattr(Trainer, "compile_backend", staticmethod(lookup_backend("aot_eager")))
    config, controller = _configure()
    summary = _trainer(tmp_path / "run", controller, dataclasses.replace(config, compile=True)).fit()
    assert controller.beta > 1.5 and summary["compiles"] == 2
