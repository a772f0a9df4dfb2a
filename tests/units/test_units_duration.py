"""pallet.units.duration against go-units' HumanDuration, as ``docker ps``
(STATUS, CREATED), ``docker images`` and ``ctr content ls`` print it."""
from __future__ import annotations

import pytest

from pallet.units.duration import human_duration

MIN, HOUR, DAY = 60, 3600, 86400
WEEK, MONTH, YEAR = 7 * DAY, 30 * DAY, 365 * DAY


@pytest.mark.parametrize("secs,text", [
    (0, "Less than a second"), (0.45, "Less than a second"), (-5, "Less than a second"),
    (1, "1 second"), (1.9, "1 second"), (45, "45 seconds"), (59, "59 seconds"),
    (60, "About a minute"), (119, "About a minute"), (3 * MIN, "3 minutes"),
    (35 * MIN + 40, "35 minutes"), (59 * MIN, "59 minutes"), (59 * MIN + 59, "59 minutes"),
    (HOUR, "About an hour"), (HOUR + 29 * MIN, "About an hour"), (HOUR + 31 * MIN, "2 hours"),
    (3 * HOUR + 31 * MIN, "4 hours"), (DAY, "24 hours"), (DAY + 12 * HOUR, "36 hours"),
    (2 * DAY, "2 days"), (13 * DAY + 5 * HOUR, "13 days"), (2 * WEEK, "2 weeks"),
    (MONTH, "4 weeks"), (MONTH + 2 * WEEK, "6 weeks"), (2 * MONTH, "2 months"),
    (13 * MONTH, "13 months"), (24 * MONTH, "24 months"), (24 * MONTH + 2 * WEEK, "2 years"),
    (3 * YEAR + 2 * MONTH, "3 years"),
])
def test_human_duration(secs, text):
    assert human_duration(secs) == text


def test_hours_round_half_up():
    # d.Hours() + 0.5, not Python's round-half-even: 2h30m is "3 hours"
    assert human_duration(2 * HOUR + 30 * MIN) == "3 hours"
    assert human_duration(HOUR + 30 * MIN) == "2 hours"
    assert human_duration(47 * HOUR + 30 * MIN) == "2 days"


def test_years_count_truncated_hours():
    # the rounded hours decide that it is years; go-units then counts the
    # truncated ones: 20 minutes short of two years is still "1 years"
    assert human_duration(2 * YEAR - 20 * MIN) == "1 years"
    assert human_duration(2 * YEAR) == "2 years"
