"""Contracts: what the stages agree on, all torch-free. The model metadata every exported model
carries (model), config loading and its shared schema (config, schema), class names and the
decision rule (classes), metrics, and the error type every user error derives from (errors)."""
