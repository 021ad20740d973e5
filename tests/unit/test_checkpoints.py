"""Checkpointed full syncs (orchestration.checkpoints): a source whose listing leaves
pending windows in its dlt state is run again until none are left, by `retention extract`
and by the Dagster load assets alike; an incremental run takes one round; a listing that
makes no progress fails, naming itself.

The fake source stands in for a sliced listing (dlt_sources/slices.py): each round lists
one window and leaves the rest in `state["slices"]`. dlt and DuckDB are real."""

import contextlib
import logging
from functools import partial

import dlt
import duckdb
import pytest
from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, materialize
from dagster_dlt import DagsterDltResource, dlt_assets

from orchestration.checkpoints import NoProgress, run_rounds, unfinished_listings
from orchestration.extract import _run_one, pipeline
from orchestration.loads import checkpointed_run, merge_rounds

WINDOWS = [{"lo": 0, "hi": 10}, {"lo": 10, "hi": 20}, {"lo": 20, "hi": 30}]


@dlt.source(name="fake")
def fake_source(stuck: bool = False, continues_listing: bool = False):
    """`items`: a first run lists WINDOWS one per round (two rounds leave windows
    pending); later runs list what is new since (none here). `stuck`: a round that
    lists nothing and leaves its windows as they were. `syncs`: a row per sync, none in
    a round that continues a listing (as the billing sources' `syncs`)."""

    @dlt.resource(name="items", primary_key="id", write_disposition="merge")
    def items():
        state = dlt.current.resource_state("items")
        if state.get("listed") and "slices" not in state:
            return  # incremental: nothing new
        pending = state.get("slices", WINDOWS)
        if stuck:
            state["slices"] = pending
            return
        window, rest = pending[0], pending[1:]
        yield [{"id": i} for i in range(window["lo"], window["hi"])]
        if rest:
            state["slices"] = rest
        else:
            del state["slices"]
            state["listed"] = True

    @dlt.resource(name="others", primary_key="id", write_disposition="merge")
    def others():
        yield {"id": 1}

    @dlt.resource(name="syncs", write_disposition="append")
    def syncs():
        if not continues_listing:
            yield {"first_round_of": "sync"}

    return items, others, syncs


@pytest.fixture
def where(tmp_path):
    return {"database": tmp_path / "warehouse.duckdb", "pipelines_dir": tmp_path / "dlt"}


def run_cli(where, **options):
    return _run_one(
        "fake",
        partial(fake_source, **options),
        where["database"],
        where["pipelines_dir"],
        contextlib.nullcontext(),
    )


def syncs_rows(database) -> int:
    with duckdb.connect(str(database), read_only=True) as db:
        return db.execute("select count(*) from raw_fake.syncs").fetchone()[0]


def ids(database) -> list[int]:
    with duckdb.connect(str(database), read_only=True) as db:
        return [row[0] for row in db.sql("select id from raw_fake.items order by id").fetchall()]


def test_unfinished_listings_are_the_resources_with_pending_windows():
    state = {
        "sources": {
            "stripe": {
                "resources": {
                    "invoices": {"slices": [{"lo": 0, "hi": 5}], "slices_cursor": 3},
                    "customers": {"slices": []},
                    "events": {"cursor": 9},
                }
            },
            "other": {},
        }
    }
    assert unfinished_listings(state) == {"stripe invoices": [{"lo": 0, "hi": 5}]}
    assert unfinished_listings(state, {"customers", "events"}) == {}
    assert unfinished_listings({}) == {}


def test_rounds_run_until_no_window_is_pending_and_say_what_continues(caplog):
    pending = iter([{"s r": [1, 2]}, {"s r": [2]}, {}])
    with caplog.at_level(logging.INFO):
        results = run_rounds(lambda: "round", lambda: next(pending), logging.getLogger("t"))
    assert results == ["round"] * 3
    assert [r.getMessage() for r in caplog.records] == [
        "full listing of s r continues: 2 windows pending",
        "full listing of s r continues: 1 windows pending",
    ]


def test_the_same_pending_windows_twice_fail_naming_the_listing():
    pending = iter([{"s a": [1], "s b": [5]}, {"s a": [2], "s b": [5]}])
    with pytest.raises(NoProgress, match="full listing of s b made no progress in round 2"):
        run_rounds(lambda: None, lambda: next(pending), logging.getLogger("t"))


def test_extract_runs_rounds_until_the_listing_is_done_then_incremental_takes_one(where):
    first = run_cli(where)

    assert first.error is None
    assert first.rounds == len(WINDOWS)
    assert first.rows == {"items": 30, "others": 3, "syncs": 1}  # summed over the rounds
    assert ids(where["database"]) == list(range(30))
    assert syncs_rows(where["database"]) == 1  # the first round's: T of the whole listing
    state = pipeline("fake", where["database"], where["pipelines_dir"]).state
    assert unfinished_listings(state) == {}

    again = run_cli(where)

    assert (again.error, again.rounds, again.rows) == (None, 1, {"others": 1, "syncs": 1})
    assert ids(where["database"]) == list(range(30))
    assert syncs_rows(where["database"]) == 2


def test_a_resumed_run_lists_only_the_windows_left(where):
    p = pipeline("fake", where["database"], where["pipelines_dir"])
    p.run(fake_source())  # one round, then the run stopped: two windows pending
    p.drop()  # the resumed run reads the state from the warehouse (a new machine)

    resumed = run_cli(where)

    assert (resumed.error, resumed.rounds, resumed.rows["items"]) == (None, 2, 20)
    assert "syncs" not in resumed.rows  # it continues the stopped run's listing
    assert ids(where["database"]) == list(range(30))
    assert syncs_rows(where["database"]) == 1


def test_extract_fails_a_listing_that_makes_no_progress(where):
    summary = run_cli(where, stuck=True)

    assert summary.error is not None
    assert "full listing of fake items made no progress in round 2" in summary.error


def dagster_assets(where):
    @dlt_assets(
        dlt_source=fake_source(),
        dlt_pipeline=pipeline("fake", where["database"], where["pipelines_dir"]),
        name="fake_dlt",
    )
    def _assets(context: AssetExecutionContext, dlt: DagsterDltResource):
        p = pipeline("fake", where["database"], where["pipelines_dir"])
        yield from checkpointed_run(context, dlt, fake_source, p, {"items", "others", "syncs"})

    return _assets


def test_dagster_reports_each_asset_once_with_the_rows_of_every_round(where):
    result = materialize([dagster_assets(where)], resources={"dlt": DagsterDltResource()})

    assert result.success
    events = result.get_asset_materialization_events()
    by_key = {e.asset_key.to_user_string(): e.materialization.metadata for e in events}
    assert sorted(by_key) == ["dlt_fake_items", "dlt_fake_others", "dlt_fake_syncs"]
    assert by_key["dlt_fake_items"]["rows_loaded"].value == 30
    assert by_key["dlt_fake_items"]["dlt_rounds"].value == 3
    assert ids(where["database"]) == list(range(30))
    assert syncs_rows(where["database"]) == 1

    again = materialize([dagster_assets(where)], resources={"dlt": DagsterDltResource()})

    metadata = again.get_asset_materialization_events()[0].materialization.metadata
    assert "dlt_rounds" not in metadata  # one round: dagster-dlt's own results


def test_merged_results_keep_the_first_start_and_every_job():
    def result(rows, started, job):
        metadata = {"started_at": started, "jobs": [job]}
        if rows:
            metadata["rows_loaded"] = MetadataValue.int(rows)
        return MaterializeResult(asset_key="a", metadata=metadata)

    [merged] = merge_rounds(
        [[result(5, "t1", "j1")], [result(0, "t2", "j2")], [result(2, "t3", "j3")]]
    )

    assert merged.metadata["rows_loaded"].value == 7
    assert merged.metadata["started_at"] == "t1"
    assert merged.metadata["jobs"] == ["j1", "j2", "j3"]
    assert merged.metadata["dlt_rounds"].value == 3
