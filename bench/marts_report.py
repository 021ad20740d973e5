"""The marts bench's printout: rows, each baseline's agreement with the dbt marts, seconds,
and the ratio of dbt to each baseline (bench_marts.py measures, this module prints)."""

from __future__ import annotations

# The baselines dbt is measured against, by the table each writes in the `bench` schema.
BASELINES = {
    "one_statement": "one statement (dbt's SQL inlined)",
    "hand_marts": "hand-written (bench/sql/hand_marts.sql)",
}


def line(label: str, runs: list[dict], key: str = "wall", peak: bool = True) -> str:
    """`label  best  [every run]  cpu  peak` for a list of timed runs."""
    top = min(runs, key=lambda r: r[key])
    text = f"  {label:<44} {top[key]:7.2f}  [{', '.join(f'{r[key]:.2f}' for r in runs)}]"
    return text + (f"  cpu {top['cpu']:6.2f}  peak {top['peak']:,.0f} MiB" if peak else "")


def best(runs: list[dict], key: str) -> float:
    return min(r[key] for r in runs)


def agreement(check: dict) -> None:
    """Per baseline and mart: rows dbt / baseline and EXCEPT ALL each way; a baseline that
    disagrees makes its ratio unfair, so the verdict is printed beside it."""
    print("\nagreement with the dbt marts (rows dbt / baseline, EXCEPT ALL each way)")
    for table, marts in check["agreement"].items():
        print(f"  {BASELINES[table]}")
        for mart, (nd, nb, d_b, b_d) in marts.items():
            verdict = "same" if nd == nb and d_b == b_d == 0 else "DIFFERENT"
            print(f"    {mart:<24} {nd:>10,} / {nb:<10,} {d_b:>7,} {b_d:>7,}  {verdict}")
        same = all(nd == nb and d_b == b_d == 0 for nd, nb, d_b, b_d in marts.values())
        print(f"    => {'the same rows' if same else 'NOT the same rows: its ratio is not fair'}")


def copies(check: dict, copies: int) -> None:
    """The marts of k copies against k times those of one (replicate.copies_check)."""
    print(
        f"\n{copies} copies against {copies} x the marts of one (rows here / expected, EXCEPT ALL each way)"
    )
    for mart, (here, expected, h_e, e_h) in check["copies"].items():
        verdict = "same" if here == expected and h_e == e_h == 0 else "DIFFERENT"
        print(f"    {mart:<24} {here:>10,} / {expected:<10,} {h_e:>7,} {e_h:>7,}  {verdict}")


def ratios(baselines: dict[str, list[dict]], selected: list, everything: list) -> None:
    """dbt's figures over each baseline's: one column per baseline."""
    rows = {
        "dbt run of the same two marts, wall": ("wall", selected),
        "dbt run of the same two marts, dbt elapsed": ("elapsed", selected),
        "the same two marts, cpu (processes)": ("cpu", selected),
    }
    if everything:
        rows["dbt run of every model, wall"] = ("wall", everything)
    names = [BASELINES[table].split(" (")[0] for table in baselines]
    title = "ratio dbt / baseline (goal: within 1.5x)"
    print(f"\n{title:<46}{''.join(f'{n:>16}' for n in names)}")
    for label, (key, runs) in rows.items():
        dbt = best(runs, key)
        cells = []
        for runs_of_baseline in baselines.values():
            own = best(runs_of_baseline, "seconds" if key != "cpu" else "cpu")
            cells.append(f"{dbt / own:15.2f}x")
        print(f"  {label:<44}{''.join(cells)}")


def report(point: dict) -> None:
    """One point of the curve, in the order a reader checks it: rows, agreement with each
    baseline and with k x one copy, seconds, ratios, the slowest models."""
    check, baselines, selected = point["check"], point["baselines"], point["selected"]
    everything, build = point["everything"], point["build"]
    print("\nrows")
    for table, n in check["rows"].items():
        print(f"  {table:<36} {n:>12,}")
    agreement(check)
    copies(check, point["copies"])

    settings = next(iter(baselines.values()))[0]["settings"]
    print(f"\nseconds, best of {len(selected)} [every run]; cpu = user+sys of that process")
    print(f"  (DuckDB: {', '.join(f'{k} {v}' for k, v in settings.items())}; dbt's the same)")
    for table, runs in baselines.items():
        print(line(BASELINES[table], runs, "seconds", peak=False))
        print(line("  its process (start, connect, statement)", runs))
    timed = {
        "dbt run --select +fct_exit_episodes +fct_repurchase_cohorts": selected,
        "dbt run (every model)": everything,
        "dbt build (seed, every model, data tests and unit tests)": build and [build],
    }
    for title, runs in timed.items():
        if runs:
            print(f"  {title}\n{line('  wall (process start, partial parse, run)', runs)}")
            print(line("  dbt's own elapsed (run_results.json)", runs, "elapsed", peak=False))
    for node in build["failed"] if build else []:
        print(f"    FAILED: {node}")
    ratios(baselines, selected, everything)
    slowest(selected)


def slowest(selected: list[dict], engine: str = "") -> None:
    """The nodes of the best `dbt run --select` by their own seconds (on Spark the
    registration hook is one of them)."""
    nodes = sorted(min(selected, key=lambda r: r["wall"])["nodes"], key=lambda n: -n[1])
    summed = sum(took for _, took in nodes)
    title = f"slowest models of the best selected {engine}run"
    print(f"\n{title} ({len(nodes)} models, {summed:.2f} s summed)")
    for name, took in nodes[:8]:
        print(f"  {name:<52} {took:6.2f}")


def same(check: dict) -> bool:
    """Every baseline and the copies check agree with the dbt marts."""
    tallies = [*check["copies"].values()]
    tallies += [t for marts in check["agreement"].values() for t in marts.values()]
    return all(n1 == n2 and a == b == 0 for n1, n2, a, b in tallies)


def curve(points: list[dict]) -> None:
    """The scaling curve: one line per point, smallest first."""
    print("\nscaling curve (best runs; peak = the process's peak RSS; ratio = dbt wall / baseline)")
    head = (
        "subs",
        "sessions",
        "invoices",
        "hand s",
        "one s",
        "dbt s",
        "dbt elapsed",
        "dbt peak",
        "hand peak",
        "/hand",
        "/one",
        "rows",
        "max load",
    )
    print("  " + "".join(f"{h:>12}" for h in head))
    for p in sorted(points, key=lambda p: p["copies"]):
        rows = p["check"]["rows"]
        subs = sum(rows[f"raw_{s}.subscriptions"] for s in ("stripe", "recurly", "chargebee"))
        invoices = sum(rows[f"raw_{s}.invoices"] for s in ("stripe", "recurly", "chargebee"))
        hand, one = (
            min(
                p["baselines"].get(table) or [{"seconds": float("nan"), "peak": float("nan")}],
                key=lambda r: r["seconds"],
            )
            for table in ("hand_marts", "one_statement")
        )
        dbt = min(p["selected"], key=lambda r: r["wall"])
        cells = [
            f"{subs:,}",
            f"{rows['raw_exit_sessions.exit_sessions']:,}",
            f"{invoices:,}",
            f"{hand['seconds']:.2f}",
            f"{one['seconds']:.2f}",
            f"{dbt['wall']:.2f}",
            f"{dbt['elapsed']:.2f}",
            f"{dbt['peak']:,.0f} MiB",
            f"{hand['peak']:,.0f} MiB",
            f"{dbt['wall'] / hand['seconds']:.2f}x",
            f"{dbt['wall'] / one['seconds']:.2f}x",
            "same" if same(p["check"]) else "DIFFERENT",
            f"{max(p['load']):.1f}" if "load" in p else "-",
        ]
        print("  " + "".join(f"{c:>12}" for c in cells))


def spark_report(point: dict) -> None:
    """The point on Spark: its agreement with DuckDB's marts, then its seconds beside
    DuckDB's for the same `dbt run --select`."""
    spark = point["spark"]
    print("\nSpark's marts against DuckDB's (rows DuckDB / Spark, EXCEPT ALL each way, 6 decimals)")
    for mart, (nd, ns, d_s, s_d) in spark["check"].items():
        verdict = "same" if nd == ns and d_s == s_d == 0 else "DIFFERENT"
        print(f"    {mart:<24} {nd:>10,} / {ns:<10,} {d_s:>7,} {s_d:>7,}  {verdict}")
    print(f"\nseconds, best of {len(spark['selected'])} [every run]; Spark: cpu and peak of the")
    print("  process tree (dbt and Spark's JVM), sampled every 0.2 s")
    print(line("lake export (DuckDB to parquet, untimed)", [spark["lake"]]))
    print(line("spark dbt seed (untimed)", [spark["seed"]]))
    title = "dbt run --select +fct_exit_episodes +fct_repurchase_cohorts"
    walls = {
        "duckdb": ("wall (process start, partial parse, run)", point["selected"]),
        "spark": ("wall (process start, JVM, registration, run)", spark["selected"]),
    }
    for engine, (wall, runs) in walls.items():
        print(f"  {engine}: {title}\n{line(f'  {wall}', runs)}")
        print(line("  dbt's own elapsed (run_results.json)", runs, "elapsed", peak=False))
    slowest(spark["selected"], "spark ")


def engines_curve(points: list[dict]) -> None:
    """DuckDB and Spark side by side, per point with Spark figures: the best `dbt run
    --select` of each, and each one's growth from the smallest such point (the base, where
    the fixed cost shows); the load is the higher of the 1-minute loads before and after
    the Spark part (the DuckDB part's is in the curve above)."""
    points = sorted((p for p in points if "spark" in p), key=lambda p: p["copies"])
    if not points:
        return
    print("\nDuckDB and Spark (best dbt run --select of the two marts; x base = wall / the base's)")
    head = ("subs", "duck s", "duck peak", "spark s", "spark cpu", "spark peak")
    head += ("spark/duck", "duck x base", "spark x base", "marts", "spark load")
    print("  " + "".join(f"{h:>13}" for h in head))
    first = {}
    for p in points:
        rows = p["check"]["rows"]
        subs = sum(rows[f"raw_{s}.subscriptions"] for s in ("stripe", "recurly", "chargebee"))
        duck = min(p["selected"], key=lambda r: r["wall"])
        spark = min(p["spark"]["selected"], key=lambda r: r["wall"])
        first = first or {"duck": duck["wall"], "spark": spark["wall"]}
        tallies = p["spark"]["check"].values()
        agree = all(nd == ns and d_s == s_d == 0 for nd, ns, d_s, s_d in tallies)
        cells = [
            f"{subs:,}",
            f"{duck['wall']:.2f}",
            f"{duck['peak']:,.0f} MiB",
            f"{spark['wall']:.2f}",
            f"{spark['cpu']:.2f}",
            f"{spark['peak']:,.0f} MiB",
            f"{spark['wall'] / duck['wall']:.1f}x",
            f"{duck['wall'] / first['duck']:.2f}x",
            f"{spark['wall'] / first['spark']:.2f}x",
            "same" if agree else "DIFFERENT",
            f"{max(p['spark']['load']):.1f}" if "load" in p["spark"] else "-",
        ]
        print("  " + "".join(f"{c:>13}" for c in cells))
