"""Prompt templates for evaluation (azr-spec.md 9.1) and the per-model default.

- `azr`: the R1 "zero" template of training (prompts.R1_PREAMBLE), `User: {problem}` then `Assistant:`. AZR's math
  harness ends this template at `Assistant:` (spec 9.1); the model opens `<think>` itself.
- `azr_boxed`: the same, with the instruction that the final answer is read from \\boxed{} (AZR-Coder-7B's template).
- `qwen-boxed`: the Qwen chat format with "Please reason step by step, and put your final answer within \\boxed{}."
  (the math harness's template for base Qwen models, maintainer reply in AZR issue #27).

Code generation (HumanEval+, MBPP+) uses EvalPlus's instruction prompt: under `qwen-boxed` (chat)
the assistant turn is pre-filled with EvalPlus's response prefix ending in an open ```python fence, as EvalPlus does
for tokenizers that ship a chat template (Qwen2.5 base models do); under `azr`/`azr_boxed` the same instruction goes
through the R1 template and the code is read from the answer. CRUXEval always uses AZR's solver prompts inside the
R1 training template (`prompts.r1_wrap`), as AZR's in-loop validation does.
"""
from prompts import R1_PREAMBLE

TEMPLATES = ("azr", "azr_boxed", "qwen-boxed")
BOXED_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
QWEN_SYSTEM = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"

# EvalPlus's instruction-model prompt pieces (codegen for chat tokenizers).
CODE_INSTRUCTION = ("Please provide a self-contained Python script that solves the following problem in a markdown "
                    "code block:")
CODE_RESPONSE_PREFIX = ("Below is a Python script with a self-contained function that solves the problem and passes "
                        "corresponding tests:")


def default_template(model_name: str) -> str:
    """azr for AZR checkpoints (ours or the released ones), azr_boxed for AZR-Coder-7B, qwen-boxed otherwise."""
    name = str(model_name).lower().replace("_", "-")
    if "absolute-zero" in name or "azr" in name:
        return "azr_boxed" if "coder-7b" in name else "azr"
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


def code_prompt(template: str, task: str) -> tuple[str, bool]:
    """(prompt text, prefilled) for one code-generation task; prefilled=True when the prompt ends inside an open
    ```python fence, so the completion is code up to the closing fence."""
    user = f"{CODE_INSTRUCTION}\n```\n{task.strip()}\n```"
    if template == "qwen-boxed":
        return _qwen_chat(user, f"{CODE_RESPONSE_PREFIX}\n```python\n"), True
    if template in ("azr", "azr_boxed"):
        return _r1(user), False
    raise ValueError(f"unknown template {template!r}; choose from {', '.join(TEMPLATES)}")
