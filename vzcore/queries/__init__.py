"""Questions over a store, asked from above it: find examples (`examples.find_examples`), draw one
(`examples.show_example`), every occurrence of a token or a word with its row
(`corpus.token_rows`, `corpus.word_rows`) and the top examples by a statistic of their maps
(`corpus.top_examples`, with the statistics of `vzcore.statistics`). Each takes an opened store
(`vzcore.open_store`) first; the store itself only reads.
"""

from vzcore.queries.corpus import STATISTICS, token_rows, top_examples, word_rows
from vzcore.queries.examples import find_examples, show_example

__all__ = ["STATISTICS", "find_examples", "show_example", "token_rows", "top_examples", "word_rows"]
