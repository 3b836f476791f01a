"""TreadmillDataAssembler: More Data fragments merged into one record (FTMS.md §5.4)."""

from __future__ import annotations

from retrotread.ftms import TreadmillData, TreadmillDataAssembler, decode_treadmill_data

# Fragment 1: More Data = 1, Total Distance 33 m and Energy (1 kcal, N/A, N/A).
FIRST = decode_treadmill_data(bytes.fromhex("8500 210000 0100ffffff"))
# Fragment 2: More Data = 1, Heart Rate 97 bpm.
SECOND = decode_treadmill_data(bytes.fromhex("0101 61"))
# Closing fragment: More Data = 0, speed 2.00 km/h and Elapsed Time 60 s.
LAST = decode_treadmill_data(bytes.fromhex("0004 c800 3c00"))


def test_fragments_are_what_they_claim() -> None:
    assert (FIRST.more_data, FIRST.present) == (
        True,
        ("distance_m", "energy_kcal", "energy_per_hour_kcal", "energy_per_minute_kcal"),
    )
    assert (SECOND.more_data, SECOND.present) == (True, ("heart_rate_bpm",))
    assert (LAST.more_data, LAST.present) == (False, ("speed_kmh", "elapsed_s"))


def test_fragments_are_merged_and_emitted_on_more_data_0() -> None:
    a = TreadmillDataAssembler()
    assert a.feed(FIRST, now=10.0) is None
    assert a.feed(SECOND, now=10.2) is None
    record = a.feed(LAST, now=10.4)
    assert record is not None
    assert record.values() == {
        "distance_m": 33,
        "energy_kcal": 1,
        "energy_per_hour_kcal": None,
        "energy_per_minute_kcal": None,
        "heart_rate_bpm": 97,
        "speed_kmh": 2.0,
        "elapsed_s": 60,
    }
    assert (record.more_data, record.missing, record.flags) == (False, (), 0x0400)
    assert record.average_speed_kmh is None
    assert a.dropped == 0


def test_accumulator_is_cleared_after_each_record() -> None:
    a = TreadmillDataAssembler()
    a.feed(FIRST, now=0.0)
    assert a.feed(LAST, now=0.1) is not None
    again = a.feed(LAST, now=0.2)
    assert again == LAST  # nothing of the previous record leaks into the next
    assert again is not None and again.distance_m is None


def test_single_complete_frame_is_emitted_unchanged() -> None:
    a = TreadmillDataAssembler()
    frame = decode_treadmill_data(bytes.fromhex("8424c8002100000100ffffff3c00400000"))
    assert a.feed(frame) == frame


def test_stale_fragments_older_than_max_age_are_dropped() -> None:
    a = TreadmillDataAssembler(max_age_s=3.0)
    assert a.feed(FIRST, now=100.0) is None
    record = a.feed(LAST, now=103.5)
    assert record is not None
    assert record.values() == {"speed_kmh": 2.0, "elapsed_s": 60}
    assert record.distance_m is None and record.energy_kcal is None
    assert a.dropped == 1


def test_fragments_exactly_max_age_old_are_kept() -> None:
    a = TreadmillDataAssembler(max_age_s=0.5)
    a.feed(FIRST, now=1.0)
    a.feed(SECOND, now=1.25)
    record = a.feed(LAST, now=1.5)
    assert record is not None and record.distance_m == 33 and record.heart_rate_bpm == 97
    assert a.dropped == 0


def test_age_counts_from_the_first_pending_fragment() -> None:
    a = TreadmillDataAssembler(max_age_s=0.5)
    a.feed(FIRST, now=1.0)
    a.feed(SECOND, now=1.4)  # fresh, but the record it belongs to started at 1.0
    record = a.feed(LAST, now=1.6)
    assert record is not None
    assert record.values() == {"speed_kmh": 2.0, "elapsed_s": 60}
    assert a.dropped == 1


def test_stale_fragment_then_a_new_record_starts_its_own_clock() -> None:
    a = TreadmillDataAssembler(max_age_s=1.0)
    a.feed(FIRST, now=0.0)
    assert a.feed(SECOND, now=5.0) is None  # FIRST dropped, SECOND starts a new record
    record = a.feed(LAST, now=5.5)
    assert record is not None
    assert record.values() == {"heart_rate_bpm": 97, "speed_kmh": 2.0, "elapsed_s": 60}
    assert a.dropped == 1


def test_reset_clears_pending_fragments() -> None:
    a = TreadmillDataAssembler()
    a.feed(FIRST, now=0.0)
    a.feed(SECOND, now=0.1)
    a.reset()
    assert a.dropped == 1
    record = a.feed(LAST, now=0.2)
    assert record is not None
    assert record.values() == {"speed_kmh": 2.0, "elapsed_s": 60}
    a.reset()  # nothing pending: nothing dropped
    assert a.dropped == 1


def test_reset_also_forgets_the_stale_clock() -> None:
    a = TreadmillDataAssembler(max_age_s=1.0)
    a.feed(FIRST, now=0.0)
    a.reset()
    a.feed(SECOND, now=10.0)
    record = a.feed(LAST, now=10.5)
    assert record is not None and record.heart_rate_bpm == 97
    assert a.dropped == 1


def test_later_fragment_value_wins() -> None:
    a = TreadmillDataAssembler()
    a.feed(decode_treadmill_data(bytes.fromhex("0101 61")), now=0.0)
    a.feed(decode_treadmill_data(bytes.fromhex("0101 62")), now=0.1)
    record = a.feed(LAST, now=0.2)
    assert record is not None and record.heart_rate_bpm == 0x62
    assert record.present.count("heart_rate_bpm") == 1


def test_field_cut_off_one_fragment_but_carried_by_another_is_not_missing() -> None:
    # Regression: the merged record used to list elapsed_s as both present and missing.
    cut = decode_treadmill_data(bytes.fromhex("0504 210000"))  # distance, elapsed cut off
    assert (cut.present, cut.missing) == (("distance_m",), ("elapsed_s",))
    a = TreadmillDataAssembler()
    a.feed(cut, now=0.0)
    record = a.feed(LAST, now=0.1)
    assert record is not None
    assert record.present == ("distance_m", "speed_kmh", "elapsed_s")
    assert record.missing == ()


def test_field_missing_from_every_fragment_stays_missing() -> None:
    cut = decode_treadmill_data(bytes.fromhex("0508 210000"))  # distance, remaining cut off
    a = TreadmillDataAssembler()
    a.feed(cut, now=0.0)
    record = a.feed(LAST, now=0.1)
    assert record is not None
    assert record.missing == ("remaining_s",)
    assert record.remaining_s is None


def test_default_clock_never_expires() -> None:
    a = TreadmillDataAssembler()
    a.feed(FIRST)
    record = a.feed(LAST)
    assert isinstance(record, TreadmillData) and record.distance_m == 33
