"""The model families: each says how to load its towers and tokenizer, and nothing more."""
