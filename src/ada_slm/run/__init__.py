"""One fine-tuning run: its config, data, training, evaluation and record (floor 2, above agl/)."""
