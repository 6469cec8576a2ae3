"""Answer kinds: what a window asks the model, and how its answer is read.

=============  ==========================================================================
kind           answer
=============  ==========================================================================
Permutation    a ranking of the window, ``[3] > [1] > [2]`` (RankGPT, full ranking)
Choice(k)      the best ``k`` of the window, in order (setwise, tournaments, pairwise)
FirstToken     the identifiers' log-probabilities at the first answer token (FIRST)
Relevance      a pointwise judgment of one passage, from yes/no log-probabilities or a grade
Reasoned(kind) think first, then answer as ``kind``, with its own reasoning budget
=============  ==========================================================================

The ranking format itself lives in :mod:`rerank.answers.ranking` (writing and reading) and
:mod:`rerank.answers.constraints` (holding decoding to it).
"""

from .base import OK, REPAIRED, TRUNCATED, UNPARSEABLE, Answer, AnswerKind, Ask, CallSettings
from .constraints import Constraint
from .listwise import Choice, Permutation, read_labels
from .ranking import format_ranking, parse_ranking, split_thinking, strip_thinking
from .reasoned import DEFAULT_REASONING_BUDGET, REASONING_EFFORTS, Reasoned
from .scored import FirstToken, MostRelevantFirstToken, Relevance

#: The kinds most strategies ask for, built once.
PERMUTATION = Permutation()
FIRST_TOKEN = FirstToken()

__all__ = ["DEFAULT_REASONING_BUDGET", "FIRST_TOKEN", "OK", "PERMUTATION", "REASONING_EFFORTS", "REPAIRED",
           "TRUNCATED", "UNPARSEABLE", "Answer", "AnswerKind", "Ask", "CallSettings", "Choice", "Constraint",
           "FirstToken", "MostRelevantFirstToken", "Permutation", "Reasoned", "Relevance", "format_ranking", "parse_ranking",
           "read_labels", "split_thinking", "strip_thinking"]
