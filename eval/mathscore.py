"""Math scoring: pull the final answer out of a completion and check it against the reference with math-verify.

Named `mathscore` (not `math`) so that `import math` inside this package still means the standard library.

Extraction order (`extract_answer`), chosen to cover the three prompt templates of azr-spec.md 9.1:
  1. the last `\\boxed{...}` inside the last `<answer>...</answer>` (template `azr_boxed`);
  2. the contents of the last `<answer>...</answer>` (template `azr`);
  3. the last `\\boxed{...}` (or `\\fbox{...}`) anywhere (template `qwen-boxed`);
  4. the text after the last "the answer is" / "final answer is" (base models that ignore the instruction);
  5. the last number in the text, as the math-evaluation harness that AZR uses does (`use_last_number=True`).
Equivalence (`math_equal`) is math-verify's `parse` + `verify` (sympy-backed: fractions vs decimals, intervals,
sets of answers, `x = 3` vs `3`, units in `\\text{}`), with an exact match of the normalised strings as a fallback
for answers that math-verify cannot parse (plain words, some tuples).
"""
import re
import threading

from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

# Where each math benchmark keeps its ground truth (data/README.md): field name, or "boxed:<field>" for the last
# \boxed{} of that field, or "first:<field>" for the first element of a list field.
GOLD_FIELD = {
    "aime24": "answer", "aime25": "answer", "amc23": "answer",
    "math500": "boxed:solution", "minerva": "boxed:solution",
    "olympiadbench": "first:final_answer",
}
# Where the problem text is.
PROBLEM_FIELD = {"aime24": "problem", "aime25": "problem", "amc23": "problem", "math500": "problem",
                 "minerva": "problem", "olympiadbench": "question"}

_EXTRACTION = [LatexExtractionConfig(), ExprExtractionConfig()]


def last_boxed(text: str) -> str | None:
    """Contents of the last complete \\boxed{...} / \\fbox{...} in text (balanced braces), or None. A final box cut
    off mid-way (the completion hit its token limit) falls back to the box before it.

    `\\boxed 5` (no braces) is accepted up to the next `$` or whitespace, like the harness.
    """
    starts = [m.end() for m in re.finditer(r"\\(boxed|fbox)", text)]
    if not starts:
        return None
    close, stack = {}, []  # the matching "}" of every "{", in one pass (a scan per box is quadratic on "\boxed{" x n)
    for k, ch in enumerate(text):
        if ch == "{":
            stack.append(k)
        elif ch == "}" and stack:
            close[stack.pop()] = k
    for start in reversed(starts):
        if text.startswith("{", start):
            if start in close:
                return text[start + 1:close[start]]
            continue
        m = re.compile(r"\s+([^\s$]+)").match(text, start)
        if m:
            return m.group(1)
    return None


def _last_answer_tag(text: str) -> str | None:
    # Text between the last <answer> and the following </answer> (AZR's `extract_answer`, spec section 2).
    k = text.rfind("<answer>")
    if k < 0:
        return None
    body = text[k + len("<answer>"):]
    end = body.find("</answer>")
    return body if end < 0 else body[:end]


def extract_answer(completion: str) -> str:
    """The final answer of a math completion as a string ('' when there is none). Order: see module docstring."""
    tag = _last_answer_tag(completion)
    if tag is not None:
        boxed = last_boxed(tag)
        return (boxed if boxed is not None else tag).strip()
    boxed = last_boxed(completion)
    if boxed is not None:
        return boxed.strip()
    for trigger in ("he answer is", "final answer is"):
        if trigger in completion:
            ans = completion.rsplit(trigger, 1)[1].strip().lstrip(":").strip()
            ans = ans.split("\n")[0].strip().strip("*").strip()   # "The answer is: **12**" -> 12
            return ans[:-1] if ans.endswith(".") else ans
    numbers = re.findall(r"-?\d*\.?\d+", completion.replace(",", ""))
    return numbers[-1] if numbers else ""


def _normalise(s: str) -> str:
    # Light string normalisation for the exact-match fallback only (math-verify does the real work).
    s = s.strip().strip("$").strip()
    s = re.sub(r"\\text\{(.*?)\}", r"\1", s)
    s = s.replace("\\left", "").replace("\\right", "").replace("\\!", "").replace("dfrac", "frac")
    s = s.replace("tfrac", "frac").replace("\\%", "").replace("%", "").replace("^\\circ", "").replace("^{\\circ}", "")
    return re.sub(r"\s+", "", s).rstrip(".").lower()


# A number in E notation (`4.5e33`, `1e-5`: 58 of Minerva's 272 reference answers). math-verify reads it as LaTeX,
# where `e` is Euler's number, so `4.5 \times 10^{33}` would never match; rewrite it as the LaTeX it means.
_E_NOTATION = re.compile(r"(?<![\w.\\])(\d+(?:\.\d*)?|\.\d+)[eE]([-+]?)(\d+)(?![\w.])")
MAX_ANSWER = 1000  # characters: longer answers are compared as strings only (math-verify takes 5 s on 40 KB of junk)


def _parse(s: str):
    # math-verify reads LaTeX inside math delimiters; wrap bare answers so `\frac12` and `3,5` are found.
    s = _E_NOTATION.sub(lambda m: f"{m.group(1)}\\times 10^{{{'-' if m.group(2) == '-' else ''}"
                                  f"{m.group(3).lstrip('0') or '0'}}}", s.strip())
    s = s.replace("\\$", "").strip()  # a currency sign (MATH500's \$36), never a math delimiter
    if not s:
        return []
    if "$" not in s and "\\(" not in s and "\\[" not in s:
        s = f"${s}$"
    try:
        return parse(s, extraction_config=_EXTRACTION)
    except Exception:  # math-verify raises on a few pathological strings; treat as unparseable
        return []


def math_equal(gold: str, answer: str) -> bool:
    """True when `answer` is mathematically equivalent to the reference `gold` (both LaTeX/plain strings)."""
    if threading.current_thread() is not threading.main_thread():
        # math-verify's parse and verify timeouts are SIGALRM-based: in another thread they raise, _parse would read
        # that as "unparseable", and every answer would fall back to the string match without a word
        raise RuntimeError("math_equal runs in the main thread only (math-verify's timeouts use SIGALRM)")
    if not answer.strip():
        return False
    if len(answer) > MAX_ANSWER or len(gold) > MAX_ANSWER:
        return answer.strip() == gold.strip()
    if _normalise(gold) == _normalise(answer):
        return True
    g, a = _parse(gold), _parse(answer)
    if not g or not a:
        return False
    try:
        return bool(verify(g, a))
    except Exception:
        return False


def gold_answer(benchmark: str, record: dict) -> str:
    """The reference answer string of one raw record of a math benchmark (see GOLD_FIELD)."""
    spec = GOLD_FIELD[benchmark]
    if spec.startswith("boxed:"):
        field = spec.split(":", 1)[1]
        ans = last_boxed(record[field])
        if ans is None:
            raise ValueError(f"no \\boxed{{}} in the {field!r} field")
        return ans.strip()
    if spec.startswith("first:"):
        # OlympiadBench: `$` also separates the parts of a multi-answer ("69$,$84"): as the official harness
        # strips every `$`, the gold is the plain text "69 , 84"
        field = spec.split(":", 1)[1]
        answer = " ".join(str(record[field][0]).replace("$", " ").split())
        if not answer:
            raise ValueError(f"the {field!r} field is empty")
        return answer
    value = record[spec]
    if value is None or not str(value).strip():
        raise ValueError(f"the {spec!r} field is empty")
    if isinstance(value, float) and value.is_integer():  # AMC23 stores 27.0
        value = int(value)
    return str(value).strip()
