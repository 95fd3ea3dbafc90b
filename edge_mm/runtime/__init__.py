"""Run-time: loads artifacts, owns the models, admission control. Never imports transformers."""
