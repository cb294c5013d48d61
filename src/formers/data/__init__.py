from .data_collator import DataCollatorForLanguageModeling, DataCollatorForSeq2Seq, DataCollatorWithPadding, default_data_collator

__all__ = ["DataCollatorForLanguageModeling", "DataCollatorForSeq2Seq", "DataCollatorWithPadding", "default_data_collator"]
