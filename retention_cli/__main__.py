"""`python -m retention_cli`: the `retention` command without the installed script."""

from retention_cli import main

main()
