"""The packaged YAML configs (package data; read through importlib.resources)."""
