"""Tests for prompts.py: prompt structure, the format check and answer extraction, fenced-block parsing with AZR's
fallbacks, and round trips (prompt from a seed entry -> ideal response -> parse gives the entry back)."""
import json
import random
import re

import pytest

import prompts
import sandbox
from prompts import (extract_answer, induction_proposer_prompt, parse_prediction, parse_proposal, parse_response,
                     proposer_prompt, r1_wrap, solver_prompt)

PROGRAM = "def f(xs: list, k: int):\n    out = []\n    for x in xs:\n        out.append(x * k)\n    return out"


def seed_triplets(data_dir, n):
    rows = [json.loads(line) for line in (data_dir / "azr_seeds" / "7b_coder_seed_io.jsonl").open()][:n]
    # Seed files call the program "snippet"; our buffers call it "program".
    return [{"program": r["snippet"], "input": r["input"], "output": r["output"]} for r in rows]


def seed_induction(data_dir, i):
    return json.loads((data_dir / "azr_seeds" / "7b_coder_code_f_seed_io.jsonl").read_text().splitlines()[i])


# ---------------------------------------------------------------------------------------------------------------------
# R1 template and prompt structure

def test_r1_wrap_template():
    p = r1_wrap("Compute 2+2.")
    assert p.endswith("User: Compute 2+2.\nAssistant: <think>")
    assert "<think> </think>" in p and "<answer> </answer>" in p
    # The official scorer splits on "Assistant:", so the wrapper must contain exactly one.
    assert p.count("Assistant:") == 1
    assert "<|" not in p  # plain concatenation, no special tokens


@pytest.mark.parametrize("task", ["deduction", "abduction"])
def test_proposer_prompt_structure(task, data_dir):
    refs = seed_triplets(data_dir, 6)
    p = proposer_prompt(task, refs)
    assert p.lstrip().startswith("## Task:") and "I.Q. test" in p
    for section in ("### Code Requirements:", "### Input Requirements:", "### Formatting:", "### Example Format:",
                    "### Evaluation Criteria:", "### Reference Code Snippets:"):
        assert p.count(section) == 1, section
    # The banned-word list comes from the sandbox, every word listed.
    banned_line = next(line for line in p.splitlines() if "not even in comments" in line)
    assert banned_line.endswith(", ".join(sandbox.BANNED_IMPORTS))
    # References: numbered from 0, each with python, input and output fences, in order.
    assert re.findall(r"<snippet_(\d+)>", p) == [str(i) for i in range(6)]
    assert re.findall(r"</snippet_(\d+)>", p) == [str(i) for i in range(6)]
    for i, ref in enumerate(refs):
        block = p.split(f"<snippet_{i}>\n")[1].split(f"</snippet_{i}>")[0]
        assert block == (f"```python\n{ref['program']}\n```\n```input\n{ref['input']}\n```\n"
                         f"```output\n{ref['output']}\n```\n")
    # Planning instruction comes before the references; the example format has a python and an input fence.
    assert p.index("First, make a clear plan") < p.index("<snippet_0>")
    assert "```python\ndef f(name: str, info: dict):" in p
    wrapped = r1_wrap(p)
    assert wrapped.endswith("Assistant: <think>") and wrapped.count("Assistant:") == 1


def test_proposer_difficulty_bullet_is_swapped():
    # azr-spec 3.1 quirk: abduction talks about predicting the output, deduction about recovering the input.
    ded, abd = proposer_prompt("deduction", []), proposer_prompt("abduction", [])
    assert "Difficulty of predicting the output" in abd and "Difficulty of recovering your ```input```" not in abd
    assert "Difficulty of recovering your ```input```" in ded and "Difficulty of predicting the output" not in ded
    # ...while the task descriptions say what the test subject really does.
    assert "any input that produces the same output" in abd and "must deduce that output" in ded


def test_proposer_reference_count_and_zero_references(data_dir):
    for k in (0, 1, 3):
        p = proposer_prompt("deduction", seed_triplets(data_dir, k))
        assert p.count("<snippet_") == k
        assert ("### Reference Code Snippets:" in p) == (k > 0)
    with pytest.raises(ValueError, match="induction_proposer_prompt"):
        proposer_prompt("induction", [])


def test_induction_proposer_prompt():
    p = induction_proposer_prompt(PROGRAM)
    assert "10 Inputs" in p and "Give 10 valid inputs" in p
    assert "```message```" in p and "```input```" in p and "I.Q. test" in p
    assert p.rstrip().endswith(f"```python\n{PROGRAM}\nf(<|YOUR INPUT WILL BE PLUGGED HERE|>)\n```")
    assert "4 Inputs" in induction_proposer_prompt(PROGRAM, num_inputs=4)


def test_solver_prompts_show_only_what_the_solver_may_see(data_dir):
    ref = seed_triplets(data_dir, 3)[2]
    ded = solver_prompt("deduction", {"program": ref["program"], "input": ref["input"]})
    assert f"```python\n{ref['program']}\n```" in ded and f"```input\n{ref['input']}\n```" in ded
    assert ref["output"] not in ded and "```output\n" in ded  # only the example output fence
    abd = solver_prompt("abduction", {"program": ref["program"], "output": ref["output"]})
    assert f"```output\n{ref['output']}\n```" in abd and ref["input"] not in abd
    assert abd.count("```input\n") == 2  # the output-format fence and the example fence

    seed = seed_induction(data_dir, 1)
    entry = {"inputs": seed["inputs"][:5], "outputs": seed["outputs"][:5], "message": seed["message"]}
    ind = solver_prompt("induction", entry)
    assert seed["snippet"] not in ind
    assert re.findall(r"```input_(\d)\n", ind) == list("01234")
    assert re.findall(r"```output_(\d)\n", ind) == list("01234")
    for i in range(5):
        assert f"```input_{i}\n{entry['inputs'][i]}\n```\n```output_{i}\n{entry['outputs'][i]}\n```" in ind
    assert f"```message\n{seed['message']}\n```" in ind
    assert "```python\ndef f(a):\n    return a\n```" in ind
    assert ind.rstrip().endswith("Name your entry function `f()`!!!")
    with pytest.raises(ValueError, match="same count"):
        solver_prompt("induction", {"inputs": ["1", "2"], "outputs": ["1"], "message": "m"})
    with pytest.raises(ValueError, match="unknown task"):
        solver_prompt("code_o", {})


def test_braces_in_model_text_are_not_formatted():
    prog = "def f(d):\n    return {k: v for k, v in d.items()} | {'x': '{0}'}"
    assert prog in solver_prompt("deduction", {"program": prog, "input": "{'a': 1}"})
    assert prog in induction_proposer_prompt(prog)
    assert prog in proposer_prompt("abduction", [{"program": prog, "input": "{}", "output": "{'x': '{0}'}"}])


# ---------------------------------------------------------------------------------------------------------------------
# Format check and answer extraction

GOOD = " I multiply each item by k.\n</think>\n<answer>\n```output\n[2, 4]\n```\n</answer>"


def test_parse_response_good():
    ok, ans = parse_response(GOOD)
    assert ok and ans == "```output\n[2, 4]\n```"


@pytest.mark.parametrize("response", [
    "reasoning </think> no answer tags at all",                          # missing <answer>
    "reasoning without closing think <answer>5</answer>",                # missing </think>
    "reasoning </think> text between <answer>5</answer>",                # text between </think> and <answer>
    "reasoning </think>\n<answer>5",                                     # unclosed answer
    "reasoning <answer>5</answer> </think>",                             # wrong order
])
def test_parse_response_malformed(response):
    ok, _ = parse_response(response)
    assert not ok


def test_parse_response_answer_is_extracted_even_when_malformed():
    # Extraction is independent of the format check (the reward is -1 anyway when the format fails).
    assert parse_response("reasoning without closing think <answer> 5 </answer>") == (False, "5")
    assert parse_response("reasoning </think>\n<answer>\n'abc'") == (False, "'abc")  # quirk: trailing quote stripped
    assert parse_response("no tags at all") == (False, "")


def test_parse_response_multiple_answers_and_trailing_text():
    r = " a </think><answer>first</answer> more <answer>second</answer>\nUser: thanks!\n\nblah"
    assert parse_response(r) == (True, "second")
    # The last <answer> is unclosed: everything after it is the answer (official split behaviour).
    assert parse_response(" a </think><answer>first</answer> <answer>tail text") == (True, "tail text")


def test_parse_response_stops_at_next_assistant_turn():
    # A base model continuing the dialogue: the official scorer only sees text up to the next "Assistant:".
    r = " a </think> <answer>1</answer>\nUser: and 3?\nAssistant: <think> b </think> <answer>3</answer>"
    assert parse_response(r) == (True, "1")
    assert not parse_response(" a Assistant: </think> <answer>1</answer>")[0]


def test_parse_response_whitespace_crlf_and_repeated_think():
    assert parse_response("\r\n reason \r\n</think>\r\n\r\n<answer>\r\n7\r\n</answer>\r\n") == (True, "7")
    assert parse_response("<think> again </think><answer>x</answer>") == (True, "x")


def test_extract_answer_for_learnability():
    # No format check, no "Assistant:" split: just the last <answer> block of the response.
    assert extract_answer("no think at all <answer> 42 </answer> trailing") == "42"
    assert extract_answer("x <answer>1</answer>\nAssistant: <answer>2</answer>") == "2"
    assert extract_answer("nothing") == ""


# ---------------------------------------------------------------------------------------------------------------------
# Proposer parsing

def test_parse_proposal_deduction_abduction():
    ans = f"```python\n{PROGRAM}\n```\n\n```input\n[1, 2], 3\n```"
    for task in ("deduction", "abduction"):
        assert parse_proposal(task, ans) == {"program": PROGRAM, "input": "[1, 2], 3"}
    # No python tag, CRLF line ends, upper-case tag.
    crlf = f"```\r\n{PROGRAM}\r\n```\r\n```INPUT\r\n[1, 2], 3\r\n```".replace("\n    ", "\r\n    ")
    got = parse_proposal("deduction", crlf)
    assert got["input"] == "[1, 2], 3" and got["program"].replace("\r\n", "\n") == PROGRAM


def test_parse_proposal_input_fallback_and_missing_parts():
    # "# Input:" fallback: the text up to the next fence (or the end).
    got = parse_proposal("abduction", f"```python\n{PROGRAM}\n```\n# Input: [5], 2")
    assert got == {"program": PROGRAM, "input": "[5], 2"}
    assert parse_proposal("abduction", f"```python\n{PROGRAM}\n```\nno input given") is None
    assert parse_proposal("deduction", "```input\n1\n```") == {"program": "input\n1", "input": "1"}  # see below
    assert parse_proposal("deduction", "just prose, def f(x): return x\n# Input: 1") is None


def test_parse_proposal_takes_first_fence_of_any_kind():
    # Official quirk: the "program" is the first fence whatever its tag (only `python` is removed); an answer that
    # starts with the input fence yields a program starting with "input", which sandbox.validate then rejects.
    ans = f"```input\n3\n```\n```python\n{PROGRAM}\n```"
    assert parse_proposal("deduction", ans) == {"program": "input\n3", "input": "3"}
    # Two python fences: the first one is the program.
    two = f"```python\ndef f(a):\n    return 1\n```\n```python\n{PROGRAM}\n```\n```input\n[1], 1\n```"
    assert parse_proposal("abduction", two)["program"] == "def f(a):\n    return 1"


def test_parse_proposal_keeps_program_text_verbatim():
    # Single-def rule, renaming and import collection belong to sandbox.validate, not the parser.
    prog = "import math\n\ndef helper(x):\n    return x\n\ndef g(a):\n    return helper(math.floor(a))"
    assert parse_proposal("deduction", f"```python\n{prog}\n```\n```input\n1.5\n```")["program"] == prog


def test_parse_proposal_nested_backticks():
    prog = "def f(s):\n    return s.replace('`', '``')"
    assert parse_proposal("deduction", f"```python\n{prog}\n```\n```input\n'a`b'\n```")["program"] == prog
    # A literal triple backtick inside the code closes the fence early, as in the official regex.
    bad = "def f(s):\n    return '```' + s"
    got = parse_proposal("deduction", f"```python\n{bad}\n```\n```input\n'x'\n```")
    assert got["program"] == "def f(s):\n    return '"


def induction_answer(n, message="```message\nMultiply each number.\n```"):
    return "\n".join(f"```input\n[{i}], {i + 1}\n```" for i in range(n)) + "\n" + message


def test_parse_proposal_induction_ten_input_rule():
    got = parse_proposal("induction", induction_answer(10))
    assert got == {"inputs": [f"[{i}], {i + 1}" for i in range(10)], "message": "Multiply each number."}
    assert parse_proposal("induction", induction_answer(9)) is None
    # More than 10 (drafts): the last 10 are kept.
    assert parse_proposal("induction", induction_answer(13))["inputs"] == [f"[{i}], {i + 1}" for i in range(3, 13)]
    assert parse_proposal("induction", induction_answer(4), num_inputs=4)["inputs"][0] == "[0], 1"


def test_parse_proposal_induction_message_fallbacks():
    assert parse_proposal("induction", induction_answer(10, "<message> Think about scaling. </message>"))[
        "message"] == "Think about scaling."
    assert parse_proposal("induction", induction_answer(10, "# Message: Lists times k."))["message"] == "Lists times k."
    # Fence wins over the tag fallback when both exist.
    both = induction_answer(10, "<message>tag</message>\n```message\nfence\n```")
    assert parse_proposal("induction", both)["message"] == "fence"
    assert parse_proposal("induction", induction_answer(10, "no message here")) is None


def test_parse_proposal_induction_unclosed_message_tag_is_no_message():
    # AZR's tag fallback r"<message>\s*(.*?)\s*</message>" needs the closing tag (unlike <answer>): an unclosed
    # <message> is no message, so the proposal is rejected.
    assert parse_proposal("induction", induction_answer(10, "<message> Think about scaling.")) is None


def test_parse_proposal_induction_has_no_input_line_fallback():
    # The official fallback is dead code (`not re.finditer(...)` is never true): "# Input:" lines give no inputs.
    ans = "\n".join(f"# Input: {i}\n```\n```" for i in range(10)) + "\n```message\nm\n```"
    assert parse_proposal("induction", ans) is None
    with pytest.raises(ValueError, match="unknown task"):
        parse_proposal("code_f", "")


# ---------------------------------------------------------------------------------------------------------------------
# Solver parsing

def test_parse_prediction_fence_last_wins():
    ans = "Draft:\n```output\n[1]\n```\nActually:\n```output\n[2, 4]\n```"
    assert parse_prediction("deduction", ans) == "[2, 4]"
    assert parse_prediction("abduction", "```input\n'a'\n```\nor\n```input\n'b', 2\n```") == "'b', 2"
    # raw (as AZR pastes it): the last block too, unstripped
    assert parse_prediction("abduction", "```input\n'a',\n 1\n```\nor\n```input\n'b', 2 \n```", raw=True) == "'b', 2 "
    assert parse_prediction("abduction", "```input\r\n'a'\r\n```") == "'a'"  # CRLF
    assert parse_prediction("deduction", "```Output\n  5  \n\n```") == "5"  # case, surrounding whitespace


@pytest.mark.parametrize("task,answer,expected", [
    # 1. "# Output:" / "# Input:" line (up to the next fence or the end)
    ("deduction", "# Output: [3, 6]", "[3, 6]"),
    ("abduction", "The call\n# Input: [1], 3", "[1], 3"),
    # 2. output(...) / input(...) call; quirk: stops at the first ")"
    ("deduction", "so output((1, 2)) it is", "(1, 2"),
    ("abduction", "f(input('x', 2))", "'x', 2"),
    # 3. <output> / <input> tag, closed or running to the end
    ("deduction", "<output> 'abc' </output>", "'abc'"),
    ("abduction", "<input> [1, 2]", "[1, 2]"),
    # 4. "the output/input is ...", trailing period dropped
    ("deduction", "After the loop the output is [2, 4].", "[2, 4]"),
    ("abduction", "The input is 'hello'.", "'hello'"),
    # 5. nothing matched: the whole answer
    ("deduction", "  [2, 4]  ", "[2, 4]"),
    ("abduction", "42", "42"),
])
def test_parse_prediction_fallbacks(task, answer, expected):
    assert parse_prediction(task, answer) == expected


def test_parse_prediction_fallback_order():
    # A fence beats every fallback; "# Output:" beats a call; a call beats a tag; a tag beats prose.
    assert parse_prediction("deduction", "# Output: 1\n```output\n2\n```") == "2"
    assert parse_prediction("deduction", "output(3)\n# Output: 4") == "4"
    assert parse_prediction("deduction", "<output>5</output> output(6)") == "6"
    assert parse_prediction("deduction", "the output is 8 <output>7</output>") == "7"
    # Task decides which word is looked for.
    assert parse_prediction("abduction", "```output\n9\n```") == "```output\n9\n```"


def test_parse_prediction_returns_injections_verbatim():
    # The parser never evaluates: an injection attempt comes back as text for the sandbox to refuse.
    inj = "0) or (True"
    assert parse_prediction("abduction", f"```input\n{inj}\n```") == inj
    evil = "__import__('os').system('echo hi')"
    assert parse_prediction("deduction", f"```output\n{evil}\n```") == evil


def test_parse_prediction_induction():
    ans = "Try:\n```python\ndef f(a):\n    return a\n```\nBetter:\n```\ndef f(a):\n    return a * 2\n```"
    assert parse_prediction("induction", ans) == "def f(a):\n    return a * 2"
    assert parse_prediction("induction", "def f(a): return a") is None  # no fence: AZR scores a format failure
    assert parse_prediction("induction", "```python\ndef f(a):\n    return a\n```\n```python\n```") == ""
    # deduction/abduction: stripped, or raw as AZR pastes it into its executor's program
    assert parse_prediction("abduction", "```input\n[1, 2]\n\n```") == "[1, 2]"
    assert parse_prediction("abduction", "```input\n[1, 2]\n\n```", raw=True) == "[1, 2]\n"
    assert parse_prediction("deduction", "  the output is 3", raw=True) == "3"
    with pytest.raises(ValueError, match="unknown task"):
        parse_prediction("code_i", "")


# ---------------------------------------------------------------------------------------------------------------------
# Round trips: seed entry -> prompt -> ideal response -> parse gives the entry back

def respond(answer_body):
    return f" Let me plan this carefully.\n</think>\n<answer>\n{answer_body}\n</answer>"


@pytest.mark.parametrize("task", ["deduction", "abduction"])
def test_round_trip_proposer(task, data_dir):
    refs = seed_triplets(data_dir, 7)
    prompt = r1_wrap(proposer_prompt(task, refs[:6]))
    new = refs[6]
    assert new["program"] not in prompt
    ok, ans = parse_response(respond(f"```python\n{new['program']}\n```\n\n```input\n{new['input']}\n```"))
    assert ok and parse_proposal(task, ans) == {"program": new["program"], "input": new["input"]}


def test_round_trip_solvers(data_dir):
    for ref in seed_triplets(data_dir, 20):
        ded = r1_wrap(solver_prompt("deduction", ref))
        assert ded.endswith("Assistant: <think>")
        ok, ans = parse_response(respond(f"```output\n{ref['output']}\n```"))
        assert ok and parse_prediction("deduction", ans) == ref["output"]
        ok, ans = parse_response(respond(f"```input\n{ref['input']}\n```"))
        assert ok and parse_prediction("abduction", ans) == ref["input"]


def test_round_trip_induction(data_dir):
    seed = seed_induction(data_dir, 3)
    assert len(seed["inputs"]) == 10 and "```" not in seed["message"]
    prompt = r1_wrap(induction_proposer_prompt(seed["snippet"]))
    assert seed["snippet"] in prompt
    body = "\n".join(f"```input\n{x}\n```" for x in seed["inputs"]) + f"\n```message\n{seed['message']}\n```"
    ok, ans = parse_response(respond(body))
    assert ok and parse_proposal("induction", ans) == {"inputs": seed["inputs"], "message": seed["message"].strip()}

    solver = r1_wrap(solver_prompt("induction", {"inputs": seed["inputs"][:5], "outputs": seed["outputs"][:5],
                                                 "message": seed["message"]}))
    assert seed["snippet"] not in solver
    ok, ans = parse_response(respond(f"```python\n{seed['snippet']}\n```"))
    assert ok and parse_prediction("induction", ans) == seed["snippet"].strip()


def test_message_with_backticks_is_cut_like_the_official_parser(data_dir):
    # Seed 2's message (written by Qwen2.5-Coder-7B) contains "```for```": the message fence regex stops there.
    seed = seed_induction(data_dir, 2)
    assert "```for```" in seed["message"]
    body = "\n".join(f"```input\n{x}\n```" for x in seed["inputs"]) + f"\n```message\n{seed['message']}\n```"
    got = parse_proposal("induction", extract_answer(respond(body)))
    assert got["inputs"] == seed["inputs"]
    assert got["message"] == seed["message"].split("```for")[0].strip()


# ---------------------------------------------------------------------------------------------------------------------
# The linear parsers give exactly what AZR's regexes give (the regexes backtrack quadratically on degenerate text)

_F = re.DOTALL | re.IGNORECASE
AZR_REGEXES = {  # AZR's patterns, the oracle
    "format": re.compile(r"<think>.*?</think>\s*<answer>.*?</answer>", re.DOTALL),
    "code": re.compile(r"```(?:python\s*)?\n?(.*?)\n?```", _F),
    **{tag: re.compile(rf"```{tag}\s*\n?(.*?)\n?```", _F) for tag in ("input", "output", "message")},
    "message_tag": re.compile(r"<message>\s*(.*?)\s*</message>", _F),
    **{f"{k}_call": re.compile(rf"{k}\s*\((.*?)\)", _F) for k in ("input", "output")},
    **{f"{k}_tag": re.compile(rf"<{k}>\s*(.*?)(?:</{k}>|\s*$)", _F) for k in ("input", "output")},
}
PIECES = ["```", "`", "python", "PYTHON", "input", "Input", "output", "message", "<answer>", "</answer>", "<think>",
          "</think>", "<input>", "</input>", "<OUTPUT>", "</output>", "<message>", "</message>", "\n", " ", "\t",
          "x", "1", "(", ")", "input (", "# Input:", "the input is", "."]


def linear_results(text):
    return {"format": prompts.format_ok(text), "code": prompts.fenced_blocks(text),
            **{tag: prompts.fenced_blocks(text, tag) for tag in ("input", "output", "message")},
            "message_tag": [t.strip() for t in prompts._tagged(text, "message", to_end=False)[:1]],
            **{f"{k}_call": prompts._calls(text, k) for k in ("input", "output")},
            **{f"{k}_tag": [t.strip() for t in prompts._tagged(text, k)] for k in ("input", "output")}}


def regex_results(text):
    r = AZR_REGEXES
    m = r["message_tag"].search(text)
    return {"format": r["format"].match(text) is not None, "code": r["code"].findall(text),
            **{tag: r[tag].findall(text) for tag in ("input", "output", "message")},
            "message_tag": [m.group(1).strip()] if m else [],
            **{f"{k}_call": r[f"{k}_call"].findall(text) for k in ("input", "output")},
            **{f"{k}_tag": [t.strip() for t in r[f"{k}_tag"].findall(text)] for k in ("input", "output")}}


def test_linear_parsers_equal_azr_regexes():
    rng = random.Random(0)
    texts = ["".join(rng.choice(PIECES) for _ in range(rng.randint(0, 40))) for _ in range(4000)]
    texts += ["<think>a</think> <answer>\n```python\ndef f(x):\n    return x\n```\n```input\n3\n```\n</answer>",
              "``````", "`````", "```python```", "```input\n```output\n1\n```", "<think></think>\n\n<answer></answer>"]
    for text in texts:
        assert linear_results(text) == regex_results(text), text


@pytest.mark.parametrize("text", [
    "```python" + " " * 40000, "```input" + " " * 40000, "```message" + " " * 40000,
    "<output>a" + " " * 40000 + "b", "input(" * 6666, "</think><answer>" * 2500,
    "```input\n1\n```\n" * 10 + "<message>a" + " " * 40000 + "b",
])
def test_parsers_on_degenerate_40kb_text(text):
    """Texts on which AZR's regexes take 1-11 s each (quadratic backtracking): the same results, at once."""
    for task in ("deduction", "abduction", "induction"):
        parse_proposal(task, text)
        parse_prediction(task, text)
    parse_response(text)
    small = text[:3000]  # the regexes are fast enough on 3 KB to serve as the oracle
    assert linear_results(small) == regex_results(small)


def test_tag_fallback_captures_exactly_what_azr_regexes_capture():
    """The <input>/<output> tag fallback returns the regex group itself, unstripped (the oracle test above compares
    stripped texts): AZR pastes an abduction answer unstripped, so "<input>\\n1, 2</input>" must give "1, 2" (the
    regex's `\\s*` eats the newline; a call on one line, which scores), not "\\n1, 2" (two lines, which never does)."""
    assert parse_prediction("abduction", "<input>\n1, 2</input>", raw=True) == "1, 2"
    assert parse_prediction("abduction", "x <input>\n [3]\n", raw=True) == "[3]"  # unclosed: trailing space dropped
    assert parse_prediction("abduction", "<input>[1, 2]\n</input>", raw=True) == "[1, 2]\n"  # kept before </input>
    rng = random.Random(1)
    texts = ["".join(rng.choice(PIECES) for _ in range(rng.randint(0, 40))) for _ in range(4000)]
    for text in texts:
        for k in ("input", "output"):
            assert prompts._tagged(text, k) == AZR_REGEXES[f"{k}_tag"].findall(text), (k, text)
        m = AZR_REGEXES["message_tag"].search(text)
        assert prompts._tagged(text, "message", to_end=False)[:1] == ([m.group(1)] if m else []), text
