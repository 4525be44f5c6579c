"""Large export files are written gzip-compressed, byte-identical from one build to the next, the manifest saying so."""

import gzip
import hashlib
import json

from usage_jobs.defs.report import exports
from usage_jobs.defs.report.exports import ExportTable, write_exports


def test_a_large_export_is_gzipped_reproducibly_and_the_manifest_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(exports, "COMPRESS_OVER", 2_000)
    big = ExportTable("focus", ["day", "team", "cost"], frozenset({"cost"}), [{"day": "2026-11-20", "team": f"t{i}", "cost": i / 7} for i in range(500)])
    small = ExportTable("daily", ["day", "requests"], frozenset(), [{"day": "2026-11-20", "requests": 3}])
    files = {}
    for run in ("a", "b"):
        entries = write_exports(tmp_path / run, [big, small], {"period": "2026-11-20"}, generated_at=run)
        files[run] = {entry["file"]: (tmp_path / run / entry["file"]).read_bytes() for entry in entries}
    assert files["a"] == files["b"]  # no time or name in the gzip header
    assert sorted(files["a"]) == ["daily.csv", "daily.json", "focus.csv.gz", "focus.json.gz"]
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    for entry in manifest["files"]:
        stored = (tmp_path / "a" / entry["file"]).read_bytes()
        assert hashlib.sha256(stored).hexdigest() == entry["sha256"] and len(stored) == entry["bytes"]
        if entry["export"] == "focus":
            content = gzip.decompress(stored)
            assert entry["compression"] == "gzip" and len(content) == entry["uncompressed_bytes"] > len(stored)
            assert content == (exports.render_csv(big) if entry["format"] == "csv" else exports.render_json(big, {"period": "2026-11-20"}))
        else:
            assert "compression" not in entry
