"""AZR's text side: the prompts the model sees and the parsers that read its answers.

Everything here follows ../shared/azr-spec.md sections 2-4, i.e. what the official AZR code (branch `paper`) does:

- `r1_wrap` puts every prompt (proposer, solver, learnability rollout) in the DeepSeek-R1 "zero" template: a
  preamble, `User: {prompt}`, a newline, `Assistant: <think>`. Plain text, no special tokens (base models only).
- `proposer_prompt` (deduction / abduction), `induction_proposer_prompt` and `solver_prompt` build the task prompts.
  The texts are our own wording of AZR's prompts with the same sections, tags and fences, in the same order.
- `parse_response` is the format check + `<answer>` extraction used for trained responses; `extract_answer` is the
  extraction alone, used for learnability rollouts (AZR scores those without a format check).
- `parse_proposal` and `parse_prediction` read the fenced blocks inside the answer, with AZR's fallbacks.

What is NOT here on purpose: the single-`def` rule, renaming the entry function to `f`, collecting imports and the
banned-import check all live in `sandbox.validate` (one place for program checks). Parsers return text only; they
never evaluate anything the model wrote.

Task names: "deduction" (AZR's code_o: predict the output), "abduction" (code_i: predict an input),
"induction" (code_f: predict the function).
"""
import re

from sandbox import BANNED_IMPORTS

TASKS = ("deduction", "abduction", "induction")
NUM_INPUTS = 10  # inputs per induction proposal (azr-spec 3.3); 5 are shown to the solver, 5 are hidden

# ----------------------------------------------------------------------------------------------------------------------
# R1 "zero" template

# One paragraph, then "User: ..." on the same line, then "Assistant: <think>" on the next. The prompt ends with an
# open <think>, so the model starts by reasoning. The preamble must not contain "Assistant:" because the official
# scorer splits the decoded text on that string (see parse_response).
R1_PREAMBLE = (
    "A conversation between User and Assistant. The User asks a question and the Assistant solves it. The "
    "Assistant first works through the reasoning in its mind and then gives the User the answer. The reasoning and "
    "the answer are enclosed in <think> </think> and <answer> </answer> tags respectively, i.e., "
    "<think> reasoning here </think> <answer> answer here </answer>."
)


def r1_wrap(task_prompt: str) -> str:
    """Wrap a task prompt in the R1 template; the result ends with 'Assistant: <think>'."""
    return f"{R1_PREAMBLE} User: {task_prompt}\nAssistant: <think>"


# ----------------------------------------------------------------------------------------------------------------------
# Shared prompt pieces

# The example input/output the prompts show: a (name, info-dict) call. The templates below go through str.format;
# these examples and all model-written text (programs, inputs, outputs, messages) are passed as arguments, so their
# braces are never interpreted. Literal braces written in a template itself are doubled.
EXAMPLE_INPUT = "'Alice', {'age': 31, 'city': 'Lisbon'}"
EXAMPLE_OUTPUT = "{'age': 31, 'city': 'Lisbon'}"

# Code requirements: the proposer list has the "long multi-step state tracking" bullet, the induction solver list
# (azr-spec 3.4) repeats the rest.
_STATE_TRACKING = ("- Make the snippet track state through several successive data transformations, so that working "
                   "it out takes long, multi-step reasoning\n")


def _code_requirements(state_tracking: bool) -> str:
    return (
        "- Name the entry function `f` (e.g., `def f(...): ...`); definitions nested inside `f` are allowed\n"
        "- The function must return a value\n"
        "- It must take at least one input parameter\n"
        "- It must be deterministic\n"
        + (_STATE_TRACKING if state_tracking else "") +
        "- DO NOT USE ANY OF THE FOLLOWING:\n"
        "  * random functions or random values\n"
        "  * date or time operations\n"
        "  * I/O operations (reading files, network requests)\n"
        "  * printing or logging\n"
        "  * any external state\n"
        "- It must finish within 10 seconds on a modern CPU\n"
        "- Put all imports and class definitions at the very top of the snippet\n"
        "- The snippet must end with the return statement of the main function `f`; anything after it is removed\n"
    )


# ----------------------------------------------------------------------------------------------------------------------
# Proposer prompts (azr-spec 3.1 and 3.3)

# The one sentence that differs between the two task descriptions: who sees what.
_PROPOSER_GOAL = {
    "abduction": ("work out one possible input from a given output. Your submission is a code snippet and one test "
                  "input; the input is plugged into the snippet to produce an output, and that output is then given "
                  "to a test subject, who must come up with any input that produces the same output"),
    "deduction": ("work out the output from the input. Your submission is a code snippet and one test input; the "
                  "input is plugged into the snippet to produce an output, and the input is then given to a test "
                  "subject, who must deduce that output"),
}

# Quirk kept from the official prompts (azr-spec 3.1, paper Figures 34/35): the "difficulty" bullet is swapped. The
# abduction prompt asks for outputs that are hard to predict, the deduction prompt for inputs that are hard to
# recover, although the test subject faces the other problem in each case.
_DIFFICULTY = {
    "abduction": "Difficulty of predicting the output from your input and your code snippet",
    "deduction": ("Difficulty of recovering your ```input``` from 1) your ```python``` code and 2) the deterministic "
                  "```output``` that your ```input``` produces"),
}

_PROPOSER_TEMPLATE = """
## Task: Write a New Python Code Snippet (custom classes are allowed and must be defined at the top of the snippet) with One Matching Input

Taking the reference code snippets below as examples, design a new and original Python code snippet that takes deep algorithmic reasoning to {goal}. Treat it as an I.Q. test.

### Code Requirements:
{code_requirements}
### Input Requirements:
- Give exactly one test input for your function
- Separate multiple arguments with commas
- Put quotes around string arguments

### Formatting:
- Write your code as:
```python
def f(...):
    # your code here
    return ...
```
- Write your input as:
```input
arg1, arg2, ...
```

### Example Format:
```python
def f(name: str, info: dict):
    # code logic here
    return result
```

```input
{example_input}
```

### Evaluation Criteria:
- Executability: your code must run on your input
- {difficulty}. Aim for algorithmic reasoning or intricate logic: for example, define data-structure classes (trees, heaps, stacks, queues, graphs, ...) and operate on them, or use involved control flow, dynamic programming, recursion, divide and conquer, greedy search, backtracking, ...
- Creativity: the code must be clearly different from the reference snippets
- Restricted words and packages: you may not use any of the following words in any form, not even in comments: {banned}

First, make a clear plan: decide what will make your snippet challenging, how it differs from the reference snippets, and why it is creative. Then write the final code snippet and its input.
"""


def proposer_prompt(task: str, references: list) -> str:
    """Deduction/abduction proposer prompt (AZR's code_output_prompt / code_input_prompt), before r1_wrap.

    references: list of dicts with keys program, input, output (K=6 sampled from the task's buffer in the paper;
    an empty list gives the prompt without a reference section, for the K=0 ablation).
    """
    if task not in ("deduction", "abduction"):
        raise ValueError(f"proposer_prompt: task must be 'deduction' or 'abduction', got {task!r}; "
                         f"use induction_proposer_prompt for induction")
    text = _PROPOSER_TEMPLATE.format(goal=_PROPOSER_GOAL[task], code_requirements=_code_requirements(True),
                                     example_input=EXAMPLE_INPUT, difficulty=_DIFFICULTY[task],
                                     banned=", ".join(BANNED_IMPORTS))
    if references:
        # Numbered from 0 as in the official constructor; each reference carries all three fences.
        text += "\n### Reference Code Snippets:\n"
        for i, ref in enumerate(references):
            text += (f"<snippet_{i}>\n```python\n{ref['program']}\n```\n```input\n{ref['input']}\n```\n"
                     f"```output\n{ref['output']}\n```\n</snippet_{i}>\n")
    return text + "\n"


_INDUCTION_PROPOSER_TEMPLATE = """
## Task: Give {n} Inputs that can be plugged into the following Code Snippet to produce diverse Outputs, and leave a message about the snippet.

Using the code snippet below, design {n} inputs that, plugged into the snippet, produce a varied set of outputs. Some of your inputs, together with the outputs they deterministically produce, will be given to a test subject who must deduce the function; treat it as an I.Q. test. You may also leave the test subject a message that helps them deduce the code snippet.

### Input Requirements:
- Give {n} valid inputs for the code snippet
- In each input, separate multiple arguments with commas
- Put quotes around string arguments
- Wrap each input in its own ```input``` block

### Message Requirements:
- Leave the test subject a message that helps them deduce the code snippet
- Wrap the message in a ```message``` block
- The message can take any form: it can even be a coding question, or a plain description of what the code snippet does
- Do not include the code snippet in the message

### Formatting:
- Write each input as:
```input
arg1, arg2, ...
```

### Example Format:
```input
{example_input}
```
```input
'Bob', {{'age': 58, 'city': 'Osaka'}}
```

### Evaluation Criteria:
- Executability: the code snippet must run on each of your inputs
- Coverage: the inputs and outputs together should cover the input space of the code snippet, enough to deduce the snippet from them
- Creativity: the inputs must be clearly different from one another
- The inputs and the message together should make a challenge that is hard for the test subject, but not impossible
First, make a clear plan: understand the code snippet, then decide how your inputs reach high coverage and why they are challenging and creative. Then write the inputs and the message. Remember to wrap each input in ```input``` tags and the message in ```message``` tags.

### Code Snippet:
```python
{program}
f(<|YOUR INPUT WILL BE PLUGGED HERE|>)
```
"""


def induction_proposer_prompt(program: str, num_inputs: int = NUM_INPUTS) -> str:
    """Induction proposer prompt (AZR's code_function_prompt), before r1_wrap: the model gives inputs + a message."""
    return _INDUCTION_PROPOSER_TEMPLATE.format(n=num_inputs, example_input=EXAMPLE_INPUT, program=program)


# ----------------------------------------------------------------------------------------------------------------------
# Solver prompts (azr-spec 3.2 and 3.4)

_DEDUCTION_SOLVER_TEMPLATE = """
# Task: Deduce the Output of a Python Code Snippet Given the Code and Input
Given the code snippet and the input below, think step by step, then deduce the output that the snippet produces when the input is plugged in. Put your output in ```output``` tags. If the output is a string, wrap it in quotes. If the function returns several values, wrap them in a tuple.

# Code Snippet:
```python
{program}
```

# Input:
```input
{input}
```

# Example Output:
```output
{example_output}
```
"""

_ABDUCTION_SOLVER_TEMPLATE = """
# Task: Provide One Possible Input of a Python Code Snippet Given the Code and Output
Given the code snippet and the output below, think step by step, then give one input that produces this output. Put the input in ```input``` tags. If an argument is a string, wrap it in quotes. If the function takes several arguments, separate them with commas.

# Code Snippet:
```python
{program}
```

# Output:
```output
{output}
```

# Output Format:
```input
arg1, arg2, ...
```
# Example Output:
```input
{example_input}
```
"""

_INDUCTION_SOLVER_TEMPLATE = """
# Task: Deduce the Function that Produced the Outputs from the Inputs
Given a set of input/output pairs and a message that describes the function, think step by step to deduce a general code snippet. It must produce the hidden outputs from the hidden inputs, like the original code that generated the pairs. Put your final answer inside python tags! It helps to check your function against each input/output pair one by one; if it does not behave as expected, revise it until it does. Your response is graded on the final code snippet, wrapped in ```python``` tags.

# Code Requirements:
{code_requirements}
# Input and Output Pairs:
{pairs}
# Message:
```message
{message}
```

# Example Output:
```python
def f(a):
    return a
```

Name your entry function `f()`!!!
"""


def solver_prompt(task: str, entry: dict) -> str:
    """Solver prompt before r1_wrap. entry: deduction {program, input}; abduction {program, output};
    induction {inputs, outputs, message} with the given pairs only (the solver never sees the program)."""
    if task == "deduction":
        return _DEDUCTION_SOLVER_TEMPLATE.format(program=entry["program"], input=entry["input"],
                                                 example_output=EXAMPLE_OUTPUT)
    if task == "abduction":
        return _ABDUCTION_SOLVER_TEMPLATE.format(program=entry["program"], output=entry["output"],
                                                 example_input=EXAMPLE_INPUT)
    if task == "induction":
        if len(entry["inputs"]) != len(entry["outputs"]):
            raise ValueError(f"solver_prompt: induction entry has {len(entry['inputs'])} inputs but "
                             f"{len(entry['outputs'])} outputs; pass the given pairs (same count)")
        # Numbered from 0 as in the official constructor: input_0/output_0, input_1/output_1, ...
        pairs = "".join(f"```input_{i}\n{x}\n```\n```output_{i}\n{y}\n```\n"
                        for i, (x, y) in enumerate(zip(entry["inputs"], entry["outputs"])))
        return _INDUCTION_SOLVER_TEMPLATE.format(code_requirements=_code_requirements(False), pairs=pairs,
                                                 message=entry["message"])
    raise ValueError(f"solver_prompt: unknown task {task!r}; expected one of {TASKS}")


# ----------------------------------------------------------------------------------------------------------------------
# Response parsing (azr-spec 2): format check and <answer> extraction

# The parsers below are linear scans that give exactly what AZR's regexes give (tests/test_prompts.py holds the
# regexes and compares): on degenerate text (an RL policy can drift into 40 KB of "```python" and spaces) the regexes
# backtrack quadratically, ~10 s per response.

def format_ok(text: str) -> bool:
    r"""AZR's format check re.match(r"<think>.*?</think>\s*<answer>.*?</answer>", text, re.DOTALL), anchored at the
    start, text after </answer> allowed, in linear time: `<think>` first, then some `</think>` followed by optional
    whitespace and `<answer>`, with a `</answer>` somewhere after that."""
    if not text.startswith("<think>"):
        return False
    last_close = text.rfind("</answer>")
    pos = 7
    while True:
        p = text.find("</think>", pos)
        if p < 0:
            return False
        q = _SPACE.match(text, p + 8).end()
        if text.startswith("<answer>", q):
            return last_close >= q + 8  # the first such </think> decides: a later one has fewer </answer> after it
        pos = p + 1


def extract_answer(text: str) -> str:
    """Text between the LAST <answer> and the next </answer> (or the end if unclosed), stripped; "" if no <answer>.

    Used alone (no format check) for learnability rollouts, as AZR does."""
    if "<answer>" not in text:
        return ""
    return text.split("<answer>")[-1].split("</answer>")[0].strip()


def parse_response(response: str) -> tuple:
    """(format_ok, answer) for a trained response; `response` is the continuation after the prompt's '<think>'.

    The official scorer decodes prompt + response and keeps `split("Assistant:")[1]`, i.e. the text after the
    prompt's "Assistant:" up to the NEXT "Assistant:" if the model writes one (base models often continue the
    dialogue with "User: ... Assistant: ..."), then strips whitespace and quote characters. We reproduce that on the
    response alone: the prompt contributes " <think>" to the front of that text.
    """
    text = (" <think>" + response).split("Assistant:")[0].strip().strip("\"'")
    return format_ok(text), extract_answer(text)


# ----------------------------------------------------------------------------------------------------------------------
# Fenced-block parsing inside the answer (azr-spec 3.1-3.4). AZR's regexes: case-insensitive, DOTALL.

_FLAGS = re.DOTALL | re.IGNORECASE
_SPACE = re.compile(r"\s*")


def fenced_blocks(text: str, tag: str | None = None) -> list[str]:
    r"""Contents of the fenced blocks of `text`, left to right, exactly as AZR's fence regexes find them (DOTALL,
    case-insensitive; each block ends at the next ```), in linear time:
      tag None: r"```(?:python\s*)?\n?(.*?)\n?```": ANY fence, only a `python` tag removed, so "the first fenced
        block" is the first fence of any kind (an answer opening with an ```input fence gives a "program" starting
        with the word "input", which then fails validation);
      tag "input", "output", "message": rf"```{tag}\s*\n?(.*?)\n?```"."""
    out, pos = [], 0
    while True:
        i = text.find("```", pos)
        if i < 0:
            return out
        j = i + 3
        if tag is None:
            if text[j:j + 6].lower() == "python":
                j = _SPACE.match(text, j + 6).end()
            elif text.startswith("\n", j):
                j += 1
        elif text[j:j + len(tag)].lower() == tag:
            j = _SPACE.match(text, j + len(tag)).end()
        else:
            pos = i + 1
            continue
        k = text.find("```", j)
        if k < 0:  # no closing fence after this opener, so none after any later one either
            return out
        block = text[j:k]
        out.append(block[:-1] if block.endswith("\n") else block)
        pos = k + 3


def _calls(text: str, kind: str) -> list[str]:
    r"""re.findall(rf"{kind}\s*\((.*?)\)", text, DOTALL | IGNORECASE) in linear time. Quirks kept: a call stops at
    the first ")" (so "input((1, 2))" gives "(1, 2"), and prose such as "the input (a list) ..." matches."""
    out, pos, opener = [], 0, re.compile(rf"{kind}\s*\(", re.IGNORECASE)
    while (m := opener.search(text, pos)) is not None:
        k = text.find(")", m.end())
        if k < 0:
            break
        out.append(text[m.end():k])
        pos = k + 1
    return out


def _tagged(text: str, kind: str, to_end: bool = True) -> list[str]:
    r"""Contents of <kind>...</kind>, left to right (case-insensitive), in linear time, exactly as AZR's regexes
    capture them. to_end: an unclosed last tag runs to the end of the text (AZR's
    rf"<{kind}>\s*(.*?)(?:</{kind}>|\s*$)"); else it does not count (its r"<message>\s*(.*?)\s*</message>").
    Whitespace after the opening tag is never captured (the `\s*`), nor is trailing whitespace where the pattern
    has a `\s*` before the end (unclosed tag, message); whitespace before a closing </input>/</output> is. This
    matters for abduction, whose captured input AZR pastes unstripped: "<input>\n1, 2</input>" is "1, 2", a call
    on one line."""
    out, pos = [], 0
    opener, closer = re.compile(rf"<{kind}>", re.IGNORECASE), re.compile(rf"</{kind}>", re.IGNORECASE)
    while (m := opener.search(text, pos)) is not None:
        start = _SPACE.match(text, m.end()).end()
        c = closer.search(text, m.end())
        if c is None:
            if to_end:
                out.append(text[start:].rstrip())
            break
        out.append(text[start:c.start()] if to_end else text[start:c.start()].rstrip())
        pos = c.end()
    return out


def _hash_line_re(label: str):
    # "# Input: ..." fallback. Without MULTILINE, `$` is the end of the answer, so this takes everything up to the
    # next "\n```" or the end, not just one line (official behaviour).
    return re.compile(rf"# {label}:\s*(.*?)(?=\n```|$)", _FLAGS)


INPUT_LINE_RE, MESSAGE_LINE_RE = _hash_line_re("Input"), _hash_line_re("Message")

# Solver fallbacks, tried in this order when there is no fence; the last match of the first pattern that matches wins.
_PREDICTION_FALLBACKS = {
    kind: [lambda a, k=kind: fenced_blocks(a, k), _hash_line_re(kind.capitalize()).findall,
           lambda a, k=kind: _calls(a, k), lambda a, k=kind: _tagged(a, k),
           re.compile(rf"the {kind} is\s*(.*?)\.?$", _FLAGS).findall]
    for kind in ("input", "output")
}


def parse_proposal(task: str, answer: str, num_inputs: int = NUM_INPUTS):
    """Read a proposer's answer. Returns None when a required part is missing.

    deduction/abduction -> {"program", "input"}: the first fenced block is the program (see fenced_blocks), the
    first ```input fence the input (fallback "# Input:"). induction -> {"inputs": last `num_inputs` input fences,
    "message"}: None if fewer inputs than that, or no message (```message fence, then <message> tags, then
    "# Message:").
    """
    if task in ("deduction", "abduction"):
        code = fenced_blocks(answer)
        inp = fenced_blocks(answer, "input") or INPUT_LINE_RE.findall(answer)
        if not code or not inp:
            return None
        return {"program": code[0].strip(), "input": inp[0].strip()}
    if task == "induction":
        # Only ```input fences count: the official "# Input:" fallback here tests `not re.finditer(...)`, which is
        # never true (an iterator is truthy), so AZR never uses it and neither do we.
        inputs = [b.strip() for b in fenced_blocks(answer, "input")]
        if len(inputs) < num_inputs:
            return None
        msg = (fenced_blocks(answer, "message") or _tagged(answer, "message", to_end=False)
               or MESSAGE_LINE_RE.findall(answer))
        if not msg:
            return None
        # Models often write more fences while drafting; AZR keeps the last ones.
        return {"inputs": inputs[-num_inputs:], "message": msg[0].strip()}
    raise ValueError(f"parse_proposal: unknown task {task!r}; expected one of {TASKS}")


def parse_prediction(task: str, answer: str, raw: bool = False):
    """Read a solver's answer: the predicted output (deduction), input (abduction) or program (induction).

    deduction/abduction never fail: after the fallbacks the whole answer is the prediction, stripped; raw=True
    gives it unstripped, as AZR pastes it into its executor's program (a trailing newline puts the call on two
    lines, which never scores; our sandbox compares values, so it gets the stripped text).
    induction: the last fenced block (optional python tag), stripped; None when there is none, which AZR scores as
    a format failure (-1) in training and as 0 accuracy in learnability rollouts. An empty last block is "": a
    well-formatted wrong answer, as in AZR.
    """
    if task == "induction":
        blocks = fenced_blocks(answer)
        return blocks[-1].strip() if blocks else None
    if task not in ("deduction", "abduction"):
        raise ValueError(f"parse_prediction: unknown task {task!r}; expected one of {TASKS}")
    for find in _PREDICTION_FALLBACKS["output" if task == "deduction" else "input"]:
        matches = find(answer)
        if matches:
            return matches[-1] if raw else matches[-1].strip()
    return answer if raw else answer.strip()
