"""The state database's one opener (statedb): every user gets the same durability."""

from __future__ import annotations

import sqlite3
from contextlib import closing

import pytest

import statedb


def test_a_connection_is_wal_fully_synchronous_and_waits_for_writers(tmp_path):
    path = tmp_path / "new" / "state.sqlite"
    with closing(statedb.connect(path)) as con:
        assert con.execute("pragma journal_mode").fetchone() == ("wal",)
        assert con.execute("pragma synchronous").fetchone() == (2,)  # FULL
        assert con.execute("pragma busy_timeout").fetchone() == (statedb.BUSY_TIMEOUT_MS,)
        assert con.isolation_level is None


def test_a_failed_transaction_leaves_nothing(tmp_path):
    path = tmp_path / "state.sqlite"
    with closing(statedb.connect(path)) as con:
        con.execute("create table t (x integer)")
        with pytest.raises(ZeroDivisionError), statedb.transaction(con):
            con.execute("insert into t values (1)")
            raise ZeroDivisionError
        with statedb.transaction(con):
            con.execute("insert into t values (2)")
        assert con.execute("select x from t").fetchall() == [(2,)]


def test_read_only_never_creates_the_file_nor_writes(tmp_path):
    missing = tmp_path / "missing.sqlite"
    with pytest.raises(sqlite3.OperationalError):
        statedb.connect_read_only(missing).execute("select 1")
    assert not missing.exists()
    path = tmp_path / "state.sqlite"
    with closing(statedb.connect(path)) as con:
        con.execute("create table t (x integer)")
    with closing(statedb.connect_read_only(path)) as ro, pytest.raises(sqlite3.OperationalError):
        ro.execute("insert into t values (1)")
