"""The DVC stage scripts: thin commands, one per dvc.yaml stage (`python -m stages.<name> <variant>`)."""
