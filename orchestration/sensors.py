"""A sensor on the exit-session drop folder: new files start a load, the models and the
billing write-backs.

It runs `exit_sessions_load`: the exit-sessions assets, every model downstream, then
`billing_writebacks` (cancels and accepted offers applied in billing, or dry-run, per
writebacks.yml) and the ledger mart.

The cursor maps each file present at the last tick to its size and modification time,
so a file copied in with an old modification time is still noticed, and so is a file
corrected in place under the same name (the source itself knows files by name and
content, for the same reasons). Only the folder is read: the sensor never opens the
warehouse, which a running load may hold.
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


def new_files(cursor: str | None, present: dict[str, str]) -> list[str]:
    """Names of files that are new or changed since the cursor's tick."""
    seen = json.loads(cursor) if cursor else {}
    if isinstance(seen, list):  # a cursor of names only, from before sizes were kept
        seen = dict.fromkeys(seen, "")
    return sorted(name for name, signature in present.items() if seen.get(name) != signature)


def _signature(path: Path) -> str:
    stat = path.stat()
    return f"{stat.st_size}:{stat.st_mtime_ns}"


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
        present = {str(p.relative_to(root)): _signature(p) for p in drop_folder.files()}
        fresh = new_files(context.cursor, present)
        cursor = json.dumps(present, sort_keys=True)
        if not fresh:
            return SensorResult(skip_reason=f"no new files in {root}", cursor=cursor)
        # Dagster runs one request per run key: a file corrected in place is a new key.
        changes = "\n".join(f"{name} {present[name]}" for name in fresh)
        run_key = hashlib.sha256(changes.encode()).hexdigest()[:16]
        context.log.info("%d new file(s) in %s: %s", len(fresh), root, ", ".join(fresh[:5]))
        return SensorResult(
            run_requests=[
                RunRequest(run_key=run_key, tags={"retention/new_files": str(len(fresh))})
            ],
            cursor=cursor,
        )

    return _sensor
