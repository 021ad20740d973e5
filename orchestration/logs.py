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


def _without_traceback(record: logging.LogRecord) -> bool:
    """dlt logs every failed load job with its traceback (a full disk printed 23 of them)
    before the run's summary names the cause and the fix. Tracebacks stay available with
    RUNTIME__LOG_LEVEL=DEBUG."""
    if not logging.getLogger("dlt").isEnabledFor(logging.DEBUG):
        record.exc_info = record.exc_text = None
    return True
