"""Coordinates on the Earth, vectorised with numpy: great-circle distance
(:func:`haversine_km`), the GCJ-02 datum that maps in China report and its
conversion to and from WGS-84, and unit vectors for nearest-point search.

Kept apart from the district table (:mod:`scangate._districts`) because none of it
needs the data: converting a WeChat location or measuring how far apart two scans
were loads nothing. Public through :mod:`scangate.geo`. No I/O.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = [
    "EARTH_RADIUS_KM",
    "BoolArray",
    "FloatArray",
    "gcj02_to_wgs84",
    "haversine_km",
    "in_gcj02_area",
    "wgs84_to_gcj02",
]

#: Mean Earth radius (IUGG R1), in kilometres.
EARTH_RADIUS_KM = 6371.0088

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


def haversine_km(
    lat1: npt.ArrayLike, lon1: npt.ArrayLike, lat2: npt.ArrayLike, lon2: npt.ArrayLike
) -> FloatArray:
    """Great-circle distance in km between points given in degrees; broadcasts.

    NaN in any input gives NaN in that position.
    """
    p1 = np.radians(np.asarray(lat1, dtype=np.float64))
    p2 = np.radians(np.asarray(lat2, dtype=np.float64))
    dphi = p2 - p1
    dlmb = np.radians(np.asarray(lon2, dtype=np.float64) - np.asarray(lon1, dtype=np.float64))
    h = np.sin(dphi / 2.0) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlmb / 2.0) ** 2
    out: FloatArray = 2.0 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))
    return out


# ---------------------------------------------------------------------- GCJ-02
# GCJ-02 (国测局坐标, "Mars coordinates") is the datum that maps and location APIs
# in China must report: WGS-84 plus a published, deliberately irregular offset of
# a few hundred metres. WeChat's wx.getLocation reports it (type "gcj02"), Amap
# and Tencent Maps too. Districts are matched on WGS-84, so a GCJ-02 point is
# converted first: left as it is, a scan near a district border lands in the
# neighbour. The offset is the widely published forward formula (Krasovsky 1940
# ellipsoid); it applies inside a rectangle around China only, and outside it
# GCJ-02 equals WGS-84 (the rectangle, not the border, is what the providers use).
_GCJ_A = 6378245.0                     # Krasovsky 1940 semi-major axis, metres
_GCJ_EE = 0.00669342162296594323       # its first eccentricity squared
_GCJ_LAT = (0.8293, 55.8271)
_GCJ_LON = (72.004, 137.8347)
# The inverse iterates the forward offset: each step shrinks the error more than
# 100-fold (the offset changes by under 10 m per km), so 1e-10 degrees (1 cm) is
# reached in five steps anywhere in the area; the cap only guards against a NaN.
_GCJ_TOLERANCE_DEG = 1e-10
_GCJ_MAX_STEPS = 10


def in_gcj02_area(lat: npt.ArrayLike, lon: npt.ArrayLike) -> BoolArray:
    """Whether GCJ-02 differs from WGS-84 at these points (the rectangle around
    China that the offset applies in); broadcasts."""
    la = np.asarray(lat, dtype=np.float64)
    lo = np.asarray(lon, dtype=np.float64)
    out: BoolArray = (la >= _GCJ_LAT[0]) & (la <= _GCJ_LAT[1]) & (lo >= _GCJ_LON[0]) & (lo <= _GCJ_LON[1])
    return out


def _gcj02_offset(lat: FloatArray, lon: FloatArray) -> tuple[FloatArray, FloatArray]:
    """The GCJ-02 offset (degrees of latitude, of longitude) at WGS-84 points
    inside the area; the published formula, term by term."""
    x, y = lon - 105.0, lat - 35.0
    wave = (20.0 * np.sin(6.0 * x * np.pi) + 20.0 * np.sin(2.0 * x * np.pi)) * 2.0 / 3.0
    dlat = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * np.sqrt(np.abs(x)) + wave
    dlat += (20.0 * np.sin(y * np.pi) + 40.0 * np.sin(y / 3.0 * np.pi)) * 2.0 / 3.0
    dlat += (160.0 * np.sin(y / 12.0 * np.pi) + 320.0 * np.sin(y * np.pi / 30.0)) * 2.0 / 3.0
    dlon = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * np.sqrt(np.abs(x)) + wave
    dlon += (20.0 * np.sin(x * np.pi) + 40.0 * np.sin(x / 3.0 * np.pi)) * 2.0 / 3.0
    dlon += (150.0 * np.sin(x / 12.0 * np.pi) + 300.0 * np.sin(x / 30.0 * np.pi)) * 2.0 / 3.0
    rad = lat / 180.0 * np.pi
    magic = 1.0 - _GCJ_EE * np.sin(rad) ** 2
    sqrt_magic = np.sqrt(magic)
    dlat = dlat * 180.0 / ((_GCJ_A * (1.0 - _GCJ_EE)) / (magic * sqrt_magic) * np.pi)
    dlon = dlon * 180.0 / (_GCJ_A / sqrt_magic * np.cos(rad) * np.pi)
    return dlat, dlon


def wgs84_to_gcj02(lat: npt.ArrayLike, lon: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """WGS-84 degrees to GCJ-02 (what a map in China shows for them); broadcasts.
    Points outside the area are returned unchanged."""
    la = np.array(lat, dtype=np.float64)
    lo = np.array(lon, dtype=np.float64)
    la, lo = np.broadcast_arrays(la, lo)
    la, lo = la.copy(), lo.copy()
    inside = in_gcj02_area(la, lo)
    if inside.any():
        dlat, dlon = _gcj02_offset(la[inside], lo[inside])
        la[inside] += dlat
        lo[inside] += dlon
    return la, lo


def gcj02_to_wgs84(lat: npt.ArrayLike, lon: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """GCJ-02 degrees (WeChat's wx.getLocation, Amap) to WGS-84; broadcasts.

    The offset has no closed-form inverse: starting from the GCJ-02 point, each
    step moves the estimate by how far its forward image misses the target,
    until it lands within 1e-10 degrees (about 1 cm). Points outside the area
    are returned unchanged (there GCJ-02 is WGS-84)."""
    la = np.array(lat, dtype=np.float64)
    lo = np.array(lon, dtype=np.float64)
    la, lo = np.broadcast_arrays(la, lo)
    la, lo = la.copy(), lo.copy()
    inside = in_gcj02_area(la, lo)
    if not inside.any():
        return la, lo
    g_lat, g_lon = la[inside], lo[inside]
    w_lat, w_lon = g_lat.copy(), g_lon.copy()
    for _ in range(_GCJ_MAX_STEPS):
        dlat, dlon = _gcj02_offset(w_lat, w_lon)
        miss_lat = w_lat + dlat - g_lat
        miss_lon = w_lon + dlon - g_lon
        w_lat -= miss_lat
        w_lon -= miss_lon
        if max(float(np.max(np.abs(miss_lat))), float(np.max(np.abs(miss_lon)))) < _GCJ_TOLERANCE_DEG:
            break
    la[inside], lo[inside] = w_lat, w_lon
    return la, lo


def _unit(lat: FloatArray, lon: FloatArray) -> FloatArray:
    """Unit vectors (..., 3) for latitudes/longitudes in degrees."""
    phi = np.radians(lat)
    lmb = np.radians(lon)
    cos_phi = np.cos(phi)
    return np.stack([cos_phi * np.cos(lmb), cos_phi * np.sin(lmb), np.sin(phi)], axis=-1)
