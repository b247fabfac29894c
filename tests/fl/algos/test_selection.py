"""Power-of-choice selection (Cho et al.): the highest-loss cohort_size of d candidates."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from algos_testkit import federation, world_config, world_dataset

from fedgroups.fl.algos.selection import PowerOfChoice
from fedgroups.fl.config import ConfigError, parse_config
from fedgroups.fl.strategy import RoundContext, Strategy, uniform_selection


class Recorded:
    """A selection that remembers each round's probes and cohort."""

    def __init__(self, inner: Callable[..., list[int]]) -> None:
        self.inner = inner
        self.rounds: list[tuple[dict[int, float], list[int]]] = []

    def __call__(self, num_members: int, cohort_size: int, ctx: RoundContext,
                 probe: Callable[[int], float] | None) -> list[int]:
        seen: dict[int, float] = {}

        def spy(i: int) -> float:
            seen[i] = probe(i)
            return seen[i]

        cohort = self.inner(num_members, cohort_size, ctx, spy)
        self.rounds.append((seen, cohort))
        return cohort


def _ctx(round_: int = 0, seed: int = 0, node: str = "") -> RoundContext:
    return RoundContext(round=round_, seed=seed, node=node)


def test_picks_the_highest_loss_candidates_ties_by_index() -> None:
    losses = [0.3, 5.0, 1.0, 5.0, 2.0, 0.1, 4.0, 3.0, 5.0, 0.2, 1.5, 2.5]
    probed: list[int] = []

    def probe(i: int) -> float:
        probed.append(i)
        return losses[i]

    cohort = PowerOfChoice(d=6)(len(losses), 3, _ctx(), probe)
    assert len(probed) == len(set(probed)) == 6  # d distinct candidates, probed once each
    expected = sorted(probed, key=lambda i: (-losses[i], i))[:3]
    assert cohort == expected
    # All candidates equal: the lowest indices win; nan (no data) ranks last.
    assert PowerOfChoice(d=6)(12, 3, _ctx(), lambda i: 1.0) == sorted(probed)[:3]
    nan_low = PowerOfChoice(d=6)(12, 5, _ctx(), lambda i: math.nan if i == min(probed) else 1.0)
    assert min(probed) not in nan_low
    # d = number of members: the global top cohort_size.
    assert PowerOfChoice(d=12)(12, 3, _ctx(), lambda i: losses[i]) == [1, 3, 8]


def test_candidates_are_a_function_of_seed_round_and_federation() -> None:
    pick = PowerOfChoice(d=5)
    draws = {(s, r, node): tuple(pick.candidates(50, 2, _ctx(r, s, node)))
             for s in (0, 1) for r in range(4) for node in ("", "world/eu")}
    assert all(draws[k] == tuple(pick.candidates(50, 2, _ctx(k[1], k[0], k[2]))) for k in draws)
    assert len(set(draws.values())) == len(draws)  # all 16 differ
    losses = [float((7 * i) % 11) for i in range(50)]
    a = pick(50, 2, _ctx(3, 1), lambda i: losses[i])
    assert a == pick(50, 2, _ctx(3, 1), lambda i: losses[i])


def test_d_defaults_to_twice_the_cohort_and_is_capped() -> None:
    probed: list[int] = []
    probe = lambda i: probed.append(i) or 0.0  # noqa: E731
    PowerOfChoice()(40, 3, _ctx(), probe)
    assert len(probed) == 6
    probed.clear()
    assert sorted(PowerOfChoice()(5, 3, _ctx(), probe)) == [0, 1, 2]  # all 5 probed, ties
    assert len(probed) == 5
    probed.clear()
    assert len(PowerOfChoice(d=2)(2, 4, _ctx(), probe)) == 2  # cohort > members: all
    assert repr(PowerOfChoice(d=3)) == "power_of_choice(d=3)"


@pytest.mark.parametrize("d", [0, -2, 2.5, True, "4"])
def test_bad_d_is_a_config_error(d: Any) -> None:
    with pytest.raises(ConfigError, match=r"strategy.selection power_of_choice: d must be an "
                                          r"integer >= 1"):
        federation({"strategy.selection": {"name": "power_of_choice", "d": d}})


def test_d_below_the_cohort_and_members_without_data_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"d \(2\) must be >= the cohort size \(3\)"):
        PowerOfChoice(d=2)(10, 3, _ctx(), lambda i: 0.0)
    with pytest.raises(ConfigError, match="power_of_choice needs clients; in a tree it applies "
                                          "to leaf federations"):
        PowerOfChoice(d=4)(10, 2, _ctx(), None)


def test_a_flat_run_trains_on_the_highest_loss_candidates() -> None:
    fed = federation({"cohort_size": 2, "rounds": 4,
                      "strategy.selection": {"name": "power_of_choice", "d": 4}})
    assert isinstance(fed.strategy.selection, PowerOfChoice) and fed.strategy.selection.d == 4
    recorded = Recorded(fed.strategy.selection)
    fed = federation({"cohort_size": 2, "rounds": 4},
                     strategy=Strategy(selection=recorded))
    losses = [fed.run_round(r)["train_loss"] for r in range(4)]
    assert losses[-1] < losses[0], losses
    uniform = [uniform_selection(8, 2, _ctx(r, seed=fed.config.seed)) for r in range(4)]
    cohorts = [cohort for _, cohort in recorded.rounds]
    assert cohorts != uniform
    for seen, cohort in recorded.rounds:
        assert len(seen) == 4 and all(math.isfinite(v) for v in seen.values())
        assert cohort == sorted(seen, key=lambda i: (-seen[i], i))[:2]
    # The probe is the global model's loss: the chosen clients train at a higher loss
    # than the candidates left out.
    assert all(min(seen[i] for i in cohort) >= max(v for i, v in seen.items() if i not in cohort)
               for seen, cohort in recorded.rounds)


def test_a_selection_returning_duplicates_is_refused() -> None:
    fed = federation({}, strategy=Strategy(selection=lambda n, k, ctx, probe: [1, 1]))
    with pytest.raises(ConfigError, match=r"returned duplicates \(round 1, 8 members\)"):
        fed.run_round(0)


def test_leaf_federations_of_a_tree_select_by_power_of_choice(tmp_path: Path) -> None:
    from fedgroups.fl.hierarchy.runner import run as run_tree

    cfg = world_config(world_dataset(tmp_path), tmp_path / "run", rounds=2, **{
        "hierarchy.levels": ["family"], "personalization.enabled": False,
        "strategy.selection": {"name": "power_of_choice", "d": 4}})
    res = run_tree(parse_config(cfg), echo=lambda m: None)
    nodes = res.root.walk()
    leaves = [n for n in nodes if n.is_leaf]
    assert len(leaves) == 2
    assert all(isinstance(n.strategy.selection, PowerOfChoice) for n in leaves)
    assert not isinstance(res.root.strategy.selection, PowerOfChoice)  # sub-federations
    rows = [r for r in res.rows if r.get("node") in {n.path for n in leaves}]
    assert rows and all(r["clients"] == 2 for r in rows)
