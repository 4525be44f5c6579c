"""Imported by the worker server alone (worker_processes.PRELOAD): the report's templates are compiled there, as it starts
while the command ingests, so that every period worker forked from it starts with them compiled."""

from usage_jobs.defs.report.build import compiled_templates

compiled_templates()
