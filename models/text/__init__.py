"""The prompt side: umT5-XXL (Wan's text encoder) and its sentencepiece tokenizer."""
