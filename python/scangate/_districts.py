"""The district table and the questions asked of it: which district a point is
nearest to (:meth:`DistrictIndex.nearest`), where an adcode is, whether it is known
or a district, what it is called, and whether adcodes fall under prefixes
(:func:`adcode_matches`).

The table is read from the ``geotool-cn`` package the first time
:func:`default_index` is called, and shared; see :mod:`scangate.geo` for the data,
its source and its terms. Coordinates are WGS-84 (GCJ-02 points are converted by
:mod:`scangate._geodesy` first). Public through :mod:`scangate.geo`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import numpy as np
import numpy.typing as npt

from ._geodesy import EARTH_RADIUS_KM, BoolArray, FloatArray, _unit, haversine_km
from .errors import InvalidArgument

__all__ = [
    "DATA_PACKAGE",
    "DistrictIndex",
    "DistrictSource",
    "IntArray",
    "adcode_matches",
    "default_index",
]

#: The PyPI distribution that ships the district data, and its import name.
DATA_PACKAGE = "geotool-cn"
_DATA_MODULE = "GeoToolCN"

# The candidate grid: cells of _CELL_DEG degrees over this extent (all of China's
# territory and the South China Sea). Points outside it are answered by brute force.
_GRID_LAT = (3.0, 54.0)
_GRID_LON = (73.0, 136.0)
_CELL_DEG = 0.5
# The grid is built from blocks of _BLOCK x _BLOCK cells (2 degrees) down.
_BLOCK = 4
# Slack, in radians (~6 m), on the candidate bound: covers float rounding in arccos.
_GRID_EPS = 1e-6
# Points per chunk in the query loops; bounds the temporaries to tens of MB.
_CHUNK = 8192

IntArray = npt.NDArray[np.int32]


@dataclass(frozen=True)
class DistrictSource:
    """Where the district table came from: cite this next to every resolution."""

    package: str  # the PyPI distribution, "geotool-cn"
    version: str  # its installed version (importlib.metadata)
    districts: int  # district-level entries with coordinates (len(DistrictIndex.adcodes))
    data_date: str = ""  # when the package's data was fetched from its origin (YYYY-MM-DD)
    origin: str = ""  # where the package says the data comes from
    data_sha256: str = ""  # the package's own content hash of the data snapshot


def adcode_matches(adcodes: npt.ArrayLike, prefixes: Sequence[str]) -> BoolArray:
    """For each 6-digit adcode, whether it starts with any of ``prefixes``.

    A prefix is 1 to 6 decimal digits ("44", "4401", "440106") and matches by
    decimal prefix: 440106 matches "44", "4401" and "440106" but not "4402" or
    "45". Values that are not 6-digit codes (0, negative, too long) match nothing.
    Raises InvalidArgument for a prefix that is not 1-6 ASCII digits.
    """
    codes = np.asarray(adcodes).astype(np.int64)
    out = np.zeros(codes.shape, dtype=np.bool_)
    valid = (codes >= 100_000) & (codes <= 999_999)
    for prefix in prefixes:
        text = str(prefix)
        if not (1 <= len(text) <= 6 and text.isascii() and text.isdigit()):
            raise InvalidArgument(f"adcode prefix {prefix!r} is not 1 to 6 digits")
        out |= valid & (codes // 10 ** (6 - len(text)) == int(text))
    return out



def _normalise_codes(adcodes: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """2-digit (44), 4-digit (4401) and 6-digit codes as 6-digit; anything else -> -1."""
    codes = np.asarray(adcodes).astype(np.int64)
    out = np.full(codes.shape, -1, dtype=np.int64)
    two = (codes >= 10) & (codes <= 99)
    four = (codes >= 1000) & (codes <= 9999)
    six = (codes >= 100_000) & (codes <= 999_999)
    out[two] = codes[two] * 10_000
    out[four] = codes[four] * 100
    out[six] = codes[six]
    return out


class DistrictIndex:
    """District-level adcodes with representative points; nearest-district lookup.

    ``adcodes`` (int32, sorted), ``lat``, ``lon`` (float64 degrees) and ``names``
    are parallel, one entry per district-level unit: every district, county and
    county-level city, the prefecture-level cities that have no districts
    (Dongguan 441900, Zhongshan 442000, ...), the province-administered
    county-level units (Jiyuan 419001, Shihezi 659001, ...), Hong Kong's and
    Macao's districts, and Taiwan as the single province-level entry 710000
    (the data has no finer level there). The arrays are read-only: the instance
    is shared (see :func:`default_index`).
    """

    source: DistrictSource
    adcodes: IntArray
    lat: FloatArray
    lon: FloatArray
    names: list[str]

    def __init__(
        self,
        source: DistrictSource,
        leaves: Sequence[tuple[int, str, float, float]],
        regions: Sequence[tuple[int, str, float, float]] = (),
    ) -> None:
        """Build from (adcode, name, lat, lon) rows.

        ``leaves`` are the district-level units that :meth:`nearest` resolves to;
        ``regions`` are the data's own city- and province-level entries, used by
        :meth:`centroid` and :meth:`name` in preference to a mean of districts.
        """
        rows = sorted(leaves)
        codes = np.array([r[0] for r in rows], dtype=np.int32)
        if codes.size == 0 or np.any(np.diff(codes) == 0):
            raise InvalidArgument("district table is empty or has duplicate adcodes")
        self.source = source
        self.adcodes = _readonly(codes)
        self.names = [r[1] for r in rows]
        self.lat = _readonly(np.array([r[2] for r in rows], dtype=np.float64))
        self.lon = _readonly(np.array([r[3] for r in rows], dtype=np.float64))
        self._unit = _readonly(_unit(self.lat, self.lon))
        # Padded with a zero vector: its dot product (0) loses to any real
        # candidate's, whose nearest is always within 90 degrees of a grid point.
        self._unit_padded = _readonly(np.vstack([self._unit, np.zeros((1, 3))]))

        self._names: dict[int, str] = {int(c): n for c, n in zip(codes.tolist(), self.names)}
        # is_district for one code (a request check) without a numpy call per scan
        self._districts = frozenset(int(c) for c in self.adcodes.tolist())
        table: dict[int, tuple[float, float]] = {
            int(c): (float(a), float(o)) for c, a, o in zip(codes.tolist(), self.lat, self.lon)
        }
        for code, name, la, lo in regions:
            table.setdefault(int(code), (float(la), float(lo)))
            self._names.setdefault(int(code), name)
        # City (4-digit) and province (2-digit) prefixes the data has no entry
        # for (Beijing's 110100, say): the mean of their districts.
        for divisor in (100, 10_000):
            groups = codes.astype(np.int64) // divisor
            for key in np.unique(groups).tolist():
                code = int(key) * divisor
                if code not in table:
                    sel = groups == key
                    table[code] = (float(self.lat[sel].mean()), float(self.lon[sel].mean()))
        keys = sorted(table)
        self._lookup_codes = _readonly(np.array(keys, dtype=np.int64))
        self._lookup_lat = _readonly(np.array([table[k][0] for k in keys], dtype=np.float64))
        self._lookup_lon = _readonly(np.array([table[k][1] for k in keys], dtype=np.float64))

        self._grid: npt.NDArray[np.int32] | None = None
        self._grid_counts: npt.NDArray[np.int32] = np.zeros(0, dtype=np.int32)
        self._grid_lock = threading.Lock()

    # -- loading ----------------------------------------------------------------

    @classmethod
    def load(cls) -> DistrictIndex:
        """Read the district table from the installed ``geotool-cn`` package.

        Uses the package's public API (standard library only, ~50 ms); prefer the
        cached :func:`default_index`.
        """
        try:
            import GeoToolCN  # noqa: N813 - the distribution's own module name
        except ImportError as exc:  # pragma: no cover - it is a declared dependency
            raise ImportError(
                f"scangate.geo needs the {DATA_PACKAGE!r} package: pip install {DATA_PACKAGE}"
            ) from exc

        tool = GeoToolCN.GeoTool()
        try:
            districts = tool.list_regions("district")
            cities = tool.list_regions("city")
            provinces = tool.list_regions("province")
        finally:
            tool.close()

        leaves = [(int(r.code), r.name, r.latitude, r.longitude) for r in districts]
        covered = {int(r.code) // 10_000 for r in districts}
        # A province with no district-level entries at all (Taiwan) is its own leaf.
        leaves += [
            (int(r.code), r.name, r.latitude, r.longitude)
            for r in provinces
            if int(r.code) // 10_000 not in covered
        ]
        regions = [(int(r.code), r.name, r.latitude, r.longitude) for r in (*cities, *provinces)]

        meta = _data_version()
        source = DistrictSource(
            package=DATA_PACKAGE,
            version=metadata.version(DATA_PACKAGE),
            districts=len(leaves),
            data_date=str(meta.get("fetched_at", "")),
            origin=str(meta.get("source", "")),
            data_sha256=str(meta.get("content_sha256", "")),
        )
        return cls(source, leaves, regions)

    # -- lookups ------------------------------------------------------------------

    def nearest(
        self, lat: npt.ArrayLike, lon: npt.ArrayLike, *, max_km: float | None = None
    ) -> tuple[IntArray, FloatArray]:
        """Nearest district for each point: (adcode int32, great-circle distance km).

        ``lat``/``lon`` are degrees (WGS-84) and broadcast against each other.
        A point with a NaN/inf coordinate, latitude outside [-90, 90] or
        longitude outside [-180, 180] gets adcode 0 and distance inf; so does
        one farther than ``max_km`` from every representative point, if given
        (use it to refuse points abroad rather than snap them to a border county).
        """
        la, lo = np.broadcast_arrays(
            np.asarray(lat, dtype=np.float64), np.asarray(lon, dtype=np.float64)
        )
        shape = la.shape
        la = la.ravel()
        lo = lo.ravel()
        codes = np.zeros(la.size, dtype=np.int32)
        dist = np.full(la.size, np.inf, dtype=np.float64)

        ok = np.isfinite(la) & np.isfinite(lo) & (np.abs(la) <= 90.0) & (np.abs(lo) <= 180.0)
        idx = np.flatnonzero(ok)
        if idx.size:
            best = self._nearest_rows(la[idx], lo[idx])
            codes[idx] = self.adcodes[best]
            dist[idx] = haversine_km(la[idx], lo[idx], self.lat[best], self.lon[best])
            if max_km is not None:
                far = dist > max_km
                codes[far] = 0
                dist[far] = np.inf
        return codes.reshape(shape), dist.reshape(shape)

    def centroid(self, adcodes: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
        """(lat, lon) for each adcode; NaN where unknown.

        6-digit codes: the district's representative point; a city or province
        code (440100, 440000) or a 4- or 2-digit prefix (4401, 44): the data's
        own entry for that city/province where it has one, else the mean of the
        districts under the prefix (Beijing's 110100).
        """
        codes = _normalise_codes(adcodes)
        pos = np.searchsorted(self._lookup_codes, codes)
        pos = np.minimum(pos, self._lookup_codes.size - 1)
        hit = self._lookup_codes[pos] == codes
        lat = np.where(hit, self._lookup_lat[pos], np.nan)
        lon = np.where(hit, self._lookup_lon[pos], np.nan)
        return lat, lon

    def is_known(self, adcodes: npt.ArrayLike) -> BoolArray:
        """Whether each code (6-digit, or a 2/4-digit prefix) names a region in the data."""
        codes = _normalise_codes(adcodes)
        pos = np.minimum(np.searchsorted(self._lookup_codes, codes), self._lookup_codes.size - 1)
        known: BoolArray = self._lookup_codes[pos] == codes
        return known

    def is_district(self, adcodes: npt.ArrayLike) -> BoolArray:
        """Whether each code is a district-level unit of the data (one of ``adcodes``:
        a district, county, county-level city, a city without districts, Taiwan's
        710000): the places a scan can be. City and province codes (440100, 440000)
        and codes the data does not list (999999) are not."""
        codes = np.asarray(adcodes).astype(np.int64)
        if self.adcodes.size == 0:
            return np.zeros(codes.shape, dtype=np.bool_)
        pos = np.minimum(np.searchsorted(self.adcodes, codes), self.adcodes.size - 1)
        hit: BoolArray = self.adcodes[pos] == codes
        return hit

    def is_district_code(self, adcode: int) -> bool:
        """``is_district`` for one code: a set lookup, for checks made per request."""
        return adcode in self._districts

    def name(self, adcode: int) -> str | None:
        """The region's name (天河区, 广州市, 广东省), or None if the data names none."""
        code = int(_normalise_codes(np.int64(adcode)))
        return self._names.get(code)

    # -- internals ------------------------------------------------------------------

    def _nearest_rows(self, lat: FloatArray, lon: FloatArray) -> npt.NDArray[np.intp]:
        """Row (into self.adcodes) of the nearest representative point; inputs valid."""
        grid = self._candidate_grid()
        ncols = int(round((_GRID_LON[1] - _GRID_LON[0]) / _CELL_DEG))
        nrows = grid.shape[0] // ncols
        row = np.floor((lat - _GRID_LAT[0]) / _CELL_DEG).astype(np.int64)
        col = np.floor((lon - _GRID_LON[0]) / _CELL_DEG).astype(np.int64)
        in_grid = (row >= 0) & (row < nrows) & (col >= 0) & (col < ncols)
        cell = row * ncols + col
        points = _unit(lat, lon)
        best = np.empty(lat.size, dtype=np.intp)

        # Most cells have a handful of candidates, a few dozens: group the points
        # by the width their cell needs (8, 16, 32, ...) and gather only that much.
        inside = np.flatnonzero(in_grid)
        for members, width in _by_width(self._grid_counts[cell[inside]]):
            group = inside[members]
            for start in range(0, group.size, _CHUNK):
                sel = group[start : start + _CHUNK]
                cand = grid[cell[sel], :width]  # (c, width) rows, padded with len(adcodes)
                dots = np.einsum("ckj,cj->ck", self._unit_padded[cand], points[sel])
                best[sel] = cand[np.arange(sel.size), np.argmax(dots, axis=1)]

        outside = np.flatnonzero(~in_grid)
        for start in range(0, outside.size, _CHUNK):
            sel = outside[start : start + _CHUNK]
            best[sel] = np.argmax(points[sel] @ self._unit.T, axis=1)
        return best

    def _candidate_grid(self) -> npt.NDArray[np.int32]:
        """(cells, K) candidate rows per grid cell, built once on first use.

        For a cell with centre q and circumradius r (the farthest corner; the
        farthest point of a lat/lon cell from its centre is a corner), any point
        x in the cell has d(x, p) in [d(q, p) - r, d(q, p) + r]. So the nearest
        representative point of x is among those with d(q, p) <= min d(q, .) + 2r,
        by the triangle inequality alone: the answer is exact, not approximate.

        Built in two levels: blocks of _BLOCK x _BLOCK cells against every point,
        then each cell against its block's candidates (a superset of the cell's:
        the cell lies inside the block), grouped by list length so that little
        of the work is padding: ~0.2 s instead of ~1 s for all pairs.
        """
        if self._grid is not None:
            return self._grid
        with self._grid_lock:
            if self._grid is not None:
                return self._grid
            nrows = int(round((_GRID_LAT[1] - _GRID_LAT[0]) / _CELL_DEG))
            ncols = int(round((_GRID_LON[1] - _GRID_LON[0]) / _CELL_DEG))

            brows = -(-nrows // _BLOCK)
            bcols = -(-ncols // _BLOCK)
            bcentres, bradius = _cells(brows, bcols, _CELL_DEG * _BLOCK)
            blocks, bneed = self._prune(bcentres, bradius)

            centres, radius = _cells(nrows, ncols, _CELL_DEG)
            r = np.arange(nrows).repeat(ncols) // _BLOCK
            c = np.tile(np.arange(ncols), nrows) // _BLOCK
            grid, counts = self._prune(centres, radius, blocks[r * bcols + c], bneed[r * bcols + c])
            self._grid_counts = _readonly(counts)
            self._grid = _readonly(grid)
            return self._grid

    def _prune(
        self,
        centres: FloatArray,
        radius: FloatArray,
        cand: npt.NDArray[np.int32] | None = None,
        need: npt.NDArray[np.int32] | None = None,
    ) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int32]]:
        """Per cell, the candidates that can be nearest to some point of the cell.

        ``cand`` (cells, K) holds rows into self.adcodes, ``need`` how many of
        each row are real (the rest is padding); together they must contain each
        cell's nearest point to its centre. None: every point is a candidate.
        Returns the pruned lists, padded with len(adcodes), and their lengths.
        """
        n = self.adcodes.size
        if cand is None or need is None:
            cand = np.broadcast_to(np.arange(n, dtype=np.int32), (centres.shape[0], n))
            need = np.full(centres.shape[0], n, dtype=np.int32)
        rows_list: list[npt.NDArray[np.intp]] = []
        cols_list: list[npt.NDArray[np.int32]] = []
        for group, width in _by_width(need):
            step = max(1, 1_000_000 // width)
            for start in range(0, group.size, step):
                sel = group[start : start + step]
                block = cand[sel, :width]
                dots = np.einsum("ckj,cj->ck", self._unit_padded[block], centres[sel])
                dots[block == n] = -2.0
                # Angles compared as cosines (monotone on [0, pi]): no arccos per pair.
                nearest = np.arccos(np.clip(dots.max(axis=1), -1.0, 1.0))
                bound = np.minimum(nearest + 2.0 * radius[sel] + _GRID_EPS, np.pi)
                r, k = np.nonzero(dots >= np.cos(bound)[:, None])
                rows_list.append(sel[r])
                cols_list.append(block[r, k])
        rows = np.concatenate(rows_list)
        cols = np.concatenate(cols_list)
        order = np.argsort(rows, kind="stable")
        rows = rows[order]
        cols = cols[order]
        counts = np.bincount(rows, minlength=centres.shape[0]).astype(np.int32)
        first = np.concatenate([[0], np.cumsum(counts)[:-1]])
        out = np.full((centres.shape[0], int(counts.max())), n, dtype=np.int32)
        out[rows, np.arange(rows.size) - first[rows]] = cols
        return out, counts


def _by_width(need: npt.NDArray[np.int32]) -> list[tuple[npt.NDArray[np.intp], int]]:
    """Indices grouped by how many leading entries each needs: widths 8, 16, 32, ..."""
    groups = []
    low, width = 0, 8
    top = int(need.max()) if need.size else 0
    while low < top:
        high = min(width, top)
        members = np.flatnonzero((need > low) & (need <= high))
        if members.size:
            groups.append((members, high))
        low, width = high, width * 2
    return groups


def _cells(nrows: int, ncols: int, size: float) -> tuple[FloatArray, FloatArray]:
    """Unit-vector centres and circumradii (radians) of a row-major lat/lon grid."""
    lat0 = _GRID_LAT[0] + size * np.arange(nrows)
    lon0 = _GRID_LON[0] + size * np.arange(ncols)
    half = size / 2
    # The farthest corner from the centre; longitude does not change it.
    corner = np.maximum(
        haversine_km(lat0 + half, 0.0, lat0, half),
        haversine_km(lat0 + half, 0.0, lat0 + size, half),
    )
    centres = _unit(np.repeat(lat0 + half, ncols), np.tile(lon0 + half, nrows))
    return centres, np.repeat(corner / EARTH_RADIUS_KM, ncols)


_default: DistrictIndex | None = None
_default_lock = threading.Lock()


def default_index() -> DistrictIndex:
    """The district index from the installed data package, loaded once and shared."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = DistrictIndex.load()
    return _default


def _data_version() -> dict[str, Any]:
    """The data package's DATA_VERSION.json (source, fetch date, hash), or {}."""
    from importlib import resources

    try:
        text = resources.files(_DATA_MODULE).joinpath("data").joinpath("DATA_VERSION.json").read_text(
            encoding="utf-8"
        )
        meta = json.loads(text)
    except (OSError, ValueError, TypeError):
        return {}
    return meta if isinstance(meta, dict) else {}


def _readonly(array: npt.NDArray[Any]) -> npt.NDArray[Any]:
    array.flags.writeable = False
    return array
