"""Drift measures on the same bins as a direct numpy/scipy computation, and the profile's bins from Spark."""
from __future__ import annotations

import numpy as np
import pytest

from jobs import drift


def test_psi_and_js_equal_a_direct_computation_on_the_same_bins():
    from scipy.spatial.distance import jensenshannon
    rng = np.random.default_rng(0)
    for _ in range(20):
        ref, cur = rng.integers(0, 500, 10), rng.integers(0, 500, 10)
        cur[rng.integers(0, 10)] = 0  # an empty bin: floored, not infinite
        p, q = ref / ref.sum(), cur / cur.sum()
        pe, qe = np.maximum(p, drift.EPS), np.maximum(q, drift.EPS)
        assert drift.psi(ref, cur) == pytest.approx(np.sum((qe - pe) * np.log(qe / pe)), abs=1e-9)
        assert drift.js_distance(ref, cur) == pytest.approx(jensenshannon(p, q, base=2), abs=1e-9)
    assert drift.psi([5, 5], [5, 5]) == 0 and drift.js_distance([1, 0], [0, 1]) == pytest.approx(1.0)


def test_wasserstein_of_binned_distributions_in_reference_spreads():
    ref = {"edges": [1.0, 2.0], "min": 0.0, "max": 3.0, "spread": 2.0, "counts": [0, 10, 0]}
    assert drift.wasserstein(ref, [0, 10, 0]) == 0
    assert drift.wasserstein(ref, [0, 0, 10]) == pytest.approx(0.5)   # all mass one bin (1.0) up, in spreads of 2
    assert drift.wasserstein(ref, [5, 0, 5]) == pytest.approx(0.375)  # half spread down, half up: 0.75 / 2 (CDFs cross)
    assert drift.wasserstein({**ref, "spread": 0}, [0, 0, 10]) is None


def test_a_profile_bins_the_reference_and_a_shifted_day_drifts_on_that_column_only(spark):
    rng = np.random.default_rng(1)
    n = 4000
    amount, channel = rng.lognormal(3, 1, n), rng.choice(["chip", "online", "swipe"], n, p=[0.5, 0.3, 0.2])
    rows = [(None if i % 50 == 0 else float(a), str(c), float(rng.normal())) for i, (a, c) in enumerate(zip(amount, channel))]
    ref_df = spark.createDataFrame(rows, "amount double, channel string, z double")
    prof = drift.profile(ref_df, ["amount", "z"], ["channel"], bins=10)
    a = prof["amount"]
    assert a["edges"] == sorted(a["edges"]) and len(a["edges"]) == 9 and a["nulls"] == n // 50 and a["rows"] == n
    assert sum(a["counts"]) + a["nulls"] == n
    values = np.array([r[0] for r in rows if r[0] is not None])
    direct = np.bincount(np.searchsorted(a["edges"], values, side="right"), minlength=10)
    assert a["counts"] == direct.tolist()  # the same bins as numpy's, value for value
    assert prof["channel"]["values"] == ["chip", "online", "swipe"] and prof["channel"]["counts"][-1] == 0

    def day(shift: float, new_channel: bool):
        r = [(None if v is None else v * shift, "crypto" if new_channel and i % 4 == 0 else c, z)
             for i, (v, c, z) in enumerate(rows)]
        counts = drift.bin_counts(spark.createDataFrame(r, "amount double, channel string, z double"), prof)
        return {c: drift.distances(prof[c], counts[c]) for c in prof}

    same = day(1.0, False)
    assert all(d["psi"] == 0 for d in same.values()) and same["amount"]["wasserstein"] == 0
    shifted = day(3.0, True)
    assert shifted["amount"]["psi"] > 0.25 and shifted["amount"]["wasserstein"] > 0.1
    assert shifted["channel"]["psi"] > 0.25 and shifted["channel"]["js_distance"] > 0.1  # a category never seen
    assert shifted["z"]["psi"] == 0


def test_bins_of_integer_codes_nulls_nan_and_strings_as_numpy_counts_them():
    import pyarrow as pa
    codes = pa.array([0, 3, None, 7, 3, 11], type=pa.int32())  # a vocabulary's codes; 11 is not listed
    b, null = drift.column_bins(codes, {"kind": "categorical", "values": ["3", "0", "7"]})
    assert null.tolist() == [False, False, True, False, False, False]
    assert [int(v) for v, n in zip(b, null) if not n] == [1, 0, 2, 0, 3]
    b, null = drift.column_bins(pa.array([1.0, float("nan"), None, 2.5, 9.0]), {"kind": "numeric", "edges": [1.0, 2.5]})
    assert null.tolist() == [False, True, True, False, False]  # NaN counts as null
    assert [int(v) for v, n in zip(b, null) if not n] == [1, 2, 2]  # an edge belongs to the bin above it
    b, null = drift.column_bins(pa.array(["chip", None, "crypto"]), {"kind": "categorical", "values": ["swipe", "chip"]})
    assert null.tolist() == [False, True, False] and [int(b[0]), int(b[2])] == [1, 2]


def test_a_days_bins_from_its_delta_files_equal_the_bins_spark_counts(spark, tmp_path):
    """On a local master monitoring reads the day's Parquet files with pyarrow (``local_files``): the same
    counts as Spark's pass over the same partition, and only that partition's rows."""
    from pyspark.sql import functions as F
    path = str(tmp_path / "features")
    df = (spark.range(0, 3000, 1, 3)
          .withColumn("ds", F.when(F.col("id") % 3 == 0, "2026-10-01").otherwise("2026-10-02"))
          .withColumn("amount", F.when(F.col("id") % 17 == 0, None).otherwise(F.rand(2) * 100))
          .withColumn("code", (F.col("id") % 5).cast("int"))
          .withColumn("channel", F.when(F.col("id") % 7 == 0, None).otherwise(F.element_at(F.array(*map(F.lit, ["chip", "online", "swipe", "crypto"])), (F.col("id") % 4 + 1).cast("int")))))
    df.write.format("delta").partitionBy("ds").save(path)
    day = spark.read.format("delta").load(path).where("ds = '2026-10-02'")
    spec = {"amount": {"kind": "numeric", "edges": [10.0, 50.0, 90.0]}, "code": {"kind": "categorical", "values": ["0", "1", "3"]},
            "channel": {"kind": "categorical", "values": ["chip", "online", "swipe"]}}
    files = drift.local_files(spark, day, path)
    assert files and all("ds=2026-10-02" in f for f in files)
    by_files, by_spark = drift.bin_counts(day, spec, files), drift.bin_counts(day, spec)
    assert by_files == by_spark and by_files["amount"]["rows"] == 2000
    assert by_files["channel"]["counts"][-1] == sum(1 for i in range(3000) if i % 3 and i % 7 and i % 4 == 3)  # crypto: other
