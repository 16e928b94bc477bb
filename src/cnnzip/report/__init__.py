"""The HTML report of a compressed model (``cnnzip report``): tables and inline plots.

page = cnnzip.report.gather("lenet5.cnnz", cnnzip.load("lenet5.cnnz"), (1, 28, 28))
cnnzip.report.write_report(page, "lenet5.html")
"""

from cnnzip.report.page import Page, gather, gather_run, render, write_report

__all__ = ["Page", "gather", "gather_run", "render", "write_report"]
