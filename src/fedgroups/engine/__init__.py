"""Build engines: plan (pure), local (embedded default), beam (Apache Beam runners)."""

from fedgroups.build.api import BuildReport, build

__all__ = ["BuildReport", "build"]
