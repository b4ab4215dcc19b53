"""Visual question answering problems: Sort-of-CLEVR, ShapeColorQuery, CLEVR and CoGenT."""
