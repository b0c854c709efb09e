"""Offline resolution of scan locations to Chinese administrative divisions.

A scan reports its region either as a 6-digit GB/T 2260 administrative division
code (adcode: 2 digits province, 4 city, 6 district; 440106 is Tianhe district,
Guangzhou, Guangdong) or as a latitude/longitude pair. This module turns the
latter into the former, offline, by the nearest district representative point,
and answers the questions a rule needs about adcodes (is it known, where is it,
does it fall under a prefix).

The district table comes from the ``geotool-cn`` distribution (import name
``GeoToolCN``): adcodes, names and one representative point per region (a point
guaranteed to lie inside the region's polygon, WGS-84), for the 34 provinces,
363 cities and 2,874 districts that its data lists. It is read once, through the
package's public, standard-library-only API, the first time it is needed; which
package, version and data snapshot answered is recorded in
:class:`DistrictSource` so that every resolution can cite its source.

Its MIT license covers the package's code. The data is derived from DataV.GeoAtlas
(Amap), whose terms say "for learning and exchange only"; see the package's
NOTICE file before commercial use.

Everything here is batch-first and vectorised with numpy; :meth:`DistrictIndex.nearest`
resolves 100,000 points in a fraction of a second on one core through a
precomputed grid of candidate lists that is exact (the true nearest point, not an
approximation) for every point in its 3..54 N, 73..136 E extent, and by chunked
brute force outside it.

This module is the public face; the code lives in two private modules, split by
what they hold: ``_districts`` (the district table, :class:`DistrictIndex`,
:func:`default_index`, :func:`adcode_matches`) and ``_geodesy`` (distances and the
GCJ-02 datum: :func:`haversine_km`, :func:`gcj02_to_wgs84`, which need no data).
Import from here.
"""

from __future__ import annotations

from ._districts import DATA_PACKAGE, DistrictIndex, DistrictSource, adcode_matches, default_index
from ._geodesy import EARTH_RADIUS_KM, gcj02_to_wgs84, haversine_km, in_gcj02_area, wgs84_to_gcj02

# the array types of the signatures: public names here before the split, so
# re-exported (explicitly: mypy runs with no_implicit_reexport), though not in __all__
from ._districts import IntArray as IntArray
from ._geodesy import BoolArray as BoolArray
from ._geodesy import FloatArray as FloatArray

__all__ = [
    "DATA_PACKAGE",
    "EARTH_RADIUS_KM",
    "DistrictIndex",
    "DistrictSource",
    "adcode_matches",
    "default_index",
    "gcj02_to_wgs84",
    "haversine_km",
    "in_gcj02_area",
    "wgs84_to_gcj02",
]
