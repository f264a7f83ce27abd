"""Experiment suites: YAML → runs, a resumable runner, statistics and reports."""
