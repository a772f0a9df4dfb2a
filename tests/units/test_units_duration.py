"""pallet.units.duration against go-units' HumanDuration (as ``docker ps`` and
``ctr content ls`` print it) and Go's own tests of ParseDuration and Duration.String."""
from __future__ import annotations

import pytest

from pallet.units.duration import duration_string, human_duration, parse_go_duration

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


S, MS, US = 1_000_000_000, 1_000_000, 1_000
I64_MAX, I64_MIN = (1 << 63) - 1, -(1 << 63)


@pytest.mark.parametrize("text,ns", [
    # Go's time_test.go parseDurationTests
    ("0", 0), ("5s", 5 * S), ("30s", 30 * S), ("1478s", 1478 * S), ("-5s", -5 * S),
    ("+5s", 5 * S), ("-0", 0), ("+0", 0), ("5.0s", 5 * S), ("5.6s", 5600 * MS),
    ("5.s", 5 * S), (".5s", 500 * MS), ("1.0s", S), ("1.00s", S), ("1.004s", 1004 * MS),
    ("1.0040s", 1004 * MS), ("100.00100s", 100001 * MS), ("10ns", 10), ("11us", 11 * US),
    ("12\u00b5s", 12 * US), ("12\u03bcs", 12 * US), ("13ms", 13 * MS), ("14s", 14 * S),
    ("15m", 15 * 60 * S), ("16h", 16 * 3600 * S), ("3h30m", 12600 * S),
    ("10.5s4m", 250500 * MS), ("-2m3.4s", -123400 * MS), ("1h2m3s4ms5us6ns", 3723004005006),
    ("39h9m14.425s", 140_954_425 * MS), ("52763797000ns", 52763797000),
    ("0.3333333333333333333h", 20 * 60 * S), ("9007199254740993ns", (1 << 53) + 1),
    ("9223372036854775807ns", I64_MAX), ("9223372036854775.807us", I64_MAX),
    ("9223372036s854ms775us807ns", I64_MAX), ("-9223372036854775808ns", I64_MIN),
    ("-9223372036854775.808us", I64_MIN), ("-9223372036s854ms775us808ns", I64_MIN),
    ("-2562047h47m16.854775808s", I64_MIN), ("0.100000000000000000000h", 6 * 60 * S),
    ("0.830103483285477580700h", 2988_372539827),
])
def test_parse_go_duration(text, ns):
    assert parse_go_duration(text) == ns


@pytest.mark.parametrize("text,message", [
    ("", 'time: invalid duration ""'), ("3", 'time: missing unit in duration "3"'),
    ("-", 'time: invalid duration "-"'), ("s", 'time: invalid duration "s"'),
    (".", 'time: invalid duration "."'), ("-.", 'time: invalid duration "-."'),
    (".s", 'time: invalid duration ".s"'), ("+.s", 'time: invalid duration "+.s"'),
    ("1d", 'time: unknown unit "d" in duration "1d"'),
    ("1..5s", 'time: missing unit in duration "1..5s"'),
    ("\u00e91s", 'time: invalid duration "\\xc3\\xa91s"'),
    ("9223372036854775808ns", 'time: invalid duration "9223372036854775808ns"'),
    ("9223372036854775.808us", 'time: invalid duration "9223372036854775.808us"'),
    ("-9223372036854775809ns", 'time: invalid duration "-9223372036854775809ns"'),
])
def test_parse_go_duration_refuses(text, message):
    with pytest.raises(ValueError) as e:
        parse_go_duration(text)
    assert str(e.value) == message


@pytest.mark.parametrize("ns,text", [
    # Go's durationTests (Duration.String), and what ctr prints after a pull
    (0, "0s"), (1, "1ns"), (1100, "1.1µs"), (2200 * US, "2.2ms"), (3300 * MS, "3.3s"),
    (4 * 60 * S + 5 * S, "4m5s"), (4 * 60 * S + 5001 * MS, "4m5.001s"),
    (5 * 3600 * S + 6 * 60 * S + 7001 * MS, "5h6m7.001s"), (8 * 60 * S + 1, "8m0.000000001s"),
    (I64_MAX, "2562047h47m16.854775807s"), (I64_MIN, "-2562047h47m16.854775808s"),
    (137_570_000, "137.57ms"), (2500 * MS, "2.5s"), (42_100, "42.1µs"), (-1500, "-1.5µs"),
])
def test_duration_string(ns, text):
    assert duration_string(ns) == text
