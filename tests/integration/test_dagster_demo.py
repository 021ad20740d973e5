"""`retention demo` at a small size: every figure it prints equals what tests/oracle.py
computes from the scenario's facts, and the runs are in the DAGSTER_HOME instance with
the marts' figures attached."""

from __future__ import annotations

import re
from collections import Counter
from datetime import timedelta
from decimal import Decimal

import duckdb
import pytest
from click.testing import CliRunner
from dagster import AssetKey, DagsterEventType, DagsterInstance, DagsterRunStatus

from orchestration.extract import BILLING_SYSTEMS
from orchestration.serving import serving_path
from retention_cli import main
from sandbox.scenario import load_scenario
from tests.oracle import Matcher, validate

pytestmark = pytest.mark.integration
CENT = Decimal("0.01")


@pytest.fixture(scope="module")
def demo(tmp_path_factory, dbt_manifest):
    """One demo run: 300 customers, its own workdir and DAGSTER_HOME."""
    from demo.run import ensure_dagster_home

    tmp = tmp_path_factory.mktemp("demo")
    with pytest.MonkeyPatch.context() as env:
        home = ensure_dagster_home(tmp / "dagster_home")
        env.setenv("DAGSTER_HOME", str(home))
        result = CliRunner().invoke(
            main, ["demo", "--customers", "300", "--workdir", str(tmp / "work")]
        )
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output, tmp / "work", home


def _section(output: str, title: str) -> dict[str, int]:
    """The `  name  1,234` lines under a heading."""
    lines = output.split(title + "\n", 1)[1].splitlines()
    rows = {}
    for line in lines:
        match = re.fullmatch(r"  (\S.*?)\s{2,}([\d,]+)", line)
        if not match:
            break
        rows[match[1]] = int(match[2].replace(",", ""))
    return rows


def _money(output: str, label: str) -> Decimal:
    return Decimal(re.search(rf"{label} \(USD\)\s+([\d,.]+)", output)[1].replace(",", ""))


def test_the_summary_equals_the_facts(demo):
    output, work, _ = demo
    scenario = load_scenario(work / "scenario.json")
    episodes = validate(scenario)

    subscriptions = Counter(s["billing_system"] for s in scenario.subscriptions)
    assert _section(output, "subscriptions loaded") == {
        s: subscriptions[s] for s in BILLING_SYSTEMS
    }

    statuses = _section(output, "episodes by validation status")
    assert statuses.pop("total") == len(episodes)
    assert statuses == Counter(e["validation_status"] for e in episodes)

    outcomes = Counter(e["validated_outcome"] for e in episodes)
    saved, canceled = outcomes["saved"], outcomes["canceled"]
    assert f"(saved {saved:,} / saved + canceled {saved + canceled:,})" in output
    assert f"{Decimal(saved) / (saved + canceled):.1%}" in output
    assert re.search(rf"  pending\s+{outcomes['pending']:,}  \(saves whose", output)
    assert _money(output, "saved MRR") == sum(e["saved_mrr"] for e in episodes).quantize(CENT)
    assert _money(output, "lost MRR") == sum(e["lost_mrr"] for e in episodes).quantize(CENT)

    # validation_30d for the day before as_of: the episodes that started 30 days earlier.
    cohort = scenario.as_of.date() - timedelta(days=31)
    expected = Counter(
        e["validation_status"] for e in episodes if e["first_landed_at"].date() == cohort
    )
    line = re.search(r"validation_30d \S+ \(episodes started (\S+)\): (.*)", output)
    assert line[1] == cohort.isoformat()
    printed = dict(re.findall(r"(\w+) ([\d,]+)", line[2]))  # none for "no episodes"
    assert {k: int(v.replace(",", "")) for k, v in printed.items()} == expected

    # Write-backs, a dry run by default: one action per cancel or billing offer, recorded
    # as what would be sent (dry_run), or failed when no subscription matched.
    matcher = Matcher(scenario)
    expected = Counter()
    for episode in episodes:
        matched = matcher.match(
            episode["billing_system"], episode["billing_id"], episode["first_landed_at"]
        )
        for session in episode["sessions"]:
            if session["action"] == "canceled" or (
                session["action"] == "offer_accepted" and session["offer_type"] != "custom"
            ):
                expected["dry_run" if matched else "failed (dry run)"] += 1
    assert (
        _section(output, "write-backs (writebacks.yml; marts.fct_billing_writebacks)") == expected
    )

    bi_file = serving_path(work / "warehouse.duckdb")
    assert f"DuckDB file for BI tools (read-only): {bi_file}" in output
    assert bi_file.resolve().is_file()  # the symlink names the last published build
    assert "make ui" in output

    # How to try the cancel page: one of the demo's subscriptions, in service and not
    # canceling (so an accepted pause has something to pause), with the collector's command.
    page = re.search(r"Try the cancel page for (\w+) subscription (\S+) ", output)
    assert page, output
    with duckdb.connect(str(bi_file), read_only=True) as con:
        status = con.execute(
            "select status, canceled_at from marts.dim_subscriptions "
            "where billing_system = ? and subscription_id = ?",
            list(page.groups()),
        ).fetchall()
    assert status == [("active", None)]
    assert "retention collector serve" in output


def test_the_runs_are_in_the_instance_with_the_marts_figures(demo):
    output, work, home = demo
    run_ids = re.search(r"dagster runs\s+(\w+), (\w+), (\w+)", output).groups()
    with DagsterInstance.from_config(str(home)) as instance:
        runs = {r.run_id[:8]: r for r in instance.get_runs()}
        assert [runs[i].job_name for i in run_ids] == [
            "billing_sync",
            "validation_30d_daily",
            "billing_writebacks_job",
        ]
        assert all(runs[i].status == DagsterRunStatus.SUCCESS for i in run_ids)

        def checks(run_id: str) -> dict:
            return {
                e.dagster_event.event_specific_data.check_name: e.dagster_event.event_specific_data
                for e in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION)
            }

        dbt_tests = checks(runs[run_ids[0]].run_id)
        assert len(dbt_tests) > 50  # the dbt tests, as asset checks
        assert all(check.passed for check in dbt_tests.values())
        # The write-backs' check warns of the sessions no subscription matched (a dry run
        # records them as failed).
        writebacks = checks(runs[run_ids[2]].run_id)["no_failed_writebacks"]
        assert not writebacks.passed and writebacks.metadata["failed"].value > 0

        def figures(*path: str) -> dict:
            event = instance.get_latest_materialization_event(AssetKey(list(path)))
            return event.asset_materialization.metadata

        assert "| all |" in figures("marts", "rpt_retention_summary")["summary"].value
        plot = figures("marts", "fct_repurchase_cohorts")["cumulative_revenue_plot"].value
        assert plot.startswith("![") and "data:image/png;base64," in plot
        assert "valid_save" in figures("marts", "fct_exit_episodes")["episodes_by_status"].value
        assert figures("validation_30d")["table"].value == "marts.validation_30d_daily"
        # Every validation day from the first with episodes to the day before as_of, in
        # one backfill run; the first day's cohort is the first landing's day.
        from orchestration.validation import validation_partitions

        last = re.search(r"validation_30d (\S+) \(episodes started", output)[1]
        first = re.search(r"every day from (\S+) validated, in one backfill run", output)[1]
        keys = validation_partitions().get_partition_keys()
        filled = instance.get_materialized_partitions(AssetKey("validation_30d"))
        assert filled == set(keys[keys.index(first) : keys.index(last) + 1])
        assert runs[run_ids[1]].tags["dagster/asset_partition_range_end"] == last
        landed = min(e["first_landed_at"] for e in validate(load_scenario(work / "scenario.json")))
        assert first == (landed.date() + timedelta(days=30)).isoformat()
        writebacks = figures("billing_writebacks")
        assert writebacks["dry_run"].value > 0 and writebacks["applied"].value == 0
        assert "| stripe |" in writebacks["ledger"].value


def test_a_bad_scenario_is_refused_before_the_last_demo_is_touched(demo, tmp_path):
    _, workdir, home = demo
    warehouse = workdir / "warehouse.duckdb"
    before = warehouse.stat()
    bad = tmp_path / "bad.json"
    bad.write_bytes(b'{"as_of": "yesterday", "reporting_currency": "USD", "fx_rates": {}}')
    with pytest.MonkeyPatch.context() as env:
        env.setenv("DAGSTER_HOME", str(home))
        result = CliRunner().invoke(
            main, ["demo", "--scenario", str(bad), "--workdir", str(workdir)]
        )
    assert result.exit_code != 0
    assert str(bad) in result.output and "as_of" in result.output, result.output
    assert "nothing was changed" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)  # no traceback
    after = warehouse.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
        before.st_ino,
        before.st_size,
        before.st_mtime_ns,
    )
