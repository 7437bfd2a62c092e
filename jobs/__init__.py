"""trainyard: batch retraining of tabular models: one importable module per pipeline step."""
