"""dlt's retried-job warnings carry a traceback in the message text; commands run by hand
print the error's last line only (a full disk printed a traceback per job in CI)."""

from __future__ import annotations

import logging

import pytest

from orchestration.logs import log_to_stderr

RETRIED = (
    "Job for events.eb4610d8f0.sql retried in load 1796459114.55 with message "
    "Traceback (most recent call last):\n"
    '  File "sql_client.py", line 543, in _wrap\n'
    "    return f(self, *args, **kwargs)\n"
    "_duckdb.TransactionException: Failed to commit: No space left on device\n"
    "\n"
    "The above exception was the direct cause of the following exception:\n"
    "\n"
    "Traceback (most recent call last):\n"
    '  File "client.py", line 568, in run_managed\n'
    "dlt.destinations.exceptions.DatabaseTransientException: Failed to commit: "
    "No space left on device\n"
)


@pytest.fixture
def dlt_logger():
    logger = logging.getLogger("dlt")
    filters, level = list(logger.filters), logger.level
    logger.setLevel(logging.INFO)
    log_to_stderr()
    yield logger
    logger.filters[:] = filters
    logger.setLevel(level)
    logging.getLogger("retention").handlers.clear()


def test_a_retried_job_warning_keeps_the_error_and_drops_the_traceback(dlt_logger, caplog):
    with caplog.at_level(logging.INFO, logger="dlt"):
        dlt_logger.warning(RETRIED)
    (message,) = [record.getMessage() for record in caplog.records]
    assert "Traceback" not in message
    assert message == (
        "Job for events.eb4610d8f0.sql retried in load 1796459114.55 with message "
        "dlt.destinations.exceptions.DatabaseTransientException: Failed to commit: "
        "No space left on device"
    )


def test_an_exception_logged_by_dlt_keeps_its_line_without_the_traceback(dlt_logger, caplog):
    with caplog.at_level(logging.INFO, logger="dlt"):
        try:
            raise OSError("No space left on device")
        except OSError:
            dlt_logger.exception("Transient exception in job %s", "events.sql")
    (record,) = caplog.records
    assert record.getMessage() == "Transient exception in job events.sql"
    assert record.exc_info is None and "Traceback" not in caplog.text


def test_debug_level_keeps_tracebacks_for_whoever_asks(dlt_logger, caplog):
    dlt_logger.setLevel(logging.DEBUG)
    with caplog.at_level(logging.DEBUG, logger="dlt"):
        dlt_logger.warning(RETRIED)
    assert "Traceback (most recent call last)" in caplog.text
