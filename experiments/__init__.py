"""Research runs, apart from the product: `ceod experiment` (variants over seeds and grouped folds,
evaluated with the audit: runner, datasets, lock, report, strength) and the active-learning oracle
loop (active). The variants and dataset presets themselves are YAML in configs/; the one-off
studies behind docs/results.md are in experiments/scripts/ (in the repository, not the wheel).
Imports the model packages; nothing in them imports this."""
