"""The survey's comparison tables, measured here: the zoo trained on Fashion-MNIST at
64x64, compressed (Deep Compression into .cnnz), binarized (BWN, XNOR on the kernels),
distilled and timed, resumably; ``cnnzip survey`` runs it and writes SURVEY.md and plots."""

from cnnzip.survey.pipeline import run_survey, time_survey
from cnnzip.survey.plan import FULL, QUICK, ROWS, Budget, Row, survey_data
from cnnzip.survey.report import render, write_report
from cnnzip.survey.results import Results

__all__ = [
    "FULL",
    "QUICK",
    "ROWS",
    "Budget",
    "Results",
    "Row",
    "render",
    "run_survey",
    "survey_data",
    "time_survey",
    "write_report",
]
