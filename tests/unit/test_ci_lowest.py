"""CI tests the lowest versions pyproject.toml allows: .ci/lowest.txt must pin exactly those floors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def floors() -> dict[str, set[str]]:
    """Every ``>=`` floor pyproject.toml gives dlt and duckdb, in dependencies and extras."""
    found: dict[str, set[str]] = {"dlt": set(), "duckdb": set()}
    for name, floor in re.findall(r'"(dlt|duckdb)(?:\[[^\]]*\])?>=([0-9.]+)', (ROOT / "pyproject.toml").read_text()):
        found[name].add(floor)
    return found


def pins() -> dict[str, str]:
    lines = (ROOT / ".ci" / "lowest.txt").read_text().splitlines()
    return dict(line.split("==") for line in lines if line.strip() and not line.startswith("#"))


def release(version: str) -> tuple[int, ...]:
    """``1.22`` and ``1.22.0`` are the same release."""
    parts = [int(p) for p in version.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))


@pytest.mark.parametrize("package", ["dlt", "duckdb"])
def test_ci_pins_the_floor_pyproject_allows(package: str) -> None:
    (floor,) = floors()[package]  # one floor per package, wherever it appears
    pinned = pins()[package]
    assert release(pinned) == release(floor), f"pyproject.toml allows {package}>={floor}; .ci/lowest.txt pins {pinned}"
