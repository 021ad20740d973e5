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


def ratios(baselines: dict[str, list[dict]], selected: list, everything: list, fixed) -> None:
    """dbt's figures over each baseline's: one column per baseline."""
    rows = {
        "dbt run of the same two marts, wall": ("wall", selected, None),
        "dbt run of the same two marts, dbt elapsed": ("elapsed", selected, None),
        "dbt run of every model, wall": ("wall", everything, None),
        "the same two marts, cpu (processes)": ("cpu", selected, None),
    }
    if fixed:
        rows["the same two marts, wall less the fixed cost"] = ("wall", selected, fixed)
        rows["the same two marts, cpu less the fixed cost"] = ("cpu", selected, fixed)
    names = [BASELINES[table].split(" (")[0] for table in baselines]
    title = "ratio dbt / baseline (goal: within 1.5x)"
    print(f"\n{title:<46}{''.join(f'{n:>16}' for n in names)}")
    for label, (key, runs, less) in rows.items():
        dbt = best(runs, key) - (best(less, key) if less else 0)
        cells = []
        for runs_of_baseline in baselines.values():
            own = best(runs_of_baseline, "seconds" if key != "cpu" else "cpu")
            cells.append(f"{dbt / own:15.2f}x")
        print(f"  {label:<44}{''.join(cells)}")


def report(check: dict, baselines: dict[str, list[dict]], dbt: dict) -> None:
    """Everything bench_marts measured, in the order a reader checks it: rows, agreement,
    seconds, ratios, the slowest models. `dbt`: the runs `selected` (with the `select`
    arguments), `everything`, `build` and `fixed` (None when skipped)."""
    selected, everything, build, fixed = (
        dbt[k] for k in ("selected", "everything", "build", "fixed")
    )
    print("\nrows")
    for table, n in check["rows"].items():
        print(f"  {table:<36} {n:>12,}")
    agreement(check)

    print(f"\nseconds, best of {len(selected)} [every run]; cpu = user+sys of that process")
    for table, runs in baselines.items():
        print(line(BASELINES[table], runs, "seconds", peak=False))
        print(line("  its process (start, connect, statement)", runs))
    timed = {
        f"dbt run --select {dbt['select']}": selected,
        "dbt run (every model)": everything,
        "dbt build (seed, every model, data tests and unit tests)": build and [build],
        "dbt's fixed cost: the same dbt run --select, 1,000 customers": fixed,
    }
    for title, runs in timed.items():
        if runs:
            print(f"  {title}\n{line('  wall (process start, partial parse, run)', runs)}")
            print(line("  dbt's own elapsed (run_results.json)", runs, "elapsed", peak=False))
    for node in build["failed"] if build else []:
        print(f"    FAILED: {node}")
    ratios(baselines, selected, everything, fixed)

    nodes = sorted(min(selected, key=lambda r: r["wall"])["nodes"], key=lambda n: -n[1])
    summed = sum(took for _, took in nodes)
    print(f"\nslowest models of the best selected run ({len(nodes)} models, {summed:.2f} s summed)")
    for name, took in nodes[:10]:
        print(f"  {name:<52} {took:6.2f}")
