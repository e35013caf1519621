"""The ensemble reward source: members normalized on calibration samples, then weighted, by
hand; member means reported; bad settings named by path."""

from __future__ import annotations

import math

import pytest

from framework.errors import ConfigError, FrameworkError
from framework_plugins.reward_sources.ensemble import EnsembleReward


def words(prompt, response):
    return float(len(response.split()))


def exclaims(prompt, response):
    return 10.0 * response.count("!")


MEMBERS = {"words": {"name": "function", "params": {"function": "tests.test_ensemble:words"}},
           "exclaims": {"name": "function", "params": {"function": "tests.test_ensemble:exclaims"}}}


def ensemble(**params) -> EnsembleReward:
    source = EnsembleReward(EnsembleReward.parse_config(
        {"members": MEMBERS, "calibration_size": 4, **params}, "reward.params"))
    source.check("reward.params")
    source.setup({})
    return source


def test_members_are_normalized_then_weighted_by_hand():
    source = ensemble(weights={"words": 2.0, "exclaims": 0.5})
    assert source.needs_calibration and source.calibration_size == 4
    calibration = ["a", "a b", "a b c !", "a b c d !!"]  # words 1,2,4,5 (!: a word); ! 0,0,10,20
    stats = source.calibrate(["p"] * 4, calibration)
    # words: mean 3, sample std sqrt(((-2)^2 + 1 + 1 + 4) / 3) = sqrt(10/3)
    assert stats["words"]["mean"] == 3.0
    assert stats["words"]["std"] == pytest.approx(math.sqrt(10 / 3))
    # exclaims: mean 7.5, std sqrt((56.25 + 56.25 + 6.25 + 156.25) / 3) = sqrt(275/3)
    assert stats["exclaims"]["mean"] == 7.5
    assert stats["exclaims"]["std"] == pytest.approx(math.sqrt(275 / 3))
    [score] = source.score(["p"], ["x y z !"])  # words 4, exclaims 10
    expected = 2.0 * (4 - 3) / math.sqrt(10 / 3) + 0.5 * (10 - 7.5) / math.sqrt(275 / 3)
    assert score == pytest.approx(expected)
    assert source.metrics() == {"words": 4.0, "exclaims": 10.0}  # raw member means
    # the statistics survive a resume (state_dict), and unnormalized sums are plain sums
    restored = ensemble(weights={"words": 2.0, "exclaims": 0.5})
    restored.load_state_dict(source.state_dict())
    assert restored.score(["p"], ["x y z !"]) == [score]
    assert ensemble(normalize=False).score(["p"], ["x y z !"]) == [14.0]


def test_an_uncalibrated_or_constant_member_is_an_error():
    with pytest.raises(FrameworkError, match=r"reward.params.normalize=true but the ensemble is not calibrated"):
        ensemble().score(["p"], ["x"])
    with pytest.raises(FrameworkError, match=r"reward.params.members.exclaims: its 4 calibration scores are all 0.0"):
        ensemble().calibrate(["p"] * 4, ["a", "a b", "c", "d e f"])


@pytest.mark.parametrize("params, message", [
    ({"members": {}}, "reward.params.members: empty"),
    ({"members": MEMBERS, "weights": {"nope": 1.0}}, "reward.params.weights: ['nope'] are not members"),
    ({"members": {"a": {"name": "no_such_source"}}}, "reward.params.members.a.name"),
    ({"members": {"a": {"name": "function", "params": {"function": "os:nope"}}}},
     "cannot import 'os:nope'"),
    ({"members": MEMBERS, "calibration_size": 1}, "reward.params.calibration_size"),
])
def test_bad_settings_are_named(params, message):
    with pytest.raises(ConfigError) as err:
        source = EnsembleReward(EnsembleReward.parse_config(params, "reward.params"))
        source.check("reward.params")
    assert message in str(err.value)
