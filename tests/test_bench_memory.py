import json

import pytest

from trainscape.bench import memory as bench_memory


def _row(runs, cache, mib):
    return {"runs": runs, "cache": cache, "peak_rss_bytes": mib * 2**20, "wall_seconds": 1.0,
            "chunk_size": 64, "n_chunks": 1, "file_bytes": {"curves.parquet": 2**20}}


def test_report_compares_each_sweep_with_the_first_of_the_same_cache_state():
    rows = [_row(10_000, "cold", 540), _row(10_000, "warm", 400),
            _row(1_000_000, "cold", 594), _row(1_000_000, "warm", 440)]
    lines = bench_memory.format_report(rows).splitlines()[2:]
    assert [ln.split(" | ")[5] for ln in lines] == ["1.00x", "1.00x", "1.10x", "1.10x"]
    assert lines[1].startswith("| 10,000 | warm | 64 | 1 | 400 |")


def test_config_needs_whole_learning_rate_rows():
    assert bench_memory.config(300)["sweep"]["seed"] == {"range": 3}
    with pytest.raises(ValueError, match="multiple of 100"):
        bench_memory.config(150)


def test_a_sweep_runs_in_its_own_process_with_the_given_compile_cache(tmp_path):
    cache = tmp_path / "cache"
    row = bench_memory.measure(100, tmp_path, str(cache))
    assert row["runs"] == 100 and row["peak_rss_bytes"] > 50 * 2**20
    assert row["n_chunks"] >= 1 and row["file_bytes"]["runs.parquet"] > 0
    # the child compiled into the folder it was given, not the user's cache
    assert any(cache.rglob("*")), "the child wrote nothing to its compile cache"
    assert not (tmp_path / "out-100").exists()  # the sweep's folder is removed after
    json.dumps(row)  # what main() writes to memory.json
