"""`usage-report run --refetch-billing-month YYYY-MM`: the whole invoice month asked of IG1 again, on demand."""

import datetime as dt

import duckdb
import pytest

from conftest import DEMO_END
from usage_jobs import cli
from usage_jobs.demo.emulator import Faults, IG1Emulator

KEY = "cli-refetch-master-key"


def test_a_month_is_fetched_again_on_demand_and_a_withdrawn_day_cleared(cli_env, demo_org, monkeypatch, capsys):
    first = DEMO_END - dt.timedelta(days=1)
    with IG1Emulator.from_file(demo_org / "billing" / "ledger.json", KEY, today=DEMO_END + dt.timedelta(days=1)) as emulator:
        monkeypatch.setenv("IG1_BASE_URL", emulator.url)
        monkeypatch.setenv("IG1_MASTER_KEY", KEY)
        monkeypatch.setenv("IG1_USD_RATE", "1.1")
        assert cli.main(["run", "--start", str(first), "--end", str(DEMO_END), "--no-site"]) == 0
        emulator.faults = Faults(missing_days={first.isoformat()})  # IG1 withdraws its billing of that day
        capsys.readouterr()
        month = DEMO_END.strftime("%Y-%m")
        assert cli.main(["run", "--start", str(DEMO_END), "--end", str(DEMO_END), "--no-site", "--refetch-billing-month", month]) == 0
    assert f"and the whole of {month} again" in capsys.readouterr().out
    conn = duckdb.connect(str(cli_env / "w.duckdb"), read_only=True)
    assert conn.execute("SELECT month FROM billing_months").fetchall() == [(month,)]
    assert conn.execute("SELECT billed, withdrawn FROM billing_days WHERE day = ?", [first]).fetchone() == (True, True)
    assert conn.execute("SELECT count(*) FROM billed_usage WHERE day = ?", [first]).fetchone()[0] == 0


@pytest.mark.parametrize(("argument", "message"), [("2026-13", "is not a month"), ("November", "is not a month")])
def test_a_month_that_is_not_one_is_refused(cli_env, argument, message, capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(["run", "--start", "2026-11-10", "--end", "2026-11-10", "--refetch-billing-month", argument])
    assert stop.value.code == 2 and message in capsys.readouterr().err


def test_refetching_a_month_without_billing_names_the_setting(cli_env, monkeypatch, capsys):
    monkeypatch.delenv("IG1_MASTER_KEY", raising=False)
    assert cli.main(["run", "--start", "2026-11-10", "--end", "2026-11-10", "--refetch-billing-month", "2026-11"]) == 2
    assert "IG1_MASTER_KEY" in capsys.readouterr().err
