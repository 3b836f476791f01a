"""The heart-rate keys of the config, and the cap a session runs under (house, walker, age)."""

from __future__ import annotations

from pathlib import Path

import pytest

from retrotread.coach.walkers import WalkerConfig, effective_limits
from retrotread.config import HeartRateConfig, SafetyConfig, load_config
from retrotread.errors import ConfigError
from retrotread.profiles.model import Phase
from retrotread.service.heart_rate import cap_settings


def test_off_by_default_and_a_strap_only_when_named() -> None:
    c = load_config(None, {"HOME": "/home/walker"})
    assert c.safety.max_heart_rate_bpm is None
    assert cap_settings(c.safety, c.safety).cap_bpm is None
    assert not c.heart_rate.wanted(simulated=False)  # never a strap picked at random
    assert c.heart_rate.wanted(simulated=True)
    assert HeartRateConfig(name="Polar H10 1234").wanted(simulated=False)
    assert not HeartRateConfig(address="F0:00:00:00:00:01", enabled=False).wanted(False)


def test_the_house_cap_and_its_timing_reach_the_governor() -> None:
    house = SafetyConfig(
        max_heart_rate_bpm=130,
        heart_rate_hysteresis_bpm=8,
        heart_rate_step_down_after_s=30,
        heart_rate_finish_after_s=90,
        heart_rate_step_every_s=3,
    )
    s = cap_settings(house, house)
    assert (s.cap_bpm, s.hysteresis_bpm, s.step_down_after_s, s.finish_after_s) == (
        130,
        8,
        30,
        90,
    )
    assert s.step_every_s == 3
    slow = SafetyConfig(step_interval_s=4.0, heart_rate_step_every_s=2.0)
    assert cap_settings(slow, slow).step_every_s == 4.0  # never faster than the steps


@pytest.mark.parametrize(
    ("house", "walker", "cap"),
    [
        (None, WalkerConfig(name="a"), None),  # neither: off
        (140, WalkerConfig(name="a"), 140),
        (140, WalkerConfig(name="a", max_heart_rate_bpm=120), 120),  # the lower wins
        (None, WalkerConfig(name="a", age=60), 141),  # 0.85 x (208 - 42)
        (130, WalkerConfig(name="a", age=60), 130),
        (None, WalkerConfig(name="a", age=60, max_heart_rate_bpm=150), 150),  # given beats age
    ],
)
def test_a_walkers_cap(house: int | None, walker: WalkerConfig, cap: int | None) -> None:
    safety = SafetyConfig(max_heart_rate_bpm=house)
    limits = effective_limits(safety, walker)
    assert cap_settings(limits, safety).cap_bpm == cap


def test_the_age_fraction_is_configured() -> None:
    safety = SafetyConfig(heart_rate_cap_fraction=0.75)
    limits = effective_limits(safety, WalkerConfig(name="a", age=60))
    assert limits.max_heart_rate_bpm == int((208 - 0.7 * 60) * 0.75) == 124


def test_bad_heart_rate_keys_are_refused_by_name(tmp_path: Path) -> None:
    for text, why in [
        ("[safety]\nmax_heart_rate_bpm = 300\n", "safety.max_heart_rate_bpm = 300"),
        (
            "[safety]\nheart_rate_finish_after_s = 15\n",
            "heart_rate_finish_after_s 15 must be longer than heart_rate_step_down_after_s 20",
        ),
        ("[heart_rate]\nsilence = 3\n", "unknown key 'heart_rate.silence'"),
        ("[heart_rate]\nstale_after_s = 0\n", "heart_rate.stale_after_s = 0"),
    ]:
        path = tmp_path / "c.toml"
        path.write_text(text)
        with pytest.raises(ConfigError) as err:
            load_config(path, {})
        assert why in str(err.value), str(err.value)


@pytest.mark.parametrize(
    ("zone", "incline", "why"),
    [
        ([110, 100], 5.0, "60 <= low"),
        ([40, 100], 5.0, "60 <= low"),
        ([100, 102], 5.0, "at least 5 bpm"),
        ([100, 110], 0.0, "needs incline_pct > 0"),
    ],
)
def test_bad_heart_rate_zones_are_refused(zone: list[int], incline: float, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        Phase(name="hill", duration_s=60, speed_kmh=2.0, incline_pct=incline, target_hr_bpm=zone)  # type: ignore[arg-type]
    ok = Phase(name="hill", duration_s=60, speed_kmh=2.0, incline_pct=5.0, target_hr_bpm=(100, 110))
    assert ok.target_hr_bpm == (100, 110)
