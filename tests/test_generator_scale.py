"""The demo generator sized for bench/scale.py: keys, teams and lean records as options."""

from __future__ import annotations

import datetime as dt
import json

from usage_jobs.demo.generator import generate

END = dt.date(2026, 11, 22)


def _files(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_the_demo_sizes_given_explicitly_write_the_same_bytes(tmp_path):
    generate(tmp_path / "default", days=3, end=END, requests_per_day=300)
    generate(tmp_path / "explicit", days=3, end=END, requests_per_day=300, keys=60, teams=12, lean=False)
    assert _files(tmp_path / "default") == _files(tmp_path / "explicit")


def test_a_larger_organisation_has_its_keys_and_teams_and_lean_records(tmp_path):
    summary = generate(tmp_path / "big", days=2, end=END, requests_per_day=400, keys=150, teams=30, lean=True)
    inventory = json.loads((tmp_path / "big" / "inventory.json").read_text())
    keys, teams = inventory["keys"]["keys"], inventory["teams"]
    assert (summary["keys"], summary["teams"], len(keys), len(teams)) == (150, 30, 150, 30)
    assert len({k["key_alias"] for k in keys}) == 150 and len({t["team_alias"] for t in teams}) == 30
    assert {k["team_id"] for k in keys} - {None} == {t["team_id"] for t in teams}
    one = next((tmp_path / "big" / "logs" / "azure").rglob("*.json"))
    assert "hidden_params" not in json.loads(one.read_text())
