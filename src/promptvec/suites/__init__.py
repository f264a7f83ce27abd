"""The suite layer, below the methods and the experiments: the suite file's schema, its expansion
into runs (plan), the results table, per-run logs, report building blocks, and the contracts and
registries of methods and analyses — what the methods build on and what the runner and the reports
drive. Nothing here imports a method or an experiment module; the registries import them by name on
first lookup."""
