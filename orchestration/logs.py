"""Logs of commands run by hand (`retention extract`, `retention writebacks run`)."""

from __future__ import annotations

import logging
import sys


def log_to_stderr() -> None:
    """The pipeline's progress logs ("retention.*") on stderr, for commands run by hand;
    dlt's own errors as one line each (see `_without_traceback`)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    logger = logging.getLogger("retention")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logging.getLogger("dlt").addFilter(_without_traceback)


_TRACEBACK = "Traceback (most recent call last):"


def _without_traceback(record: logging.LogRecord) -> bool:
    """dlt logs every failed load job with its traceback (a full disk printed 23 of them),
    as the record's exception and, for a job it retries, inside the message text, before
    the run's summary names the cause and the fix. Each becomes its last line, the error
    itself. Tracebacks stay available with RUNTIME__LOG_LEVEL=DEBUG."""
    if logging.getLogger("dlt").isEnabledFor(logging.DEBUG):
        return True
    record.exc_info = record.exc_text = None
    message = record.getMessage()
    if _TRACEBACK in message:
        record.msg, record.args = _last_line_of_tracebacks(message), ()
    return True


def _last_line_of_tracebacks(message: str) -> str:
    """`message` with each traceback cut down to its final line, `Type: text`."""
    head, _, trace = message.partition(_TRACEBACK)
    lines = [line for line in trace.splitlines() if line.strip()]
    return head + (lines[-1].strip() if lines else "")
