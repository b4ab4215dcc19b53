"""Text-to-text problems: TranslationAnki (the manythings.org / Tatoeba bilingual pairs) and the synthetic corpus
written in its official format."""
