"""The figures `retention demo` prints, read back from the marts once the runs are over."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

from collector.settings import DEFAULT_CONFIG, DROP_FOLDER_ENV, STATE_DB_ENV, parse_config
from orchestration.marts_metadata import query
from orchestration.resources import Warehouse
from orchestration.serving import serving_path
from orchestration.settings import BILLING_SYSTEMS, DUCKDB_PATH_ENV
from orchestration.validation import SAVE_WINDOW


@dataclass
class DemoSummary:
    """The figures the demo prints, read back from the marts."""

    scenario: Path
    as_of: datetime
    database: Path
    dagster_home: Path
    log: Path
    ui_command: str
    run_ids: list[str]
    subscriptions: dict[str, int]
    episodes_by_status: dict[str, int]
    saved: int
    canceled: int
    pending: int
    saved_mrr: Decimal
    lost_mrr: Decimal
    validation_day: date | None  # None: as_of lies outside validation_30d's partitions
    validation_from: date | None  # the first day the demo validated (its backfill's start)
    validation_by_status: dict[str, int] = field(default_factory=dict)
    writebacks: dict[str, int] = field(default_factory=dict)  # "<status> (<mode>)" -> actions
    postgres: str | None = None  # the Postgres warehouse (password masked); None: DuckDB
    cancel_page: tuple[str, str] | None = None  # (billing system, subscription id) to try
    drop: Path | None = None  # the drop folder the collector publishes the page's visits to

    @property
    def save_rate(self) -> Decimal | None:
        """validation.md §5: saved / (saved + canceled) over validated outcomes."""
        decided = self.saved + self.canceled
        return Decimal(self.saved) / decided if decided else None

    def _validation_line(self) -> str:
        if self.validation_day is None:
            return "validation_30d skipped: as_of is outside its daily partitions"
        counts = ", ".join(f"{s} {n:,}" for s, n in self.validation_by_status.items())
        started = self.validation_day - SAVE_WINDOW
        return (
            f"validation_30d {self.validation_day} (episodes started {started}): "
            + (counts or "no episodes")
            + f"\n  (every day from {self.validation_from} validated, in one backfill run; the "
            "days before have no episodes, and the UI lists them as missing: see the asset's "
            "description)"
        )

    def render(self) -> str:
        rate = f"{self.save_rate:.1%}" if self.save_rate is not None else "n/a"
        lines = [
            f"scenario          {self.scenario} (as_of {self.as_of:%Y-%m-%dT%H:%M:%SZ})",
            f"dagster runs      {', '.join(self.run_ids)} (instance {self.dagster_home})",
            "",
            "subscriptions loaded",
            *(f"  {system:<24}{n:>10,}" for system, n in self.subscriptions.items()),
            "episodes by validation status",
            *(f"  {status:<24}{n:>10,}" for status, n in self.episodes_by_status.items()),
            f"  {'total':<24}{sum(self.episodes_by_status.values()):>10,}",
            f"save rate                 {rate:>10}  (saved {self.saved:,} / saved + canceled "
            f"{self.saved + self.canceled:,})",
            f"  pending                 {self.pending:>10,}  (saves whose 30-day window is still "
            "open: not in the rate yet)",
            f"saved MRR (USD)           {self.saved_mrr:>10,.2f}",
            f"lost MRR (USD)            {self.lost_mrr:>10,.2f}",
            self._validation_line(),
            "write-backs (writebacks.yml; marts.fct_billing_writebacks)",
            *(f"  {what:<24}{n:>10,}" for what, n in self.writebacks.items()),
            "  (a dry run sends nothing; to apply, set a system's mode: live and since: in "
            "writebacks.yml)",
            "",
            f"Postgres for BI tools: {self.postgres}, schema marts"
            if self.postgres
            else f"DuckDB file for BI tools (read-only): {serving_path(self.database)}",
            "  (marts.fct_exit_episodes, marts.rpt_retention_summary, "
            "marts.fct_repurchase_cohorts, marts.validation_30d_daily, …)",
            f"run log: {self.log}",
            "",
            f"Open the UI on these runs: {self.ui_command}   (then http://127.0.0.1:3000)",
            "To sync again from the UI, serve the scenario on the default ports first:",
            f"  .venv/bin/retention sandbox serve --frozen --scenario {self.scenario}",
            *self._cancel_page_lines(),
        ]
        return "\n".join(lines)

    def _cancel_page_lines(self) -> list[str]:
        """How to open the example cancel page for one of the demo's subscriptions: the
        collector, then the page's backend, which signs each visit when the page loads (a
        signed link printed here would be refused once the replay window had passed)."""
        if self.cancel_page is None:
            return []
        system, subscription = self.cancel_page
        app_id, app = next(
            iter(parse_config(DEFAULT_CONFIG.read_text(), "collector.yml").apps.items())
        )
        # Where the collector publishes the visits, keeps its state, and (the fast path)
        # finds the marts: the demo's own files.
        places = (
            f"{DROP_FOLDER_ENV}={self.drop} {STATE_DB_ENV}={self.log.parent / 'collector.sqlite'}"
        )
        if self.postgres is None:
            places += f" {DUCKDB_PATH_ENV}={self.database}"
        return [
            "",
            f"Try the cancel page for {system} subscription {subscription} "
            "(examples/cancel-page/README.md):",
            f"  export {app.secret_env}=$(python3 -c 'import secrets; print(secrets.token_hex(32))')",
            f"  {places} .venv/bin/retention collector serve &",
            f"  .venv/bin/python examples/cancel-page/backend.py --app-id {app_id} "
            f"--secret-env {app.secret_env} --billing-system {system} --billing-id {subscription} &",
            "  then open http://127.0.0.1:8801/ (the collector's API: http://127.0.0.1:8800/docs;"
            " stop both with kill %1 %2)",
            "  (an accepted offer or a cancel goes to the fast path at once: with writebacks.yml's "
            "dry run it records what it would send, in the collector's state file)",
        ]


def summarise(warehouse: Warehouse, validation_day: date | None) -> dict:
    """The printed figures, from the marts (the runs are over)."""
    with warehouse.get_connection() as con:
        subs = dict(
            query(con, "select billing_system, count(*) from marts.dim_subscriptions group by 1")[1]
        )
        statuses = dict(
            query(
                con,
                "select validation_status, count(*) from marts.fct_exit_episodes "
                "group by 1 order by 2 desc, 1",
            )[1]
        )
        saved, canceled, pending, saved_mrr, lost_mrr = query(
            con,
            """
            select count(*) filter (where validated_outcome = 'saved'),
                   count(*) filter (where validated_outcome = 'canceled'),
                   count(*) filter (where validated_outcome = 'pending'),
                   coalesce(sum(saved_mrr), 0), coalesce(sum(lost_mrr), 0)
            from marts.fct_exit_episodes
            """,
        )[1][0]
        writebacks = dict(
            query(
                con,
                "select case when status = 'dry_run' then status "
                "else status || ' (' || replace(mode, '_', ' ') || ')' end, count(*)::integer "
                "from marts.fct_billing_writebacks group by 1 order by 1",
            )[1]
        )
        cancel_page = query(
            con,
            "select billing_system, subscription_id from marts.dim_subscriptions "
            "where status = 'active' and canceled_at is null and paused_at is null "
            "order by billing_system = 'stripe' desc, subscription_id limit 1",
        )[1]
        validation = (
            dict(
                query(
                    con,
                    "select validation_status, sum(episodes)::integer "
                    "from marts.validation_30d_daily "
                    "where partition_date = ? group by 1 order by 2 desc, 1",
                    [validation_day],
                )[1]
            )
            if validation_day
            else {}
        )
    return {
        "subscriptions": {s: subs.get(s, 0) for s in BILLING_SYSTEMS},
        "episodes_by_status": statuses,
        "saved": saved,
        "canceled": canceled,
        "pending": pending,
        "saved_mrr": Decimal(saved_mrr),
        "lost_mrr": Decimal(lost_mrr),
        "validation_by_status": validation,
        "writebacks": writebacks,
        "cancel_page": tuple(cancel_page[0]) if cancel_page else None,
    }
