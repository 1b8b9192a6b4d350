"""Where a growth step's MACs go (growth.allocation): whole channels, chosen groups first."""

from __future__ import annotations

import pytest

from growth.allocation import allocate, floor_width, next_width, with_widths
from growth.compute import measure_cost
from growth.graph import groups_of_genotype
from search_spaces import get_genotype

SHAPE = (3, 32, 32)


def _macs(genotype) -> float:
    return float(measure_cost(genotype, SHAPE).macs)


def _grown(genotype, added: dict[str, int]):
    widths = {g.name: g.width + added.get(g.name, 0) for g in groups_of_genotype(genotype)}
    return with_widths(genotype, widths)


@pytest.fixture(scope="module")
def thin():
    genotype = get_genotype("resnet20-thin")   # stage widths 4, 8, 16
    return genotype, _macs(genotype)


def test_a_chosen_four_channel_group_grows_under_a_step_that_affords_one_channel(thin):
    genotype, seed = thin
    one = _macs(_grown(genotype, {"stage1": 1})) - seed        # one channel of stage 1: about 10% of the seed
    added = allocate(genotype, {"stage1": 1.0}, [], seed + 1.05 * one, cap=2.0, input_shape=SHAPE)
    assert added == {"stage1": 1}                               # a common factor of 1.05 x 4 would round to 0


def test_an_unchosen_group_does_not_grow_while_a_chosen_one_can(thin):
    genotype, seed = thin
    others = [g.name for g in groups_of_genotype(genotype) if g.name != "stage1"]
    added = allocate(genotype, {"stage1": 1.0}, others, 1.25 * seed, cap=2.0, input_shape=SHAPE)
    assert set(added) == {"stage1"} and 1 <= added["stage1"] < 4      # below its cap (x2): the others wait
    assert _macs(_grown(genotype, added)) <= 1.25 * seed


def test_others_grow_only_once_every_chosen_group_is_capped(thin):
    genotype, seed = thin
    others = [g.name for g in groups_of_genotype(genotype) if g.name != "stage3"]
    added = allocate(genotype, {"stage3": 1.0}, others, 2.0 * seed, cap=2.0, input_shape=SHAPE)
    assert added["stage3"] == 16                                 # x2, its cap: then the others share the rest
    assert len(added) > 1
    assert 1.9 * seed < _macs(_grown(genotype, added)) <= 2.0 * seed


def test_equal_scores_grow_a_flat_seed_towards_width_doubling_per_stage():
    genotype = get_genotype("resnet20-flat")                     # every stage 6 channels
    names = [g.name for g in groups_of_genotype(genotype)]
    grown, seed = genotype, _macs(genotype)
    for goal in (1.4 * seed, 2.0 * seed):                        # two steps, as a run takes them
        grown = _grown(grown, allocate(grown, dict.fromkeys(names, 1.0), [], goal, cap=2.0, input_shape=SHAPE))
    widths = [stage[0] for stage in grown.compact()]
    assert widths[0] == 6 and 1.5 <= widths[1] / widths[0] and 1.5 <= widths[2] / widths[1] <= 2.5, widths
    assert 1.9 * seed < _macs(grown) <= 2.0 * seed
    # the uniform control on the same steps keeps the flat shape
    alike, equal = genotype, dict.fromkeys(names, 1.0)
    for goal in (1.4 * seed, 2.0 * seed):
        alike = _grown(alike, allocate(alike, equal, [], goal, cap=2.0, input_shape=SHAPE, rule="alike"))
    assert max(s[0] for s in alike.compact()) / min(s[0] for s in alike.compact()) < 1.5


def test_a_better_score_buys_a_group_more_of_the_step(thin):
    genotype, seed = thin
    names = [g.name for g in groups_of_genotype(genotype)]
    equal = allocate(genotype, dict.fromkeys(names, 1.0), [], 1.5 * seed, cap=2.0, input_shape=SHAPE)
    favoured = allocate(genotype, {**dict.fromkeys(names, 0.5), "stage1": 1.0}, [], 1.5 * seed, cap=2.0,
                        input_shape=SHAPE)
    assert favoured.get("stage1", 0) > equal.get("stage1", 0)


def test_equal_scores_alike_take_the_cheapest_unit_first(thin):
    genotype, seed = thin
    inner3 = _macs(_grown(genotype, {"stage3.block1.inner": 1})) - seed
    # A step that affords about one unit: of two tied groups the cheaper one gets it, not the first listed.
    added = allocate(genotype, {"stage1": 0.5, "stage3.block1.inner": 0.5}, [], seed + 1.5 * inner3, cap=2.0,
                     input_shape=SHAPE, rule="alike")
    assert added == {"stage3.block1.inner": 1}


def test_a_step_too_small_for_any_channel_grows_nothing(thin):
    genotype, seed = thin
    names = [g.name for g in groups_of_genotype(genotype)]
    assert allocate(genotype, dict.fromkeys(names, 1.0), [], seed * 1.0001, cap=2.0, input_shape=SHAPE) == {}


def test_a_width_multiple_is_the_unit_and_never_freezes_a_group(thin):
    genotype, seed = thin
    # stage 3 at 16 channels with a multiple of 8: its unit is 8 channels (16 -> 24), added when affordable.
    added = allocate(genotype, {"stage3": 1.0}, [], 1.2 * seed, cap=1.3, input_shape=SHAPE, multiple=8)
    assert added == {"stage3": 8}
    assert next_width(16, 8) == 24 and next_width(15, 8) == 16 and next_width(14, 8) == 15
    assert floor_width(16, 23.9, 8) == 16 and floor_width(16, 24.0, 8) == 24


def test_uniform_allocation_spends_the_step_in_whole_channels_within_the_goal(thin):
    genotype, seed = thin
    names = [g.name for g in groups_of_genotype(genotype)]
    for goal in (1.19 * seed, 1.6 * seed, 3.0 * seed):
        added = allocate(genotype, dict.fromkeys(names, 1.0), [], goal, cap=2.0, input_shape=SHAPE, rule="alike")
        grown = _macs(_grown(genotype, added))
        assert 0.95 * goal < grown <= goal, (goal / seed, added)
