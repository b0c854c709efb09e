"""The dependency policy (README, "Dependencies"): pyproject.toml gives tested ranges
that stop below the next major release, constraints.txt pins the exact versions CI
ran, and the environment the tests run in is exactly the pinned one, so a release
nobody here tested never arrives silently."""
from __future__ import annotations

import importlib.metadata as md
import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
# Time-zone data: newer is always better, and an old copy gives wrong local days.
UNCAPPED = {"tzdata"}


def constraints() -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for number, line in enumerate((ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.fullmatch(r"([A-Za-z0-9._-]+)==([^\s;]+)", line)
        assert m, f"constraints.txt line {number}: {line!r} is not NAME==VERSION"
        name = canonicalize_name(m.group(1))
        assert name not in pins, f"constraints.txt line {number}: {name} pinned twice"
        pins[name] = Version(m.group(2))
    return pins


def declared() -> list[Requirement]:
    project = PYPROJECT["project"]
    reqs = [*project["dependencies"], *project["optional-dependencies"]["test"],
            *PYPROJECT["build-system"]["requires"]]
    return [Requirement(r) for r in reqs]


def test_every_declared_dependency_stops_below_an_untested_major() -> None:
    for req in declared():
        if canonicalize_name(req.name) in UNCAPPED:
            continue
        ops = {s.operator for s in req.specifier}
        assert ops & {"<", "=="}, f"{req}: no upper bound, an untested major release would arrive silently"
        assert ">=" in ops or "==" in ops, f"{req}: no lower bound"


def test_every_pin_lies_in_its_declared_range() -> None:
    pins = constraints()
    for req in declared():
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is declared in pyproject.toml but not pinned in constraints.txt"
        assert req.specifier.contains(pins[name], prereleases=True), \
            f"constraints.txt pins {name}=={pins[name]}, outside pyproject.toml's {req}"


def _closure() -> dict[str, str]:
    """Every distribution scangate[test] needs, transitively, with its installed version."""
    seen: dict[str, str] = {}
    todo = [Requirement("scangate[test]")]
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name in seen:
            continue
        seen[name] = md.version(req.name)
        for raw in md.requires(req.name) or []:
            sub = Requirement(raw)
            env = {"extra": next(iter(req.extras))} if req.extras else {"extra": ""}
            if sub.marker is None or sub.marker.evaluate(env):
                todo.append(sub)
    seen.pop("scangate")
    return seen


def test_the_tests_run_on_exactly_the_pinned_versions() -> None:
    pins = constraints()
    installed = _closure()
    unpinned = sorted(set(installed) - set(pins))
    assert not unpinned, f"installed but not pinned in constraints.txt: {unpinned}"
    differ = {n: (v, str(pins[n])) for n, v in installed.items() if Version(v) != pins[n]}
    assert not differ, ("installed versions differ from constraints.txt (install as the README says, "
                        f"PIP_CONSTRAINT=constraints.txt): {differ}")
