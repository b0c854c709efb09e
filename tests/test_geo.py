"""scangate.geo: adcodes, district representative points and nearest-district lookup."""
from __future__ import annotations

import math
import subprocess
import sys
import time
from importlib import metadata

import numpy as np
import pytest

from scangate.errors import InvalidArgument
from scangate.geo import (
    EARTH_RADIUS_KM,
    DistrictIndex,
    adcode_matches,
    default_index,
    haversine_km,
)

# Rough bounding boxes (lat_min, lat_max, lon_min, lon_max) of a few provinces.
GUANGDONG = (20.1, 25.6, 109.6, 117.4)
BEIJING = (39.4, 41.1, 115.4, 117.6)
XINJIANG = (34.3, 49.2, 73.4, 96.4)
SICHUAN = (26.0, 34.4, 97.3, 108.6)


@pytest.fixture(scope="module")
def index() -> DistrictIndex:
    return default_index()


def _inside(lat: float, lon: float, box: tuple[float, float, float, float]) -> bool:
    return box[0] <= lat <= box[1] and box[2] <= lon <= box[3]


# -- the data and its source ---------------------------------------------------------


def test_source_is_recorded(index: DistrictIndex) -> None:
    src = index.source
    assert src.package == "geotool-cn"
    assert src.version and src.version == metadata.version("geotool-cn")
    assert src.districts > 2500
    assert src.districts == index.adcodes.size
    assert len(src.data_date) == 10 and src.data_date[4] == "-" and src.data_date[7] == "-"
    assert src.origin
    assert len(src.data_sha256) == 64


def test_table_shape_and_types(index: DistrictIndex) -> None:
    codes = index.adcodes
    assert codes.dtype == np.int32
    assert np.all(np.diff(codes) > 0)  # sorted, unique
    assert np.all((codes >= 110000) & (codes <= 829999))
    assert index.lat.dtype == np.float64 and index.lon.dtype == np.float64
    assert index.lat.shape == index.lon.shape == codes.shape
    assert len(index.names) == codes.size and all(index.names)
    assert np.all((index.lat > 3) & (index.lat < 54) & (index.lon > 73) & (index.lon < 136))
    # The county-level units a scan can report: districts, prefecture-level cities
    # without districts and province-administered cities are all leaves.
    assert index.is_known([440106, 441900, 419001, 659001]).all()
    assert set(np.asarray([440106, 441900, 419001, 659001])) <= set(codes.tolist())
    assert 440100 not in set(codes.tolist())  # a city with districts is not a leaf


def test_arrays_are_read_only(index: DistrictIndex) -> None:
    with pytest.raises(ValueError):
        index.adcodes[0] = 0
    with pytest.raises(ValueError):
        index.lat[0] = 0.0


def test_default_index_is_cached() -> None:
    assert default_index() is default_index()


def test_import_is_light() -> None:
    """Importing scangate.geo loads no data; loading it imports no pandas."""
    code = (
        "import sys, scangate.geo as g\n"
        "assert 'GeoToolCN' not in sys.modules, 'data package imported eagerly'\n"
        "ix = g.default_index()\n"
        "assert ix.adcodes.size > 2500\n"
        "heavy = [m for m in ('pandas', 'shapely', 'geopandas') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


# -- nearest -----------------------------------------------------------------------------


def test_representative_points_resolve_to_themselves(index: DistrictIndex) -> None:
    codes, dist = index.nearest(index.lat, index.lon)
    assert codes.dtype == np.int32 and dist.dtype == np.float64
    np.testing.assert_array_equal(codes, index.adcodes)
    assert np.all(dist < 1e-6)


@pytest.mark.parametrize(
    ("lat", "lon", "prefix", "exact"),
    [
        (23.125, 113.36, "4401", 440106),  # Tianhe, Guangzhou
        (39.93, 116.42, "1101", 110101),  # Dongcheng, Beijing
        (31.23, 121.49, "3101", 310101),  # Huangpu, Shanghai
        (30.66, 104.07, "5101", None),  # Chengdu centre
        (43.83, 87.62, "6501", None),  # Urumqi centre
        (22.54, 114.06, "4403", None),  # Futian, Shenzhen
        (29.56, 106.55, "5001", None),  # Yuzhong, Chongqing
        (23.02, 113.75, "4419", 441900),  # Dongguan: a city without districts
        (25.03, 121.56, "71", 710000),  # Taipei: the data has Taiwan as one entry
    ],
)
def test_city_centres_resolve(
    index: DistrictIndex, lat: float, lon: float, prefix: str, exact: int | None
) -> None:
    codes, dist = index.nearest(np.array([lat]), np.array([lon]))
    assert adcode_matches(codes, [prefix])[0], (codes, index.name(int(codes[0])))
    if exact is not None:
        assert codes[0] == exact
    # The distance is the one to the representative point of the answer.
    clat, clon = index.centroid(codes)
    assert dist[0] == pytest.approx(float(haversine_km(lat, lon, clat[0], clon[0])))
    assert dist[0] < 300.0


def test_invalid_points_give_zero_and_inf(index: DistrictIndex) -> None:
    lat = np.array([np.nan, 30.0, 91.0, -90.5, 30.0, np.inf, 30.0, 23.125])
    lon = np.array([113.0, np.nan, 113.0, 113.0, 180.5, 113.0, -np.inf, 113.36])
    codes, dist = index.nearest(lat, lon)
    np.testing.assert_array_equal(codes[:-1], 0)
    assert np.all(np.isinf(dist[:-1]))
    assert codes[-1] == 440106 and np.isfinite(dist[-1])  # the valid one still resolves


def test_max_km_refuses_points_abroad(index: DistrictIndex) -> None:
    paris = (np.array([48.85, 23.125]), np.array([2.35, 113.36]))
    codes, dist = index.nearest(*paris)
    assert codes[0] != 0 and dist[0] > 3000.0  # snapped to some western county
    codes, dist = index.nearest(*paris, max_km=500.0)
    assert codes[0] == 0 and math.isinf(dist[0])
    assert codes[1] == 440106 and dist[1] < 500.0


def test_nearest_broadcasts_and_keeps_shape(index: DistrictIndex) -> None:
    lat = np.array([[39.93, 31.23], [23.125, np.nan]])
    lon = np.array([[116.42, 121.49], [113.36, 0.0]])
    codes, dist = index.nearest(lat, lon)
    assert codes.shape == dist.shape == (2, 2)
    np.testing.assert_array_equal(codes, [[110101, 310101], [440106, 0]])
    codes, _ = index.nearest(39.93, np.array([116.42, 116.42]))
    np.testing.assert_array_equal(codes, [110101, 110101])
    codes, dist = index.nearest(np.array([]), np.array([]))
    assert codes.shape == (0,) and dist.shape == (0,)


def test_nearest_is_exact_against_brute_force(index: DistrictIndex) -> None:
    """The grid is an exact index: same answer as comparing every district."""
    rng = np.random.default_rng(2260)
    lat = np.concatenate(
        [
            rng.uniform(15, 54, 6000),
            np.round(rng.uniform(15, 54, 3000) * 2) / 2 + rng.normal(0, 1e-6, 3000),  # cell edges
            np.repeat(index.lat[::7], 4) + rng.normal(0, 0.05, index.lat[::7].size * 4),
            rng.uniform(-89, 89, 1000),  # anywhere on Earth: the brute-force path
        ]
    )
    lon = np.concatenate(
        [
            rng.uniform(73, 136, 6000),
            np.round(rng.uniform(73, 136, 3000) * 2) / 2 + rng.normal(0, 1e-6, 3000),
            np.repeat(index.lon[::7], 4) + rng.normal(0, 0.05, index.lon[::7].size * 4),
            rng.uniform(-179, 179, 1000),
        ]
    )
    codes, dist = index.nearest(lat, lon)

    def unit(la: np.ndarray, lo: np.ndarray) -> np.ndarray:
        la, lo = np.radians(la), np.radians(lo)
        return np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], axis=-1)

    best = np.argmax(unit(lat, lon) @ unit(index.lat, index.lon).T, axis=1)  # every pair
    expected = haversine_km(lat, lon, index.lat[best], index.lon[best])
    np.testing.assert_allclose(dist, expected, rtol=0, atol=1e-6)
    # Same district too, unless two are equidistant to the millimetre.
    differ = codes != index.adcodes[best]
    assert np.all(np.abs(dist[differ] - expected[differ]) < 1e-6)
    assert np.sum(differ) <= 1


def test_nearest_handles_100k_points_quickly(index: DistrictIndex) -> None:
    rng = np.random.default_rng(7)
    lat = rng.uniform(18, 50, 100_000)
    lon = rng.uniform(75, 130, 100_000)
    index.nearest(lat[:10], lon[:10])  # the grid is built on first use
    started = time.perf_counter()
    codes, dist = index.nearest(lat, lon)
    elapsed = time.perf_counter() - started
    assert np.all(codes > 0) and np.all(np.isfinite(dist))
    assert elapsed < 2.0, f"100k points took {elapsed:.2f} s"  # ~0.1 s on one core


# -- centroid, is_known, name ----------------------------------------------------------


def test_centroid_of_a_district_is_its_point(index: DistrictIndex) -> None:
    i = int(np.searchsorted(index.adcodes, 440106))
    lat, lon = index.centroid(np.array([440106]))
    assert lat[0] == index.lat[i] and lon[0] == index.lon[i]
    assert _inside(lat[0], lon[0], GUANGDONG)


@pytest.mark.parametrize(
    ("codes", "box"),
    [
        ([44, 4401, 440000, 440100, 4419], GUANGDONG),
        ([11, 1101, 110000, 110100], BEIJING),  # Beijing has no 110100 entry: mean of districts
        ([65, 6501, 650000, 659001], XINJIANG),
        ([51, 5101, 510000], SICHUAN),
    ],
)
def test_centroid_of_a_prefix_lies_in_the_province(
    index: DistrictIndex, codes: list[int], box: tuple[float, float, float, float]
) -> None:
    lat, lon = index.centroid(np.array(codes))
    assert lat.shape == lon.shape == (len(codes),)
    for la, lo in zip(lat, lon):
        assert _inside(float(la), float(lo), box), (codes, la, lo)


def test_centroid_prefix_forms_agree(index: DistrictIndex) -> None:
    lat, lon = index.centroid([44, 440000, 4401, 440100])
    assert lat[0] == lat[1] and lon[0] == lon[1]
    assert lat[2] == lat[3] and lon[2] == lon[3]
    assert (lat[0], lon[0]) != (lat[2], lon[2])


def test_centroid_unknown_is_nan(index: DistrictIndex) -> None:
    lat, lon = index.centroid(np.array([999999, 0, -44, 123, 440199, 12345678, 440106]))
    assert np.all(np.isnan(lat[:-1])) and np.all(np.isnan(lon[:-1]))
    assert np.isfinite(lat[-1]) and np.isfinite(lon[-1])


def test_is_known(index: DistrictIndex) -> None:
    known = index.is_known(np.array([440106, 440100, 440000, 44, 4401, 110100, 441900]))
    assert known.dtype == np.bool_ and known.all()
    unknown = index.is_known(np.array([999999, 0, 123, 440199, 12345678, -440106, 450000 + 99]))
    assert not unknown.any()


def test_name(index: DistrictIndex) -> None:
    assert index.name(440106) == "天河区"
    assert index.name(440100) == "广州市"
    assert index.name(440000) == "广东省"
    assert index.name(44) == "广东省"
    assert index.name(999999) is None
    assert index.name(0) is None


# -- haversine and prefix matching -------------------------------------------------------


def test_haversine_beijing_shanghai() -> None:
    d = float(haversine_km(39.9042, 116.4074, 31.2304, 121.4737))
    assert d == pytest.approx(1068.0, rel=0.02)


def test_haversine_properties() -> None:
    lat1 = np.array([0.0, 39.9, 10.0, np.nan])
    lon1 = np.array([0.0, 116.4, 20.0, 0.0])
    lat2 = np.array([0.0, 39.9, -10.0, 0.0])
    lon2 = np.array([180.0, 116.4, -160.0, 0.0])
    d = haversine_km(lat1, lon1, lat2, lon2)
    assert d[0] == pytest.approx(math.pi * EARTH_RADIUS_KM)  # antipodes
    assert d[1] == 0.0
    assert d[2] == pytest.approx(math.pi * EARTH_RADIUS_KM)
    assert np.isnan(d[3])
    np.testing.assert_allclose(d[:3], haversine_km(lat2, lon2, lat1, lon1)[:3])
    # One degree of latitude is about 111.2 km; broadcasting a scalar against an array.
    assert haversine_km(0.0, 0.0, np.array([1.0, 2.0]), 0.0) == pytest.approx([111.195, 222.39], rel=1e-3)


def test_adcode_matches_prefix_semantics() -> None:
    code = np.array([440106])
    for prefix in ("4", "44", "440", "4401", "44010", "440106"):
        assert adcode_matches(code, [prefix])[0], prefix
    for prefix in ("4402", "45", "440107", "440116", "5", "0", "04"):
        assert not adcode_matches(code, [prefix])[0], prefix


def test_adcode_matches_batches() -> None:
    codes = np.array([440106, 440201, 450101, 110101, 0, -1, 1234567], dtype=np.int64)
    np.testing.assert_array_equal(
        adcode_matches(codes, ["4401"]), [True, False, False, False, False, False, False]
    )
    np.testing.assert_array_equal(
        adcode_matches(codes, ["4401", "45", "110101"]), [True, False, True, True, False, False, False]
    )
    np.testing.assert_array_equal(adcode_matches(codes, ["44"]), [True, True, False, False, False, False, False])
    assert not adcode_matches(codes, []).any()
    assert adcode_matches(codes.astype(np.int32).reshape(7, 1), ["44"]).shape == (7, 1)


@pytest.mark.parametrize("bad", ["", "44a", "1234567", "４４", "-44", " 44"])
def test_adcode_matches_rejects_bad_prefixes(bad: str) -> None:
    with pytest.raises(InvalidArgument):
        adcode_matches(np.array([440106]), [bad])


def test_is_district_code_agrees_with_is_district() -> None:
    # the per-request check (a set) and the batch check (numpy) must never disagree
    from scangate import geo as _geo

    ix = _geo.default_index()
    sample = [int(c) for c in ix.adcodes[::97]] + [999999, 440100, 440000, 110000, 100000, 710000, 820000]
    assert [ix.is_district_code(c) for c in sample] == ix.is_district(sample).tolist()


# -- GCJ-02 ---------------------------------------------------------------------------

# Published pairs (WGS-84 lat, lon -> GCJ-02 lat, lon): eviltransform's test
# vectors (Shanghai, Shenzhen, Beijing) and coordtransform's (Tiananmen).
GCJ02_PAIRS = [
    (31.1774276, 121.5272106, 31.17530398364597, 121.531541859215),
    (22.543847, 113.912316, 22.540796131694766, 113.9171764808363),
    (39.911954, 116.377817, 39.91334545536069, 116.38404722455657),
    (39.915, 116.404, 39.91640428150164, 116.41024449916938),
]


def _gcj02_reference(lat: float, lon: float) -> tuple[float, float]:
    """The published forward formula, written out scalar by scalar: the oracle
    the vectorised implementation is held to."""
    a, ee = 6378245.0, 0.00669342162296594323
    if not (72.004 <= lon <= 137.8347 and 0.8293 <= lat <= 55.8271):
        return lat, lon
    x, y = lon - 105.0, lat - 35.0
    dlat = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * math.sqrt(abs(x))
    dlat += (20.0 * math.sin(6.0 * x * math.pi) + 20.0 * math.sin(2.0 * x * math.pi)) * 2.0 / 3.0
    dlat += (20.0 * math.sin(y * math.pi) + 40.0 * math.sin(y / 3.0 * math.pi)) * 2.0 / 3.0
    dlat += (160.0 * math.sin(y / 12.0 * math.pi) + 320 * math.sin(y * math.pi / 30.0)) * 2.0 / 3.0
    dlon = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * math.sqrt(abs(x))
    dlon += (20.0 * math.sin(6.0 * x * math.pi) + 20.0 * math.sin(2.0 * x * math.pi)) * 2.0 / 3.0
    dlon += (20.0 * math.sin(x * math.pi) + 40.0 * math.sin(x / 3.0 * math.pi)) * 2.0 / 3.0
    dlon += (150.0 * math.sin(x / 12.0 * math.pi) + 300.0 * math.sin(x / 30.0 * math.pi)) * 2.0 / 3.0
    rad = lat / 180.0 * math.pi
    magic = 1 - ee * math.sin(rad) ** 2
    dlat = (dlat * 180.0) / ((a * (1 - ee)) / (magic * math.sqrt(magic)) * math.pi)
    dlon = (dlon * 180.0) / (a / math.sqrt(magic) * math.cos(rad) * math.pi)
    return lat + dlat, lon + dlon


@pytest.mark.parametrize("wlat, wlon, glat, glon", GCJ02_PAIRS)
def test_gcj02_published_pairs(wlat: float, wlon: float, glat: float, glon: float) -> None:
    from scangate.geo import gcj02_to_wgs84, wgs84_to_gcj02

    f_lat, f_lon = wgs84_to_gcj02(wlat, wlon)
    assert (float(f_lat), float(f_lon)) == pytest.approx((glat, glon), abs=1e-9)
    b_lat, b_lon = gcj02_to_wgs84(glat, glon)
    assert haversine_km(b_lat, b_lon, wlat, wlon) * 1000 < 0.01       # within 1 cm
    # the shift is what makes converting worth it: hundreds of metres
    assert 100 < haversine_km(wlat, wlon, glat, glon) * 1000 < 1000


def test_gcj02_round_trips_within_a_metre_all_over_china() -> None:
    from scangate.geo import gcj02_to_wgs84, wgs84_to_gcj02

    rng = np.random.default_rng(20240501)
    lat = rng.uniform(18.0, 53.5, 5000)
    lon = rng.uniform(73.5, 135.0, 5000)
    ref = np.array([_gcj02_reference(a, b) for a, b in zip(lat, lon)])
    g_lat, g_lon = wgs84_to_gcj02(lat, lon)
    np.testing.assert_allclose(g_lat, ref[:, 0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(g_lon, ref[:, 1], rtol=0, atol=1e-12)
    w_lat, w_lon = gcj02_to_wgs84(g_lat, g_lon)
    assert float(np.max(haversine_km(w_lat, w_lon, lat, lon))) * 1000 < 1.0
    # and the other way round: a GCJ-02 point converted, then shifted again, is itself
    back_lat, back_lon = wgs84_to_gcj02(*gcj02_to_wgs84(lat, lon))
    assert float(np.max(haversine_km(back_lat, back_lon, lat, lon))) * 1000 < 1.0


def test_gcj02_outside_china_is_wgs84() -> None:
    from scangate.geo import gcj02_to_wgs84, in_gcj02_area, wgs84_to_gcj02

    lat = np.array([48.8566, -33.8688, 0.0, 60.0, 35.0])      # Paris, Sydney, null island, Siberia, 35N 140E
    lon = np.array([2.3522, 151.2093, 0.0, 100.0, 140.0])
    assert not in_gcj02_area(lat, lon).any()
    for fn in (gcj02_to_wgs84, wgs84_to_gcj02):
        out_lat, out_lon = fn(lat, lon)
        np.testing.assert_array_equal(out_lat, lat)
        np.testing.assert_array_equal(out_lon, lon)


def test_gcj02_broadcasts_and_leaves_its_inputs_alone() -> None:
    from scangate.geo import gcj02_to_wgs84

    lat = np.array([[31.2, 48.85], [39.9, 22.5]])
    lon = np.array([[121.5, 2.35], [116.4, 113.9]])
    before = lat.copy(), lon.copy()
    w_lat, w_lon = gcj02_to_wgs84(lat, lon)
    assert w_lat.shape == w_lon.shape == (2, 2)
    np.testing.assert_array_equal(lat, before[0])
    np.testing.assert_array_equal(lon, before[1])
    assert (w_lat[0, 1], w_lon[0, 1]) == (48.85, 2.35)            # Paris: unchanged
    s_lat, s_lon = gcj02_to_wgs84(31.2, 121.5)                     # scalars give 0-d arrays
    assert s_lat.shape == () and float(s_lat) == pytest.approx(w_lat[0, 0], abs=1e-12)
    one_lat, _ = gcj02_to_wgs84(np.array([39.9, 40.0]), 116.4)     # a scalar against an array
    assert one_lat.shape == (2,)
