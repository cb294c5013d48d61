"""mBART-50 has no model of its own (it is MBartForConditionalGeneration); this package holds its tokenizer."""
