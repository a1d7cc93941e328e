"""The PDF report: page type, typesetter and atomic figure/number output (see report.pages)."""
