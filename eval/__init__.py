"""nanoAZR evaluation suite: CRUXEval-I/O, HumanEval+, MBPP+, LiveCodeBench and six math benchmarks, scored as AZR's
paper does.

Run `python -m eval --help`. Modules: data (files -> items), templates (prompts), generation (our engine),
cruxeval / code / lcb / mathscore (scoring), report (pass@k, CAvg/MAvg/AVG, the table beside the paper's numbers).
azr.py's in-loop validation calls `eval.cruxeval.evaluate_cruxeval`.
"""
