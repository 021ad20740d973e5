"""`retention demo`: the whole pipeline once, on a local sandbox, through Dagster.

Not production code: it serves the sandbox, so it lives beside it, and only the `retention`
command (`retention_cli`) puts it next to the production commands. `demo.run` prepares the
sandbox, the drop files and the paths, `demo.jobs` runs the code location's jobs in a
process of their own, `demo.summary` reads the figures back from the marts.
"""


class DemoError(RuntimeError):
    """The demo could not run or a run failed; the message says where to look."""
