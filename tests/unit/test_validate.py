"""Names and sizes are checked before anything on the host is touched."""

from __future__ import annotations

import pytest

from kvmhub.errors import InvalidInput, exit_code
from kvmhub.validate import check_name, format_size, parse_size


@pytest.mark.parametrize("name", ["web1", "db.lab", "a", "A_b-c.9", "x" * 63])
def test_good_names(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize(
    "name",
    ["", "-web", ".hidden", "..", "../etc", "a/b", "x" * 64, "web 1", "<vm>", "a&b", "it's", 'q"', "a;touch X",
     "; touch X", "$(reboot)", "`id`", "é", "name\n", "tab\t"],
)
def test_hostile_names_refused_with_the_rule(name: str) -> None:
    with pytest.raises(InvalidInput) as info:
        check_name(name)
    assert "letters, digits" in (info.value.cause or "")
    assert exit_code(info.value) == 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [("512M", 512 * 1024**2), ("1G", 1024**3), ("1.5GiB", 3 * 1024**3 // 2), ("10GB", 10 * 1000**3),
     ("2048", 2048), ("4 k", 4096), (" 3T ", 3 * 1024**4), (7, 7)],
)
def test_sizes_parse_with_units(text: str | int, expected: int) -> None:
    assert parse_size(text) == expected


def test_size_default_unit() -> None:
    assert parse_size("512", default_unit="M") == 512 * 1024**2


@pytest.mark.parametrize("text", ["", "G", "-1G", "0", "1X", "1..2G", "10G; rm -rf /", "1e9"])
def test_bad_sizes_refused(text: str) -> None:
    with pytest.raises(InvalidInput):
        parse_size(text)


def test_format_size() -> None:
    assert format_size(1536) == "1.5K"
    assert format_size(10 * 1024**3) == "10G"
    assert format_size(100) == "100"
