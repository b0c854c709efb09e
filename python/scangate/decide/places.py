"""Where a scan happened: its adcode, checked against the district table, and
coordinates for travel (given ones, or the district's centroid); coordinates
without an adcode are resolved to the nearest district, offline.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import geo
from ..errors import InvalidArgument

__all__ = ["place_scans", "resolve_places"]

_NAN = float("nan")
_centroids: dict[int, tuple[float, float]] = {}   # adcode -> centroid, from the (immutable) default index


def place_scans(scans: Sequence[Any]) -> tuple[list[int | None], list[str], list[Any], list[Any],
                                                list[int], list[int], list[int]]:
    """Each scan's place: adcode, source, lat and lon (an adcode's cached
    centroid; NaN: unknown), and which scans ``resolve_places`` must complete
    (lat/lon given, to convert; lat/lon without an adcode; an adcode whose
    centroid is not cached). The scans' fields were checked once, before
    (scangate.decide.requests: check_requests, check_scans); whether an adcode is
    a real district is resolve_places' question."""
    regions: list[int | None] = []
    sources: list[str] = []
    lat: list[float] = []
    lon: list[float] = []
    given: list[int] = []
    need_geo: list[int] = []
    unplaced: list[int] = []
    centroids = _centroids
    for i, s in enumerate(scans):
        region, s_lat, s_lon = s.region, s.lat, s.lon
        regions.append(region)
        if s_lat is not None and s_lon is not None:   # converted to float by _resolve_places, after the checks
            lat.append(s_lat)
            lon.append(s_lon)
            given.append(i)
            if region is None:
                need_geo.append(i)
                sources.append("none")
            else:
                sources.append("adcode")
        elif region is not None:
            sources.append("adcode")
            c = centroids.get(region)
            if c is None:
                unplaced.append(i)
                c = (_NAN, _NAN)
            lat.append(c[0])
            lon.append(c[1])
        else:
            sources.append("none")
            lat.append(_NAN)
            lon.append(_NAN)
    return regions, sources, lat, lon, given, need_geo, unplaced


def is_district(region: int) -> bool:
    """Whether ``region`` is the adcode of a real district (checked districts are
    cached, see resolve_places)."""
    return region in _centroids or geo.default_index().is_district_code(region)


def not_a_district(region: int) -> str:
    """Why ``region`` is refused when it is no district's adcode."""
    index = geo.default_index()
    return f"{region} is not a district adcode (not in {index.source.package} {index.source.version}'s district table)"


def resolve_places(regions: list[int | None], sources: list[str], lat: list[Any], lon: list[Any],
                    given: list[int], need_geo: list[int], unplaced: list[int]) -> None:
    """Complete ``place_scans``' lists in place: lat/lon given made floats,
    resolved to the nearest district without an adcode; an adcode without lat/lon
    placed at its district's centroid."""
    for i in given:   # every lat, then every lon: a bad value raises as it always did
        lat[i] = float(lat[i])
    for i in given:
        lon[i] = float(lon[i])
    if need_geo:
        index = geo.default_index()
        src = f"geo:{index.source.package}@{index.source.version}"
        codes, _dist = index.nearest(np.array([lat[i] for i in need_geo], np.float64),
                                     np.array([lon[i] for i in need_geo], np.float64))
        for i, c in zip(need_geo, codes.tolist()):
            regions[i] = int(c) or None
            sources[i] = src if c else "none"
    # Every adcode given must be a real district (geo.DistrictIndex.is_district):
    # a made-up one (999999) would otherwise be "outside every territory", that is
    # evidence of diversion. The cache holds only checked districts, so a code is
    # checked once per process.
    to_check = [i for i in given if sources[i] == "adcode" and regions[i] not in _centroids] + unplaced
    if to_check:
        index = geo.default_index()
        adcodes = sorted({regions[i] for i in to_check})  # type: ignore[type-var]
        real = index.is_district(np.array(adcodes, np.int64))
        if not real.all():
            bad = {c for c, ok in zip(adcodes, real.tolist()) if not ok}
            i = next(i for i in sorted(to_check) if regions[i] in bad)
            raise InvalidArgument(f"scans[{i}].region: {not_a_district(regions[i])}")  # type: ignore[arg-type]
        clat, clon = index.centroid(np.array(adcodes, np.int64))
        if len(_centroids) > 100_000:
            _centroids.clear()
        _centroids.update(zip(adcodes, zip(clat.tolist(), clon.tolist())))  # type: ignore[arg-type]
        for i in unplaced:
            lat[i], lon[i] = _centroids[regions[i]]  # type: ignore[index]

