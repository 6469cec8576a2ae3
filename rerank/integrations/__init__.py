"""Rerank where users already work: pandas DataFrames (:mod:`.frames`) and PyTerrier pipelines
(:mod:`.pyterrier`). Each imports its library only when used: ``import rerank`` needs neither.
"""
