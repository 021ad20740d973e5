"""`spark` as a warehouse choice (#15): the setting, the lake it lands in, and the dlt
destination the loads use there."""

from __future__ import annotations

import pytest

from orchestration import settings
from orchestration.extract import destination, working_dir

pytestmark = pytest.mark.spark


def test_spark_is_a_warehouse_and_the_refusal_lists_it():
    assert settings.warehouse_kind({"RETENTION_WAREHOUSE": " Spark "}) == "spark"
    with pytest.raises(ValueError, match="choose duckdb, postgres or spark"):
        settings.warehouse_kind({"RETENTION_WAREHOUSE": "databricks"})


def test_the_lake_is_an_absolute_folder_or_a_url_as_given(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert settings.spark_lake({}) == str(settings.DEFAULT_SPARK_LAKE)
    assert settings.spark_lake({"RETENTION_SPARK_LAKE": "lake"}) == str(tmp_path / "lake")
    url = {"RETENTION_SPARK_LAKE": "s3://bucket/retention/"}
    assert settings.spark_lake(url) == "s3://bucket/retention"


def test_spark_loads_go_to_the_lake_with_state_of_their_own(tmp_path, monkeypatch):
    monkeypatch.setenv("RETENTION_SPARK_LAKE", str(tmp_path / "lake"))
    lake = destination(None, "spark")
    assert lake.destination_name == "filesystem"
    assert lake.config_params["bucket_url"] == str(tmp_path / "lake")
    state = working_dir(None, tmp_path / "dlt", "spark")
    assert state.name.startswith("lake-")
    assert state != working_dir(None, tmp_path / "dlt", "duckdb")
