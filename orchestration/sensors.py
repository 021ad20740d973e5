"""A sensor on the exit-session drop folder: new files start a load, the models and the
billing write-backs.

It runs `exit_sessions_load`: the exit-sessions assets, every model downstream, then
`billing_writebacks` (cancels and accepted offers applied in billing, or dry-run, per
writebacks.yml) and the ledger mart.

The cursor is the list of file names present at the last tick, so a file copied in with
an old modification time is still noticed (the source itself keeps the names it loaded,
for the same reason). Only the folder is read: the sensor never opens the warehouse,
which a running load may hold.
"""

import hashlib
import json
from pathlib import Path

from dagster import (
    DefaultSensorStatus,
    JobDefinition,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)

from orchestration.resources import DropFolder


def new_files(cursor: str | None, present: list[str]) -> list[str]:
    seen = set(json.loads(cursor)) if cursor else set()
    return sorted(set(present) - seen)


def drop_folder_sensor(job: JobDefinition) -> SensorDefinition:
    @sensor(
        name="exit_session_files_sensor",
        job=job,
        minimum_interval_seconds=30,
        default_status=DefaultSensorStatus.STOPPED,
        description="New exit-session files in the drop folder: load them, rebuild the models, "
        "apply the billing write-backs.",
    )
    def _sensor(context: SensorEvaluationContext, drop_folder: DropFolder) -> SensorResult:
        root = Path(drop_folder.path)
        present = [str(p.relative_to(root)) for p in drop_folder.files()]
        fresh = new_files(context.cursor, present)
        cursor = json.dumps(sorted(present))
        if not fresh:
            return SensorResult(skip_reason=f"no new files in {root}", cursor=cursor)
        run_key = hashlib.sha256("\n".join(fresh).encode()).hexdigest()[:16]
        context.log.info("%d new file(s) in %s: %s", len(fresh), root, ", ".join(fresh[:5]))
        return SensorResult(
            run_requests=[
                RunRequest(run_key=run_key, tags={"retention/new_files": str(len(fresh))})
            ],
            cursor=cursor,
        )

    return _sensor
