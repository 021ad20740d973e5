"""A sensor on the exit-session drop folder: new files start a load, the models and the
billing write-backs.

It runs `exit_sessions_load`: the exit-sessions assets, every model downstream, then
`billing_writebacks` (cancels and accepted offers applied in billing, or dry-run, per
writebacks.yml) and the ledger mart.

Files stay in the drop folder, so the cursor must not list them all. It keeps a horizon
on the files' inode change time (`st_ctime_ns`) and the names changed since: the kernel
sets the change time to its clock whenever a name is created (`cp -p`, `mv`, a new
file) or a file written, renamed or re-dated, and nothing can set it back. So a file
copied in with an old modification time, or corrected in place under the same name (even
with its old time restored), has a change time after the last tick. A folder moved in
keeps its files' change times but gets one of its own: a changed sub-folder starts a
load too (the load knows which of its files are new). The horizon is the tick's clock,
read before the listing, less `SETTLE_NS`: a file created while the folder is being
listed, or stamped by a clock a little behind ours, is still after it. It needs a
filesystem that keeps a change time (ext4, xfs, btrfs, tmpfs, ZFS, NFS; not FAT, where it
is the modification time), and a clock never set back by more than `SETTLE_NS`. Only the
folder is read: the sensor never opens the warehouse, which a running load may hold.
"""

import hashlib
import json
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import NamedTuple

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

# How far behind the tick's clock the horizon stays: more than a listing takes, the
# kernel's coarse clock (a few ms), an NFS client's attribute cache (60 s by default) and
# the skew of a file server's clock. The cursor names the files changed within it.
SETTLE_NS = 300 * 10**9


class Stamp(NamedTuple):
    """What the sensor knows of a file, or of a folder holding files, from one `stat`."""

    size: int
    mtime_ns: int
    ctime_ns: int

    @property
    def key(self) -> str:
        """Moves on any change; the size also tells a second write within one clock tick."""
        return f"{self.ctime_ns}:{self.size}"


def stamps(root: Path, files: Iterable[Path]) -> dict[str, Stamp]:
    """Each file's stamp by its name under the drop folder, and each sub-folder's holding
    them (by its name and "/"): a folder moved in keeps its files' change times."""
    present: dict[str, Stamp] = {}
    for path in files:
        name = path.relative_to(root)
        present[str(name)] = _stamp(path)
        for folder in name.parents[:-1]:  # not the drop folder: it changes with every drop
            if f"{folder}/" in present:
                break
            present[f"{folder}/"] = _stamp(root / folder)
    return present


def _stamp(path: Path) -> Stamp:
    stat = path.stat()
    return Stamp(stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


def new_files(
    cursor: str | None, present: dict[str, Stamp], now_ns: int, settle_ns: int = SETTLE_NS
) -> tuple[list[str], str]:
    """Names of the files new or changed since the cursor's tick, and this tick's cursor.

    `now_ns` is the clock read before the folder was listed."""
    known = _known_rule(json.loads(cursor) if cursor else None)
    fresh = sorted(name for name, stamp in present.items() if not known(name, stamp))
    horizon = now_ns - settle_ns
    recent = {name: stamp.key for name, stamp in present.items() if stamp.ctime_ns >= horizon}
    return fresh, json.dumps({"v": 2, "horizon_ns": horizon, "recent": recent}, sort_keys=True)


def _known_rule(seen: object) -> Callable[[str, Stamp], bool]:
    """Whether the cursor's tick saw a file as it is. The two older cursors (every file
    present) are read once, on the first tick after an upgrade, so nothing runs again."""
    if isinstance(seen, dict) and seen.get("v") == 2:
        # Every file changed before the horizon was listed at that tick; each since is in
        # `recent`, as it was then.
        horizon, recent = seen["horizon_ns"], seen["recent"]
        return lambda name, stamp: stamp.ctime_ns < horizon or recent.get(name) == stamp.key
    if isinstance(seen, dict):  # each file present: "size:mtime_ns"; no folders
        return lambda name, stamp: (
            _folder(name) or seen.get(name) == f"{stamp.size}:{stamp.mtime_ns}"
        )
    names = set(seen or ())  # the names only
    return lambda name, stamp: _folder(name) or name in names


def _folder(name: str) -> bool:
    return name.endswith("/")


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
        now_ns = time.time_ns()  # before the listing: a file changed after has a later ctime
        present = stamps(root, drop_folder.files())
        fresh, cursor = new_files(context.cursor, present, now_ns)
        if not fresh:
            return SensorResult(skip_reason=f"no new files in {root}", cursor=cursor)
        # Dagster runs one request per run key: a file corrected in place is a new key.
        changes = "\n".join(f"{name} {present[name].key}" for name in fresh)
        run_key = hashlib.sha256(changes.encode()).hexdigest()[:16]
        files = [name for name in fresh if not _folder(name)]
        tags = {"retention/new_files": str(len(files))}
        if len(files) < len(fresh):
            tags["retention/changed_folders"] = str(len(fresh) - len(files))
        context.log.info("new or changed in %s: %s", root, ", ".join(fresh[:5]))
        return SensorResult(run_requests=[RunRequest(run_key=run_key, tags=tags)], cursor=cursor)

    return _sensor
