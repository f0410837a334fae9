"""ada-slm: small-language-model fine-tuning studies on the AGL glyph language."""

__version__ = "0.1.0"
