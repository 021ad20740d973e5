"""The Dagster code location (`workspace.yaml`): gathers the asset, job and schedule
modules of orchestration/. Extraction, model and write-back assets are added by their
own modules as they land; until then the location loads empty."""

from dagster import Definitions

defs = Definitions()
