"""Review of doubtful OCR readings, apart from any web framework: queue, decisions, audit, crops."""
