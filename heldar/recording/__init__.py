"""Recording: one camera's recorder loop, its indexer, and the records they hand to the store."""
