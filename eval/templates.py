"""Prompt templates for evaluation (azr-spec.md 9.1) and the per-model default.

Where each template comes from (checked against the public sources; LeapLabTHU/Absolute-Zero-Reasoner is "AZR"):
- `qwen-boxed`: PROMPT_TEMPLATES["qwen-boxed"] of the simpleRL-reason math harness that AZR's evaluation/math_eval
  is built on (read in hkust-nlp/RL-Verifier-Pitfalls examples/simplelr_math_eval/utils.py): the Qwen chat format
  with system "You are a helpful assistant." and the user turn "{problem}\nPlease reason step by step, and put your
  final answer within \\boxed{}.", ending at "<|im_start|>assistant\n". AZR uses it for the base Qwen models
  (maintainer reply in AZR issue #27). Matches the official text word for word.
- `azr` and `azr_boxed`: the template names come from AZR's evaluation/math_eval/run.sh and README (`--template azr`
  for most AZR checkpoints, `--template azr_boxed` for AZR-Coder-7B). The file that defines their text (AZR's
  evaluation/math_eval utils) is not in the public index we could read, so these follow azr-spec.md 9.1: the R1
  "zero" template of training (prompts.R1_PREAMBLE), `User: {problem}` then `Assistant:` (the model opens `<think>`
  itself); azr_boxed adds a line saying the final answer is read from \\boxed{}. Unverified word for word.
  Note: prompts.R1_PREAMBLE is our wording of the R1 preamble; AZR's own text (its README "Usage" and its LCB fork's
  SYSTEM_MESSAGE_AZR, "A conversation between User and Assistant. The user asks a question, and the Assistant solves
  it. ...") differs. We keep the preamble our model is trained with.

Code generation (HumanEval+, MBPP+): AZR runs `evalplus.codegen --backend vllm --greedy` (AZR
evaluation/code_eval/scripts/run_evalplus.sh). For a tokenizer with a chat template, EvalPlus (evalplus/evalplus
evalplus/codegen.py and evalplus/provider/utility.py `make_raw_chat_prompt`) renders the user turn
"{instruction prefix}\n```\n{task.strip()}\n```\n" and pre-fills the assistant turn with
"{response prefix}\n```python\n"; `code_prompt("qwen-boxed", ...)` is that text in the Qwen chat format, so the
completion is code up to the closing fence. The system turn is whatever the evaluated tokenizer's template adds by
default; we use the math template's "You are a helpful assistant." (our reading of the Qwen2.5 base tokenizers, not
checked against them) when the tokenizer has no chat template; with one (the released Qwen2.5 tokenizers), its own
rendering, as EvalPlus does. Whether AZR's pinned EvalPlus fork prompts AZR checkpoints differently is not visible in the
public index; under `azr`/`azr_boxed` we put the same instruction through the R1 template and read the code from the
answer (our choice, unverified).
LiveCodeBench uses its own AZR prompt (eval/lcb.py). CRUXEval always uses AZR's solver prompts inside the R1
training template (`prompts.r1_wrap`), as AZR's in-loop validation does.
"""
import os
import re

from prompts import R1_PREAMBLE

TEMPLATES = ("azr", "azr_boxed", "qwen-boxed")
BOXED_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
QWEN_SYSTEM = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"

# EvalPlus's instruction-model prompt pieces (evalplus/codegen.py, run_codegen's defaults).
CODE_INSTRUCTION = ("Please provide a self-contained Python script that solves the following problem in a markdown "
                    "code block:")
CODE_RESPONSE_PREFIX = ("Below is a Python script with a self-contained function that solves the problem and passes "
                        "corresponding tests:")


def default_template(model_name: str) -> str:
    """azr for AZR checkpoints (ours or the released ones), azr_boxed for AZR-Coder-7B, qwen-boxed otherwise. Ours are
    known by name or, wherever the run's --out was, by the files azr.py writes beside the weights (state.json and
    buffers.json): a checkpoint trained on the R1 template is evaluated on it."""
    name = str(model_name).lower().replace("_", "-")
    if "absolute-zero" in name or re.search(r"(?<![a-z])azr(?![a-z])", name):  # not "nanoazr/models/Qwen2.5-7B"
        return "azr_boxed" if "coder-7b" in name else "azr"
    if all(os.path.isfile(os.path.join(str(model_name), f)) for f in ("state.json", "buffers.json")):
        return "azr"
    return "qwen-boxed"


def _r1(user: str) -> str:
    return f"{R1_PREAMBLE} User: {user}\nAssistant:"


def _qwen_chat(user: str, assistant_prefix: str = "") -> str:
    return f"{QWEN_SYSTEM}<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n{assistant_prefix}"


def math_prompt(template: str, problem: str) -> str:
    """Prompt text for one math problem."""
    if template == "azr":
        return _r1(problem)
    if template == "azr_boxed":
        return _r1(f"{problem}\nThe final answer will be extracted from \\boxed{{}}.")
    if template == "qwen-boxed":
        return _qwen_chat(f"{problem}\n{BOXED_INSTRUCTION}")
    raise ValueError(f"unknown template {template!r}; choose from {', '.join(TEMPLATES)}")


def code_prompt(template: str, task: str, tokenizer=None) -> tuple[str, bool]:
    """(prompt text, prefilled) for one code-generation task; prefilled=True when the prompt ends inside an open
    ```python fence, so the completion is code up to the closing fence. qwen-boxed renders EvalPlus's chat prompt
    with the tokenizer's own chat template when it has one (its default system turn included), else in the Qwen
    chat format with QWEN_SYSTEM."""
    user = f"{CODE_INSTRUCTION}\n```\n{task.strip()}\n```"
    if template == "qwen-boxed":  # make_raw_chat_prompt: the user turn ends with a newline after the fence
        prefix = f"{CODE_RESPONSE_PREFIX}\n```python\n"
        if getattr(tokenizer, "chat_template", None):  # render the whole answer, then cut it at a marker
            marker = "<<nanoazr: the answer starts here>>"
            text = tokenizer.apply_chat_template([{"role": "user", "content": user + "\n"},
                                                  {"role": "assistant", "content": prefix + marker + "\n```\n"}],
                                                 tokenize=False)
            return text.split(marker)[0], True
        return _qwen_chat(user + "\n", prefix), True
    if template in ("azr", "azr_boxed"):
        return _r1(user), False
    raise ValueError(f"unknown template {template!r}; choose from {', '.join(TEMPLATES)}")
