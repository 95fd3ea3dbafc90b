"""`edge-mm finetune`: token / text classification fine-tuning on the build side (imports transformers).

data.py parses CoNLL / JSONL / CSV; labels.py checks BIO and aligns tags to sub-tokens;
train.py holds the steps; run.py the run; report.py and plots.py what it writes;
register.py the settings.toml entry. The runtime never imports this package.
"""
