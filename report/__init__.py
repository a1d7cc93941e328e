"""The PDF report: the Page type and typesetter (pages.py), and the figure, number and loss-curve writers
(figures.py)."""
