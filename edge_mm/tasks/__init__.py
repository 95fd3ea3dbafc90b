"""One module per task: parse -> preprocess -> forward -> postprocess. Only forward touches torch."""
