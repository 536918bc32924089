"""Unit tests for azr.py's pure parts: config flags, reward table, TRR++ advantages, loss, buffers, seeds, and the
policy-gradient update on a tiny random Qwen2 (direction of the logprob change, fp32 masters at lr 1e-6)."""
import json
import math
import random

import pytest
import torch

import azr
from model import Qwen2


# ----------------------------------------------------------------------------- config

def test_defaults_are_tiny_and_paper_preset_is_section_6():
    cfg = azr.parse_config([])
    assert cfg.preset == "tiny" and cfg.model == "tiny" and cfg.batch_size == 4
    paper = azr.parse_config(["--preset", "paper"])
    assert (paper.batch_size, paper.learnability_samples, paper.num_references, paper.induction_inputs) == (64, 8, 6, 10)
    assert (paper.lr, paper.grad_clip, paper.weight_decay, paper.entropy_coef, paper.kl_coef) == (1e-6, 1.0, 0.01, 0.001, 0.0)
    assert (paper.max_prompt_tokens, paper.max_response_tokens, paper.buffer_cap, paper.steps) == (6144, 8096, 16384, 500)
    assert (paper.temperature, paper.top_p, paper.top_k, paper.advantage, paper.whiten) == (1.0, 1.0, 0, "trr++", "token")


def test_flag_spellings_and_types():
    cfg = azr.parse_config(["--steps", "7", "--out=/tmp/x", "--resume", "--seed-data", "a_seed_io.jsonl",
                            "--train_proposer=false", "--clip-high=0.28", "--tasks=deduction"])
    assert cfg.steps == 7 and cfg.out == "/tmp/x" and cfg.resume is True and cfg.seed_data == "a_seed_io.jsonl"
    assert cfg.train_proposer is False and cfg.clip_high == 0.28 and azr.task_list(cfg) == ["deduction"]
    assert azr.parse_config(["--preset=paper", "--batch_size=8"]).batch_size == 8  # explicit flags beat the preset


@pytest.mark.parametrize("argv, words", [
    (["--stepz=3"], "unknown flag --stepz"),
    (["--steps=three"], "not a valid int"),
    (["--resume=maybe"], "not a valid bool"),
    (["--preset=huge"], "unknown preset"),
    (["--tasks=deduction,poetry"], "--tasks"),
    (["--advantage=grpo"], "group_size"),
    (["--filter_groups"], "group_size"),
    (["--batch_size=6", "--group_size=4"], "multiple of --group_size"),
    (["--fsdp=maybe"], "choose one of"),
    (["--temperature=0"], "--temperature must be > 0"),
    (["--lr=nan"], "--lr=nan: must be a finite number"),
    (["--max_response_tokens=0"], "--max_response_tokens"),
    (["--buffer_cap=-1"], "--buffer_cap"),
    (["--eval_every=-1"], "--eval_every"),
    (["--keep_optim=-1"], "--keep_optim"),
    (["--beta2=1"], "--beta1 and --beta2 in [0, 1)"),
    (["steps"], "unexpected argument"),
    # each range check at its boundary (the accepted side is test_range_boundaries_accepted)
    (["--induction_inputs=1"], "--induction_inputs >= 2"),
    (["--beta1=1"], "--beta1 and --beta2 in [0, 1)"),
    (["--top_k=-1"], "--top_k >= 0"),
    (["--top_p=0"], "--top_p in (0, 1]"),
    (["--sandbox_workers=-1"], "--sandbox_workers and --keep_optim >= 0"),
    (["--seed_rounds=-1"], "--sandbox_workers and --keep_optim >= 0"),
    (["--kv_cache_tokens=4096", "--max_prompt_tokens=4000", "--max_response_tokens=200"], "cannot hold one rollout"),
    # each line names the fix too: the nearest flag, the values a type takes, the task that is wrong
    (["--step=3"], "unknown flag --step; did you mean --steps? `python azr.py --help` lists every flag"),
    (["--seed_date=x_seed_io.jsonl"], "did you mean --seed_data?"),
    (["--zzz=1"], "unknown flag --zzz; `python azr.py --help` lists every flag"),
    (["--train_proposer=nope"], "--train_proposer='nope' is not a valid bool; use true or false"),
    (["--steps=1.5"], "--steps='1.5' is not a valid int; give a whole number such as --steps=500"),
    (["--lr=fast"], "--lr='fast' is not a valid float; give a number such as --lr=1e-06"),
    (["--tasks=deduction,inductoin"], "unknown task 'inductoin'; use a comma list of deduction, abduction, induction"),
    (["--tasks=deduction,deduction"], "names a task twice"),
    (["--steps"], "flag --steps needs a value"),
    (["--steps=0"], "--steps, --batch_size, --micro_batch, --group_size and --save_every must be positive"),
    (["--save_every=0"], "must be positive"),
    (["--lr=0"], "--clip_low, --clip_high and --kl_coef must be >= 0 and --lr > 0"),
    (["--clip_low=-0.1"], "--clip_low, --clip_high and --kl_coef must be >= 0"),
])
def test_bad_flags_one_line(argv, words, capsys):
    with pytest.raises(SystemExit) as e:
        azr.parse_config(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1


def test_help_prints_every_flag_and_the_presets(capsys):
    for flag in ("-h", "--help"):
        with pytest.raises(SystemExit) as e:
            azr.parse_config(["--steps=3", flag])
        out = capsys.readouterr().out
        assert e.value.code == 0 and "class Config:" in out and "presets: {" in out
        assert "kl_coef: float" in out and "Deliberate deviations" not in out  # the docstring up to that section


def test_range_boundaries_accepted():
    # the smallest legal values pass check_config (the failing side is in test_bad_flags_one_line)
    cfg = azr.parse_config(["--induction_inputs=2", "--beta1=0", "--top_k=0", "--top_p=1", "--sandbox_workers=0",
                            "--seed_rounds=0", "--kv_cache_tokens=4200", "--max_prompt_tokens=4000",
                            "--max_response_tokens=200", "--num_references=0", "--learnability_samples=1"])
    assert (cfg.induction_inputs, cfg.kv_cache_tokens, cfg.num_references) == (2, 4200, 0)


def test_bool_flag_values_and_preset_precedence():
    # every spelling of a boolean; `--flag value` takes the next word; the tiny preset's fields yield to explicit flags
    for text, value in [("on", True), ("off", False), ("YES", True), ("no", False), ("1", True), ("0", False)]:
        assert azr.parse_config([f"--resume={text}"]).resume is value
    assert azr.parse_config(["--resume", "off", "--steps", "9"]).resume is False
    cfg = azr.parse_config(["--seed_rounds=5", "--max_response_tokens", "30", "--lr=0.5"])
    assert (cfg.seed_rounds, cfg.max_response_tokens, cfg.lr, cfg.batch_size) == (5, 30, 0.5, 4)


# ----------------------------------------------------------------------------- rewards

def test_reward_table():
    # proposer: invalid / unparseable / bad format -> -1 whatever the accuracy
    assert azr.proposer_reward(False, True, 0.5) == -1.0
    assert azr.proposer_reward(True, False, 0.5) == -1.0
    # learnable: 1 - acc; trivial (acc 1) and impossible (acc 0) -> -0.5 (the code, not Eq. 4's 0)
    assert azr.proposer_reward(True, True, 1 / 8) == pytest.approx(0.875)
    assert azr.proposer_reward(True, True, 7 / 8) == pytest.approx(0.125)
    assert azr.proposer_reward(True, True, 0.0) == -0.5
    assert azr.proposer_reward(True, True, 1.0) == -0.5
    # solver
    assert azr.solver_reward(False, True) == -1.0
    assert azr.solver_reward(True, False) == -0.5
    assert azr.solver_reward(True, True) == 1.0


def test_response_record_trains_eos_unless_truncated():
    r = azr.response_record({"group": 0}, [1, 2], 3, 99)
    assert (r["response_ids"], r["length"], r["truncated"]) == ([1, 2, 99], 3, False)  # the sampled EOS is trained
    r = azr.response_record({"group": 1}, [1, 2, 3], 3, 99)
    assert (r["response_ids"], r["length"], r["truncated"], r["group"]) == ([1, 2, 3], 3, True, 1)


def test_learnability_scores_each_proposal_from_its_own_rollouts(tiny_ckpt, monkeypatch):
    """n rollouts per proposal, in order, and no format check (AZR extracts the answer without one)."""
    from model import load_tokenizer
    tok = load_tokenizer(str(tiny_ckpt))
    answers = ["<answer>\n```output\n1\n```\n</answer>"] * 2 + ["<answer>\n```output\n9\n```\n</answer>"] * 2
    monkeypatch.setattr(azr, "rollout", lambda qwen, prompts, cfg, eos, seed, progress=False:
                        [tok.encode(a, add_special_tokens=False) for a in answers[:len(prompts)]])

    class Exact:
        def check_deduction(self, pairs):
            return [gold == predicted for gold, predicted in pairs]
        check_abduction = check_induction = None
    e = {"program": "def f(a):\n    return a", "input": "1", "output": "1", "imports": []}
    cfg = azr.parse_config(["--learnability_samples=2"])
    assert azr.learnability([("deduction", e), ("deduction", dict(e))], None, tok, Exact(), cfg, 0, {}) == [1.0, 0.0]


def test_learnability_accuracy_edge_cases():
    assert azr.learnability_accuracy([]) == 0.0  # prompt filtered / nothing scored -> acc 0
    assert azr.learnability_accuracy([None, None]) == 0.0
    assert azr.learnability_accuracy([True, None, False, None]) == 0.5  # None (crashed checks) are dropped
    assert azr.learnability_accuracy([True] * 8) == 1.0


# ----------------------------------------------------------------------------- advantages

def test_check_answers_keeps_lost_checks_out_of_learnability():
    """A check lost to a sandbox_error (None from the sandbox) is dropped from the learnability mean and scores as
    wrong for a trained answer; unformatted answers are never sent to the sandbox."""
    class Lossy:  # verdicts by predicted output: "1" right, "2" wrong, "3" lost
        sent = []

        def check_deduction(self, pairs):
            self.sent += pairs
            return [{"1": True, "2": False}.get(p) for _, p in pairs]
        check_abduction = check_induction = None
    entry = {"output": "1"}
    answers = ["1", "2", "3", "3"]
    texts = [f"<think>t</think> <answer>\n```output\n{a}\n```\n</answer>" for a in answers] + ["no tags"]
    fmt, correct, n = azr.check_answers("deduction", [entry] * 5, texts, Lossy())
    assert fmt == [True, True, True, True, False] and correct == [True, False, None, None, False] and n == 3
    assert azr.learnability_accuracy(correct[:4]) == 0.5
    assert [azr.solver_reward(f, c) for f, c in zip(fmt, correct)] == [1.0, -0.5, -0.5, -0.5, -1.0]


@pytest.fixture(scope="module")
def sb():
    from sandbox import Sandbox
    with Sandbox(cpu_s=2, wall_s=4) as s:
        yield s


def test_check_answers_applies_azr_executor_rules(sb):
    """What AZR's executor never scores (it pastes inputs into a program, bans `input(` in every line but the last,
    evaluates only the last line) is wrong here too, in the real sandbox, while the same answers on one line are
    right."""
    def answer(tag, body):
        return f"<think>t</think> <answer>\n```{tag}\n{body}\n```\n</answer>"
    prog = "def f(a):\n    return sum(a)"
    entry = {"program": prog, "output": "3", "imports": []}
    texts = [answer("input", "[1, 2]"), answer("input", "[1,\n 2]"), answer("input", "[len('input('), -1]")]
    assert azr.check_answers("abduction", [entry] * 3, texts, sb)[1] == [True, False, False]
    ind = {"inputs": ["1", "2", "3", "4"], "outputs": ["2", "4", "6", "8"], "imports": []}
    texts = [answer("python", "def f(x):\n    return 2 * x"),
             answer("python", "def f(x):\n    def parse_input(v):\n        return 2 * v\n    return parse_input(x)")]
    assert azr.check_answers("induction", [ind] * 2, texts, sb)[1] == [True, False]
    bare = "<think>t</think> <answer>def f(x): return 2 * x</answer>"  # no ```python fence: a format failure
    assert azr.check_answers("induction", [ind], [bare], sb)[:2] == ([False], [False])
    multi = dict(ind, inputs=["1", "2", "3", "(\n4)"])  # a hidden input on two lines: unsolvable
    assert azr.check_answers("induction", [multi], texts[:1], sb)[1] == [False]
    shown = dict(ind, inputs=["(\n1)", "2", "3", "4"])  # shown inputs are only prompt text
    assert azr.check_answers("induction", [shown], texts[:1], sb)[1] == [True]
    assert azr.check_answers("deduction", [{"output": "[1, 2]"}], [answer("output", "[1,\n 2]")], sb)[1] == [True]
    # the fence capture is pasted unstripped: a block ending in a blank line puts the call on two lines
    assert azr.check_answers("abduction", [entry], [answer("input", "[1, 2]\n")], sb)[1] == [False]
    # a trailing comment swallows the pasted call's closing parenthesis
    assert azr.check_answers("abduction", [entry], [answer("input", "[1, 2]  # sums to 3")], sb)[1] == [False]
    commented = dict(ind, inputs=["1", "2", "3", "4  # four"])  # a hidden input ending in a comment: unsolvable
    assert azr.check_answers("induction", [commented], texts[:1], sb)[1] == [False]
    # the predicted input sits on the executor's last line, which its `input(` regex does not check
    length = {"program": "def f(s):\n    return len(s)", "output": "8", "imports": []}
    assert azr.check_answers("abduction", [length], [answer("input", "'input(x)'")], sb)[1] == [True]
    # a hidden induction input containing `input(` is on that last line too (only a candidate's code is checked)
    quoted = dict(ind, inputs=["1", "2", "3", "len('input(')"], outputs=["2", "4", "6", "12"])
    assert azr.check_answers("induction", [quoted], texts[:1], sb)[1] == [True]
    # an empty last fenced block is a well-formatted wrong answer (AZR's parse_code_function accepts it)
    empty = "<think>t</think> <answer>```python\ndef f(x):\n    return 2 * x\n```\n```python\n```</answer>"
    assert azr.check_answers("induction", [ind], [empty], sb)[:2] == ([True], [False])


def test_check_answers_verdict_is_per_answer_not_per_stripped_text():
    """Identical answers to one task are checked once, but an answer that AZR's executor cannot score as pasted
    ("[1, 2]\n": the call spans two lines) stays wrong when another answer strips to the same text and is right
    (the official learnability cache is keyed by the unstripped answer); an unformatted answer is never correct."""
    class Sums:
        def check_abduction(self, triples):
            return [p == "[1, 2]" for _, _, p in triples]
        check_deduction = check_induction = None

    def answer(body):
        return f"<think>t</think> <answer>\n```input\n{body}\n```\n</answer>"
    e = {"program": "def f(a):\n    return sum(a)", "output": "3", "imports": []}
    texts = [answer("[1, 2]"), answer("[1, 2]\n"), "<answer>\n```input\n[1, 2]\n```\n</answer>"]
    fmt, correct, n = azr.check_answers("abduction", [e] * 3, texts, Sums())
    assert fmt == [True, True, False] and correct == [True, False, False] and n == 1
    # learnability rollouts (no format check): the same 8-sample rule
    assert azr.check_answers("abduction", [e] * 2, texts[:2], Sums(), format_required=False)[1] == [True, False]


def test_check_answers_tag_answer_on_its_own_line(sb):
    """AZR's <input> tag regex drops the whitespace after the tag, so an input written on the line below the tag is
    pasted on one line and scores (it did not here while the tag fallback kept the newline)."""
    entry = {"program": "def f(a):\n    return sum(a)", "output": "3", "imports": []}
    texts = ["<think>t</think> <answer>\n<input>\n[1, 2]</input>\n</answer>",
             "<think>t</think> <answer>\n<input>\n[1, 2]\n</input>\n</answer>"]  # newline before </input>: kept
    assert azr.check_answers("abduction", [entry] * 2, texts, sb)[1] == [True, False]


def test_seeding_parses_the_whole_response(sb):
    """The official seeding phase parses the decoded response itself (no <answer> extraction, no format check);
    trained proposals parse only the <answer>."""
    text = "I will write:\n```python\ndef g(x):\n    return x * 3\n```\n```input\n2\n```\nno tags at all"
    cfg = azr.Config()
    seeded, _ = azr.validate_proposals("deduction", [{}], [text], sb, cfg, whole_response=True)
    assert seeded[0]["entry"]["program"] == "def f(x):\n    return x * 3" and seeded[0]["entry"]["output"] == "6"
    trained, _ = azr.validate_proposals("deduction", [{}], [text], sb, cfg)
    assert trained[0]["entry"] is None and not trained[0]["format_ok"]


def test_validate_proposals_entries(sb):
    """A valid proposal's buffer entry: the sandbox's program (renamed to f) with its import lines, the proposed input,
    the gold output cut to 400 characters; format_ok is reported apart from validity. Induction: every input runs on
    the prompt's program (one failure invalidates and names the status), with its imports and the message kept."""
    def ans(body):
        return f"t </think> <answer>\n{body}\n</answer>"
    cfg = azr.Config(induction_inputs=4)
    program = "import math\ndef g(x):\n    return 'a' * x + str(math.floor(1.5))"
    texts = [ans(f"```python\n{program}\n```\n```input\n500\n```"),
             # no </think>: valid, but not formatted
             "<answer>\n```python\ndef f(x):\n    return x\n```\n```input\n1\n```\n</answer>"]
    recs, n = azr.validate_proposals("deduction", [{}, {}], texts, sb, cfg)
    assert n == 2 and [r["format_ok"] for r in recs] == [True, False] and recs[1]["entry"] is not None
    e = recs[0]["entry"]
    assert e["program"] == "import math\ndef f(x):\n    return 'a' * x + str(math.floor(1.5))"
    assert e["imports"] == ["import math"] and e["input"] == "500" and recs[0]["status"] == "ok"
    assert len(e["output"]) == 403 and e["output"] == "'" + "a" * 199 + "..." + "a" * 198 + "1'"
    item = {"program": "def f(x):\n    return 10 // x", "imports": ["import os"]}
    texts = [ans("".join(f"```input\n{i}\n```\n" for i in xs) + "```message\nhint\n```") for xs in ((1, 2, 5, 10),
                                                                                                 (1, 2, 0, 10))]
    recs, n = azr.validate_proposals("induction", [item, item], texts, sb, cfg)
    assert n == 8 and recs[0]["entry"] == {"program": item["program"], "inputs": ["1", "2", "5", "10"],
                                           "outputs": ["10", "5", "2", "1"], "message": "hint",
                                           "imports": ["import os"]}
    assert recs[1]["entry"] is None and recs[1]["status"] == "exception"  # 10 // 0 in the third input


def test_validate_proposals_keeps_what_azrs_status_line_accepts(sb):
    """AZR's check_all calls a proposal valid unless the status line of its executor (the last line of the traceback)
    contains "error", so f raising Exception, StopIteration or a program's exception class not named *Error, and
    AZR's own determinism failure (`raise Exception('Non-deterministic code')`: two calls whose values differ, NaN
    included), are valid with gold output "" (unsolvable; the published seed files hold such entries). A status
    that names an error stays invalid, and so do our own refusals (an order that follows the hash seed, a static
    rule, a second call returning a non-plain value, equal values with different reprs)."""
    def ans(program, args):
        return f"t </think> <answer>\n```python\n{program}\n```\n```input\n{args}\n```\n</answer>"
    cases = [("def f(x):\n    if x < 5:\n        raise Exception('Invalid input')\n    return x", "3", ""),
             ("def f(xs):\n    it = iter(xs)\n    return [next(it) for _ in range(3)]", "[1, 2]", ""),
             ("class Stop(Exception):\n    pass\ndef f(x):\n    raise Stop('no')", "1", ""),
             ("def f(x):\n    return float('nan')", "1", ""),
             ("c = [0]\ndef f(x):\n    c[0] += 1\n    return x + c[0]", "3", ""),
             ("c = [0]\ndef f(x):\n    c[0] += 1\n    if c[0] > 1:\n        raise StopIteration\n    return x", "3",
              ""),
             ("def f(x):\n    raise Exception('error: bad')", "1", None),
             ("def f(x):\n    raise ValueError('bad')", "1", None),
             ("c = [0]\ndef f(x):\n    c[0] += 1\n    if c[0] > 1:\n        raise KeyError(x)\n    return x", "3",
              None),
             ("def f(x):\n    return ''.join(set(x))", "'abcdefghijklmnop'", None),
             ("import os\ndef f(x):\n    return x", "1", None),
             ("c = [0]\ndef f(x):\n    c[0] += 1\n    return x if c[0] == 1 else (lambda: x)", "1", None),
             ("c = [0]\ndef f(x):\n    c[0] += 1\n    return {1: x, 2: x} if c[0] == 1 else {2: x, 1: x}", "1", None),
             ("def f(x):\n    return x * 2", "3", "6")]
    recs, _ = azr.validate_proposals("deduction", [{}] * len(cases), [ans(p, a) for p, a, _ in cases], sb,
                                     azr.Config())
    assert [r["entry"] and r["entry"]["output"] for r in recs] == [out for *_, out in cases]
    assert [r["status"] for r in recs[:2]] == ["exception", "exception"]   # the sandbox's status, for the logs
    item = {"program": "def f(x):\n    if x == 0:\n        raise Exception('zero')\n    return 10 // x", "imports": []}
    text = ans("", "").split("```python")[0] + "".join(f"```input\n{i}\n```\n" for i in (1, 2, 0, 5)) + \
        "```message\nhint\n```\n</answer>"
    recs, _ = azr.validate_proposals("induction", [item], [text], sb, azr.Config(induction_inputs=4))
    assert recs[0]["entry"]["outputs"] == ["10", "5", "", "2"]


def test_deduction_answers_that_azrs_eval_cannot_parse_are_wrong(sb):
    """AZR compares eval(gold) == eval(<answer as captured, unstripped>); eval strips only leading spaces and tabs,
    so an indented closing fence or tag (a line break, then indentation) or a bare tuple over two lines fails, and
    its fallback evaluates a one-line template that a line break always breaks. Brackets spanning lines, a trailing
    newline or comment are fine."""
    def answer(body):
        return f"<think>t</think> <answer>\n```output\n{body}```\n</answer>"
    entry = {"output": "(1, 2)"}
    bodies = ["(1, 2)\n", "(1,\n 2)\n", "(1, 2)  # pair\n", "(1, 2)\n    ", "1,\n2\n", "1, 2\n"]
    assert azr.check_answers("deduction", [entry] * 6, [answer(b) for b in bodies], sb)[1] == \
        [True, True, True, False, False, True]
    tag = "<think>t</think> <answer>\n  <output>(1, 2)\n  </output>\n</answer>"
    assert azr.check_answers("deduction", [entry], [tag], sb, format_required=False)[1] == [False]
    # the output(...) fallback keeps what follows "(": leading spaces are fine (eval strips them), a line break then
    # indentation is not
    calls = [f"<think>t</think> <answer>output({a})</answer>" for a in (" [1, 2]", "\n  [1, 2]")]
    assert azr.check_answers("deduction", [{"output": "[1, 2]"}] * 2, calls, sb)[1] == [True, False]
    # whitespace does not make an answer too long to parse: it still fails as captured (the check gets it stripped)
    assert azr.check_answers("deduction", [entry], [answer("(1, 2)\n" + " " * 70000)], sb)[1] == [False]


def test_propose_phase_records(tiny_ckpt, sb, monkeypatch):
    # per proposal: an unparseable response is status "unparsed", invalid and -1; a valid one carries its entry and
    # sandbox status; without proposer training no learnability rollouts run (acc None, paid as acc 0: -0.5)
    from model import load_tokenizer
    tok = load_tokenizer(str(tiny_ckpt))
    good = "t </think> <answer>\n```python\ndef f(x):\n    return x\n```\n```input\n1\n```\n</answer>"
    texts = [good, "t </think> <answer>no program</answer>"]
    monkeypatch.setattr(azr, "rollout", lambda qwen, ids, *a, **k: [tok.encode(t, add_special_tokens=False)
                                                                      for t in texts[:len(ids)]])
    cfg = azr.Config(train_proposer=False, max_response_tokens=500)
    items = {"deduction": [{"prompt_ids": [1, 2], "group": g} for g in range(2)]}
    out = azr.propose_phase(items, None, tok, sb, cfg, (1, 2), {}, False)["deduction"]
    assert [(r["status"], r["valid"], r["reward"], r["acc"]) for r in out] == [("ok", True, -0.5, None),
                                                                              ("unparsed", False, -1.0, None)]
    assert out[0]["entry"]["output"] == "1" and out[1]["entry"] is None and out[1]["text"] == texts[1]


def test_trr_token_weighted_whitening_by_hand():
    # One batch, rewards [1, -0.5, -1] with 2, 1, 1 response tokens -> token returns [1, 1, -0.5, -1].
    # mean = 0.5 / 4 = 0.125; squared deviations 0.765625 * 2 + 0.390625 + 1.265625 = 3.1875;
    # unbiased var = 3.1875 / 3 = 1.0625; A = (R - 0.125) / sqrt(1.0625 + 1e-8).
    adv = azr.compute_advantages([1.0, -0.5, -1.0], [2, 1, 1], [0, 0, 0], [0, 1, 2])
    std = math.sqrt(1.0625 + 1e-8)
    assert adv == pytest.approx([0.875 / std, -0.625 / std, -1.125 / std], abs=1e-9)
    # per-sequence (paper Eq. 8): mean -1/6, unbiased var over 3 sequences
    seq = azr.compute_advantages([1.0, -0.5, -1.0], [2, 1, 1], [0, 0, 0], [0, 1, 2], token_weighted=False)
    mu = -1 / 6
    var = ((1 - mu) ** 2 + (-0.5 - mu) ** 2 + (-1 - mu) ** 2) / 2
    assert seq == pytest.approx([(r - mu) / math.sqrt(var + 1e-8) for r in (1.0, -0.5, -1.0)], abs=1e-9)


def test_trr_six_baselines_vs_global_and_grpo():
    rewards = [1.0, -1.0, 0.5, 0.5, -0.5, 1.0]
    lengths = [1, 1, 3, 1, 2, 2]
    batches = [0, 0, 1, 1, 2, 2]
    groups = [(0, 0), (0, 0), (1, 0), (1, 1), (2, 0), (2, 0)]
    trr = azr.compute_advantages(rewards, lengths, batches, groups, "trr++")
    for b in range(3):  # token-weighted mean of the advantages is 0 inside every batch
        idx = [i for i in range(6) if batches[i] == b]
        assert sum(trr[i] * lengths[i] for i in idx) == pytest.approx(0.0, abs=1e-9)
    assert trr[2] == trr[3] == 0.0  # constant rewards in a batch -> zero advantage (0 / sqrt(1e-8))
    glob = azr.compute_advantages(rewards, lengths, batches, groups, "global")
    assert sum(a * L for a, L in zip(glob, lengths)) == pytest.approx(0.0, abs=1e-9) and glob != trr
    grpo = azr.compute_advantages(rewards, lengths, batches, groups, "grpo")
    assert grpo[0] == pytest.approx(1 / (math.sqrt(2) + 1e-6)) and grpo[1] == pytest.approx(-grpo[0])
    assert grpo[2] == grpo[3] == 0.0  # groups of one sample: (R - R) / (1 + 1e-6)


def test_token_weights_aggregation():
    assert azr.token_weights([2, 3, 5], [True, True, False], "token-mean") == [0.2, 0.2, 0.0]
    w = azr.token_weights([2, 3, 5], [True, True, False], "seq-mean")
    assert w == pytest.approx([1 / 4, 1 / 6, 0.0])
    assert sum(wi * L for wi, L in zip(w, [2, 3, 5])) == pytest.approx(1.0)
    assert azr.token_weights([2], [False], "token-mean") == [0.0]


def test_policy_loss_terms():
    logp = torch.tensor([-1.0, -2.0], requires_grad=True)
    adv = torch.tensor([1.0, -1.0])
    w = torch.tensor([0.5, 0.5])
    loss, m = azr.policy_loss(logp, logp.detach(), adv, w, 0.2, 0.2)
    assert loss.item() == pytest.approx(0.0) and m["clipfrac"] == 0.0  # ratio 1: -A averages to 0
    loss.backward()
    assert logp.grad.tolist() == pytest.approx([-0.5, 0.5])  # descent raises logp of A>0, lowers A<0
    # clip-higher: with ratio 1.25 and A > 0, eps_high 0.2 clips (no gradient), 0.28 does not
    old = torch.tensor([math.log(0.8)])
    for eps_high, grad_zero in ((0.2, True), (0.28, False)):
        lp = torch.tensor([0.0], requires_grad=True)
        loss, _ = azr.policy_loss(lp, old, torch.tensor([1.0]), torch.tensor([1.0]), 0.2, eps_high)
        loss.backward()
        assert (lp.grad.abs().item() == 0.0) == grad_zero
    # clipfrac: the weight of the tokens whose clipped term is active, by each side's own bound: ratios 1.25 (A > 0)
    # and 0.75 (A < 0) at eps_low 0.2, eps_high 0.28 clip only the second (weight 0.3); with A < 0 a ratio of 1.25
    # is never clipped
    lp, old = torch.tensor([0.0, 0.0, 0.0]), torch.log(torch.tensor([0.8, 1 / 0.75, 0.8]))
    _, m = azr.policy_loss(lp, old, torch.tensor([1.0, -1.0, -1.0]), torch.tensor([0.5, 0.3, 0.2]), 0.2, 0.28)
    assert m["clipfrac"] == pytest.approx(0.3)
    _, m = azr.policy_loss(lp, old, torch.tensor([1.0, -1.0, -1.0]), torch.tensor([0.5, 0.3, 0.2]), 0.2, 0.2)
    assert m["clipfrac"] == pytest.approx(0.8)
    # entropy bonus and k3 KL (zero when the policy equals the reference)
    ent = torch.tensor([2.0, 4.0])
    loss, m = azr.policy_loss(logp.detach(), logp.detach(), adv, w, 0.2, 0.2, ent, 0.001, logp.detach(), 0.1)
    assert loss.item() == pytest.approx(-0.001 * 3.0) and m["kl"] == pytest.approx(0.0)
    loss, m = azr.policy_loss(logp.detach(), logp.detach(), adv, w, 0.2, 0.2, None, 0.0, logp.detach() - 1.0, 0.1)
    assert m["kl"] == pytest.approx(math.exp(-1) + 1 - 1)  # k3 = e^-1 - (-1) - 1
    assert loss.item() == pytest.approx(0.1 * math.exp(-1))  # ... and it is in the loss, times kl_coef
    # the low side clips at 1 - clip_low (not 1 - clip_high): ratio 0.75 with A < 0 gives no gradient at 0.8
    lp = torch.tensor([0.0], requires_grad=True)
    loss, _ = azr.policy_loss(lp, torch.tensor([math.log(1 / 0.75)]), torch.tensor([-1.0]), torch.tensor([1.0]),
                              0.2, 0.28)
    loss.backward()
    assert lp.grad.item() == 0.0


# ----------------------------------------------------------------------------- buffers and seeds

def entry(i, step=0):
    return {"program": f"def f(a):\n    return a + {i}", "input": str(i), "output": str(2 * i), "imports": [], "step": step}


def test_buffer_growth_and_cap_keeps_oldest():
    buf = [entry(i) for i in range(3)]
    assert azr.add_to_buffer(buf, [entry(10), entry(11)], step=4, cap=100) == 2
    assert [e["step"] for e in buf] == [0, 0, 0, 4, 4]  # stamped with the step that proposed them
    assert azr.add_to_buffer(buf, [entry(12), entry(12)], step=5, cap=6) == 1  # no dedup; cap drops the newest
    assert len(buf) == 6 and buf[-1]["input"] == "12" and buf[0]["input"] == "0"
    assert azr.add_to_buffer(buf, [entry(13)], step=6, cap=6) == 0


def test_solver_batch_prefers_previous_step_then_fills_uniformly():
    buf = [entry(i, step=0) for i in range(20)] + [entry(100 + i, step=3) for i in range(3)]
    rng = random.Random(0)
    batch = azr.sample_solver_batch(buf, 8, step=4, window=1, rng=rng)
    assert len(batch) == 8
    assert sorted(e["input"] for e in batch[:3]) == ["100", "101", "102"]  # all recent ones first
    recent_only = azr.sample_solver_batch(buf, 2, step=4, window=1, rng=rng)
    assert all(e["step"] == 3 for e in recent_only) and len({e["input"] for e in recent_only}) == 2
    # step 1: the seeds (step 0) are the recent entries
    assert all(e["step"] == 0 for e in azr.sample_solver_batch(buf[:20], 5, step=1, window=1, rng=rng))
    # a buffer smaller than the batch is sampled with replacement for the rest
    assert len(azr.sample_solver_batch(buf[:2], 5, step=9, window=1, rng=rng)) == 5


def test_solver_batches_are_the_official_loader():
    """max_new as the official loader runs it: 2B-1 candidates (the previous step's entries first, then a uniform
    fill), over-long prompts dropped, shuffled, the first B kept, so with B recent entries about half of a batch is
    recent; the batch is smaller, not empty, when few candidates fit (issue #14)."""
    class Chars:  # one token per character, so a long program makes a long prompt
        def encode(self, text, add_special_tokens=False):
            return list(text)
    old = [entry(i, step=0) for i in range(500)]
    recent = [entry(1000 + i, step=4) for i in range(16)]
    huge = dict(entry(9999, step=4), program="def f(a):\n    return a  # " + "x" * 5000)
    buffers = {"deduction": old + recent + [huge], "abduction": [], "induction": []}
    cfg = azr.parse_config(["--batch_size=16", "--max_prompt_tokens=4000"])
    counts = []
    for seed in range(30):
        batch = azr.build_batches(buffers, ["deduction"], cfg, 5, Chars(), random.Random(seed))[("deduction", "solve")]
        assert len(batch) == 16 and [it["group"] for it in batch] == list(range(16))
        assert all(it["entry"] is not huge for it in batch)  # (the fill may repeat a recent entry, as officially)
        counts.append(sum(it["entry"]["step"] == 4 for it in batch))
    assert 6 <= sum(counts) / len(counts) <= 10 and len(set(counts)) > 1  # ~16 * 16 / 31 = 8.3 of 16, varying
    few = {"deduction": [huge] * 40 + recent[:3], "abduction": [], "induction": []}
    batch = azr.build_batches(few, ["deduction"], cfg, 5, Chars(), random.Random(0))[("deduction", "solve")]
    assert 0 < len(batch) < 16 and all(it["entry"] is not huge for it in batch)


def test_induction_programs_come_from_the_trained_triplet_tasks():
    """The induction proposer shows a program from the deduction and abduction buffers of the tasks being trained
    (official get_snippets); a triplet task left out of --tasks contributes nothing, not a second copy of the seeds;
    with neither, the seeds."""
    class Text:
        def encode(self, text, add_special_tokens=False):
            return [text]
    seeds = [entry(i) for i in range(10)]
    buffers = {"deduction": seeds + [entry(50 + i, step=1) for i in range(10)], "abduction": list(seeds),
               "induction": [{"program": "def f(a):\n    return a", "inputs": ["1", "2"], "outputs": ["1", "2"],
                              "message": "m", "imports": [], "step": 0}]}
    cfg = azr.parse_config(["--batch_size=64"])
    shown = []
    for seed in range(20):
        batches = azr.build_batches(buffers, ["deduction", "induction"], cfg, 2, Text(), random.Random(seed))
        shown += [it["program"] for it in batches[("induction", "propose")]]
    new = sum(p.endswith(tuple(f"a + {50 + i}" for i in range(10))) for p in shown) / len(shown)
    assert 0.43 < new < 0.57  # 10 of the 20 deduction entries; 10 of 30 (0.33) with the seeds counted twice
    shown = []  # abduction trained: its buffer counts (here it alone holds the new programs)
    for seed in range(20):
        batches = azr.build_batches({**buffers, "deduction": list(seeds), "abduction": buffers["deduction"]},
                                    ["abduction", "induction"], cfg, 2, Text(), random.Random(seed))
        shown += [it["program"] for it in batches[("induction", "propose")]]
    assert 0.43 < sum(p.endswith(tuple(f"a + {50 + i}" for i in range(10))) for p in shown) / len(shown) < 0.57
    only = azr.build_batches({**buffers, "deduction": list(seeds)}, ["induction"], cfg, 2, Text(), random.Random(0))
    assert {it["program"] for it in only[("induction", "propose")]} <= {e["program"] for e in seeds}


def test_seeding_dedups_against_earlier_seeds_only_and_runs_the_trained_tasks(monkeypatch):
    """The official update_seed drops a proposed triplet already in the seed set, but keeps a triplet proposed twice
    in one batch twice; only the triplet tasks in --tasks propose seeds."""
    calls = []

    def fake_propose(task, items, *args):
        calls.append(task)
        return [{"program": "def f(a):\n    return a", "input": '"Hello world"', "output": '"Hello world"',
                 "imports": []}, entry(7), entry(7)]  # the zero triplet again, and one new triplet twice
    monkeypatch.setattr(azr, "propose_entries", fake_propose)

    class Text:
        def encode(self, text, add_special_tokens=False):
            return [0]
    cfg = azr.parse_config(["--seed_rounds=1", "--seed_buffer_size=10"])
    got = azr.run_seeding(None, Text(), None, cfg, ["abduction", "deduction"], 0, 1, False)
    assert calls == ["abduction", "deduction"]  # the deduction batch adds nothing: both triplets are seeds by then
    assert [e["input"] for e in got["deduction"]] == ['"Hello world"', "7", "7"]
    calls.clear()
    azr.run_seeding(None, Text(), None, cfg, ["deduction"], 0, 1, False)
    assert calls == ["deduction"]  # (Table 2's deduction-only run seeds with deduction proposals alone)


def test_references_uniform_without_replacement():
    buf = [entry(i) for i in range(10)]
    refs = azr.sample_references(buf, 6, random.Random(1))
    assert len(refs) == 6 and len({e["input"] for e in refs}) == 6
    assert len(azr.sample_references(buf[:2], 6, random.Random(1))) == 2
    assert azr.sample_references(buf, 0, random.Random(1)) == []
    counts = [0] * 10  # roughly uniform over many draws
    rng = random.Random(2)
    for _ in range(2000):
        for e in azr.sample_references(buf, 3, rng):
            counts[int(e["input"])] += 1
    assert min(counts) > 450 and max(counts) < 750


def test_induction_split_and_zero_buffers():
    e = {"inputs": list("abcdefghij"), "outputs": list("ABCDEFGHIJ")}
    (gi, go), (hi, ho) = azr.induction_split(e)
    assert gi == list("abcde") and ho == list("FGHIJ")
    (gi, _), (hi, _) = azr.induction_split({"inputs": list("abc"), "outputs": list("ABC")})
    assert gi == ["a"] and hi == ["b", "c"]  # fewer than 10 (deviation 7): the smaller half is shown
    solver = azr.solver_text("induction", {"inputs": [str(i) for i in range(10)],
                                           "outputs": [str(10 * i) for i in range(10)], "message": "m"})
    assert "```input_0\n0\n```" in solver and "```output_4\n40\n```" in solver  # the shown half ...
    assert "input_5" not in solver and "\n5\n" not in solver and "\n50\n" not in solver  # ... never the hidden one
    zero = azr.zero_buffers()
    assert zero["deduction"][0]["program"] == "def f(a):\n    return a" and zero["deduction"] is not zero["abduction"]
    assert len(zero["induction"][0]["inputs"]) == 6


def test_build_batches_k_references_and_groups():
    class Text:  # "encodes" a prompt as one token holding its text, so the test can read each prompt back
        def encode(self, text, add_special_tokens=False):
            return [text]
    buffer = [entry(i) for i in range(10, 20)]
    buffers = {"deduction": list(buffer), "abduction": list(buffer), "induction": []}
    for k in (0, 3):
        cfg = azr.parse_config([f"--num_references={k}", "--batch_size=4", "--group_size=2"])
        batches = azr.build_batches(buffers, ["deduction", "abduction"], cfg, 1, Text(), random.Random(0))
        for task in ("deduction", "abduction"):
            prompts = [it["prompt_ids"][0] for it in batches[(task, "propose")]]
            assert len(prompts) == 4 and prompts[0] == prompts[1] and [it["group"] for it in
                                                                         batches[(task, "propose")]] == [0, 0, 1, 1]
            shown = [sum(f"return a + {i}" in p for i in range(10, 20)) for p in prompts]
            assert shown == [k] * 4  # K distinct references in every proposer prompt


def test_load_seed_files(data_dir):
    buffers = azr.load_seed_buffers(data_dir / "azr_seeds" / "7b_coder_seed_io.jsonl")
    assert len(buffers["deduction"]) == len(buffers["abduction"]) == len(buffers["induction"]) == 256
    assert buffers["deduction"][0]["program"] == "def f(a):\n    return a" and buffers["deduction"][0]["step"] == 0
    assert buffers["deduction"][0] is not buffers["abduction"][0]
    ind = buffers["induction"][1]
    assert len(ind["inputs"]) == len(ind["outputs"]) == 10 and ind["message"]
    json.dumps(buffers)  # JSON-able for checkpoints


def test_seed_file_errors(tmp_path, capsys):
    with pytest.raises(SystemExit):
        azr.load_seed_buffers(tmp_path / "missing_seed_io.jsonl")
    assert "not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # a typo in the name: say first that there is no such file
        azr.load_seed_buffers(tmp_path / "7b_seeds_io.jsonl")
    assert "7b_seeds_io.jsonl: no such file; give AZR's *_seed_io.jsonl" in capsys.readouterr().err
    (tmp_path / "x_seed_io.jsonl").write_text('{"snippet": "def f(a):\\n    return a"}\n')
    with pytest.raises(SystemExit):
        azr.load_seed_buffers(tmp_path / "x_seed_io.jsonl")  # the induction file is missing
    (tmp_path / "x_code_f_seed_io.jsonl").write_text("{}\n")
    with pytest.raises(SystemExit):
        azr.load_seed_buffers(tmp_path / "x_seed_io.jsonl")  # fields missing
    assert "not an AZR seed file" in capsys.readouterr().err
    (tmp_path / "x_code_f_seed_io.jsonl").write_text('{"snippet": "def f(a):\\n    return a", "inputs": ["1"], '
                                                     '"outputs": ["1"], "message": "m"}\n\n  \n')  # blank lines skipped
    (tmp_path / "x_seed_io.jsonl").write_text('{"snippet": "def f(a):\\n    return a", "input": "1", "output": "1"}\n'
                                              '{"snippet": "def f(a):\\n    return a", "inp\n')
    with pytest.raises(SystemExit):
        azr.load_seed_buffers(tmp_path / "x_seed_io.jsonl")
    err = capsys.readouterr().err
    assert "x_seed_io.jsonl line 2 is not valid JSON (" in err and err.count("\n") == 1
    (tmp_path / "x_seed_io.jsonl").write_text('\n{"snippet": "def f(a):\\n    return a", "input": "1", '
                                              '"output": "1"}\n')
    assert [len(b) for b in azr.load_seed_buffers(tmp_path / "x_seed_io.jsonl").values()] == [1, 1, 1]


def test_seed_file_imports_must_be_a_list_of_lines(tmp_path, capsys):
    # a string would be split into one "import line" per character, failing every check of that task silently
    good = {"snippet": "def f(a):\n    return a", "input": "1", "output": "1"}
    good_f = {"snippet": "def f(a):\n    return a", "inputs": ["1"], "outputs": ["1"], "message": "m"}
    io, fn = tmp_path / "x_seed_io.jsonl", tmp_path / "x_code_f_seed_io.jsonl"
    for bad_io, bad_f in [({**good, "imports": "import math"}, good_f), (good, {**good_f, "imports": [1]})]:
        io.write_text(json.dumps(bad_io) + "\n")
        fn.write_text(json.dumps(bad_f) + "\n")
        with pytest.raises(SystemExit):
            azr.load_seed_buffers(io)
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "line 1: field 'imports' missing or not a list of str" in err[0]
    io.write_text(json.dumps({**good, "imports": None}) + "\n" + json.dumps({**good, "imports": ["import re"]}) + "\n")
    fn.write_text(json.dumps(good_f) + "\n")
    assert [e["imports"] for e in azr.load_seed_buffers(io)["deduction"]] == [[], ["import re"]]


# ----------------------------------------------------------------------------- the update on a tiny model

def sequence_logprob(qwen, prompt, response):
    with torch.no_grad():
        logp, _ = azr.sequence_logprobs(qwen, [(prompt, response)], torch.device("cpu"))
    return logp.sum().item()


def test_seed_files_field_mapping(tmp_path):
    # snippet -> program, input/output kept apart, imports kept (or []); ded and abd hold separate copies
    io = [{"snippet": "import math\ndef f(x):\n    return math.floor(x)", "input": "1.5", "output": "1",
           "imports": ["import math"]}, {"snippet": "def f(x):\n    return x", "input": "2", "output": "2"}]
    fn = [{"snippet": "import re\ndef f(x):\n    return x", "inputs": ["1", "2"], "outputs": ["1", "2"],
           "message": "same", "imports": ["import re"]}]
    (tmp_path / "x_seed_io.jsonl").write_text("".join(json.dumps(r) + "\n" for r in io))
    (tmp_path / "x_code_f_seed_io.jsonl").write_text("".join(json.dumps(r) + "\n" for r in fn))
    b = azr.load_seed_buffers(tmp_path / "x_seed_io.jsonl")
    assert b["deduction"] == b["abduction"] == [
        {"program": io[0]["snippet"], "input": "1.5", "output": "1", "imports": ["import math"], "step": 0},
        {"program": io[1]["snippet"], "input": "2", "output": "2", "imports": [], "step": 0}]
    assert b["induction"] == [{"program": fn[0]["snippet"], "inputs": ["1", "2"], "outputs": ["1", "2"],
                               "message": "same", "imports": ["import re"], "step": 0}]
    assert all(d is not a for d, a in zip(b["deduction"], b["abduction"]))


def test_solver_window_and_fill_edges():
    # an entry stamped exactly `window` steps back is recent; with nothing recent the whole buffer fills the batch,
    # without replacement while it has enough entries
    buf = [{"step": 3, "id": 0}, {"step": 4, "id": 1}]
    for seed in range(10):
        assert [e["id"] for e in azr.sample_solver_batch(buf, 1, 5, 1, random.Random(seed))] == [1]
        old = azr.sample_solver_batch(buf, 2, 9, 1, random.Random(seed))
        assert sorted(e["id"] for e in old) == [0, 1]


def test_derived_seed_separates_parts():
    assert azr.derived_seed(1, 23) != azr.derived_seed(12, 3)  # joined with a separator: no collisions by concatenation
    assert azr.derived_seed(1, "seed", 2) == azr.derived_seed(1, "seed", 2) < 2 ** 31


def test_gather_strided_reassembles_rank_slices(monkeypatch):
    # rank r rolled out items r, r + world, ...: the gathered list is back in global order
    def fake_gather(parts, local):
        parts[:] = [[0, 3, 6], [1, 4], [2, 5]]
    monkeypatch.setattr(azr.dist, "all_gather_object", fake_gather)
    assert azr.gather_strided([0, 3, 6], 0, 3) == [0, 1, 2, 3, 4, 5, 6]
    assert azr.gather_strided(["a"], 0, 1) == ["a"]


def test_run_seeding_dedup_cap_rounds_and_induction(monkeypatch):
    """Seeding: exact-JSON dedup, never past seed_buffer_size, stops proposing once full; induction seeds from the
    finished triplets, capped too, and only when induction is a task."""
    calls = []

    def triplet(i):
        return {"program": f"def f(x):\n    return x + {i}", "input": "1", "output": str(1 + i), "imports": []}

    def fake_propose(task, items, *args):
        calls.append(task)
        if task == "induction":
            assert all(it["program"] and "imports" in it for it in items)
            return [{"program": it["program"], "inputs": [str(i)], "outputs": [str(i)], "message": "m", "imports": []}
                    for i, it in enumerate(items * 3)]
        n = len(calls)
        return [triplet(0), triplet(0), triplet(n), triplet(100 + n)]
    monkeypatch.setattr(azr, "propose_entries", fake_propose)

    class Tok:
        def encode(self, text, add_special_tokens=False):
            return [0] * 10
    cfg = azr.Config(seed_buffer_size=4, seed_rounds=3, batch_size=2, num_references=1)
    b = azr.run_seeding(None, Tok(), None, cfg, list(azr.TASKS), 0, 1, False)
    # zero triplet + 3 new: triplet(0) twice (a duplicate within one batch is kept, as by the official update_seed),
    # then the cap
    assert [e["output"] for e in b["deduction"]] == ['"Hello world"', "1", "1", "2"]
    assert b["abduction"] == b["deduction"] and b["abduction"][1] is not b["deduction"][1]
    assert calls == ["abduction", "deduction", "induction"] and len(b["induction"]) == 4
    assert all(e["step"] == 0 for t in azr.TASKS for e in b[t])
    calls.clear()
    b = azr.run_seeding(None, Tok(), None, cfg, ["deduction", "abduction"], 0, 1, False)
    assert "induction" not in calls and len(b["induction"]) == 1


def test_sequence_logprobs_use_the_sampling_temperature(tiny_ckpt):
    # the update scores each response under the distribution it was sampled from: log softmax(logits / T)
    qwen = Qwen2.from_pretrained(tiny_ckpt)
    prompt, response = [5, 9, 2, 7], [11, 3, 8]
    ids = torch.tensor([prompt + response])
    with torch.no_grad():
        logits = qwen(ids)[0, len(prompt) - 1:-1].double()  # [3, V]: the positions that predict the response
        for T in (1.0, 0.6):
            logp, entropy = azr.sequence_logprobs(qwen, [(prompt, response)], torch.device("cpu"), temperature=T)
            ref = torch.log_softmax(logits / T, dim=-1)
            torch.testing.assert_close(logp.double(), ref[torch.arange(3), response], atol=1e-5, rtol=0)
            torch.testing.assert_close(entropy.double(), -(ref.exp() * ref).sum(-1), atol=1e-5, rtol=0)


@pytest.mark.parametrize("grad_clip", ["1.0", "0"])  # 0 = no clipping (not a max norm of 0)
def test_policy_gradient_raises_rewarded_and_lowers_penalised(tiny_ckpt, monkeypatch, grad_clip):
    monkeypatch.setenv("NANOAZR_KERNELS", "torch")
    cfg = azr.parse_config(["--lr=1e-3", "--entropy_coef=0", "--micro_batch=1", f"--grad_clip={grad_clip}"])
    qwen, master, sharded = azr.setup_policy(str(tiny_ckpt), cfg, torch.device("cpu"), torch.float32, 1)
    prompt, good, bad = [5, 6, 7, 8], [10, 11, 12], [20, 21, 22]
    before = (sequence_logprob(qwen, prompt, good), sequence_logprob(qwen, prompt, bad))
    weights = azr.token_weights([3, 3], [True, True], "token-mean")
    seqs = [{"prompt_ids": prompt, "response_ids": good, "advantage": 1.0, "weight": weights[0]},
            {"prompt_ids": prompt, "response_ids": bad, "advantage": -1.0, "weight": weights[1]}]
    optimizer = azr.make_optimizer(list(qwen.parameters()), cfg)
    stats = azr.update(qwen, optimizer, seqs, cfg)
    after = (sequence_logprob(qwen, prompt, good), sequence_logprob(qwen, prompt, bad))
    assert after[0] > before[0] and after[1] < before[1]
    assert stats["grad_norm"] > 0 and math.isfinite(stats["loss"])


def test_bf16_training_keeps_fp32_masters_at_lr_1e6(tiny_ckpt, monkeypatch):
    """At lr 1e-6 an in-place bf16 update is rounded away; the fp32 masters must move and drive the weights."""
    monkeypatch.setenv("NANOAZR_KERNELS", "torch")
    cfg = azr.parse_config(["--lr=1e-6", "--micro_batch=1", "--grad_clip=1.0"])
    qwen, master, _ = azr.setup_policy(str(tiny_ckpt), cfg, torch.device("cpu"), torch.bfloat16, 1)
    assert master is not None and all(m.dtype == torch.float32 for m in master)
    assert all(p.dtype == torch.bfloat16 for p in qwen.parameters())
    start = [m.detach().clone() for m in master]
    optimizer = azr.make_optimizer(master, cfg)
    seqs = [{"prompt_ids": [5, 6, 7], "response_ids": [9, 10], "advantage": 1.0, "weight": 0.5}]
    azr.update(qwen, optimizer, seqs, cfg, master=master)
    moved = [(m - s).abs().max().item() for m, s in zip(master, start)]
    assert max(moved) > 0 and max(moved) < 1e-5  # Adam's first step moves each weight by ~lr
    # the same step applied to bf16 storage is lost for (almost) every weight: that is the trap masters avoid
    w = start[0].to(torch.bfloat16)
    assert ((w.float() + 1e-6).to(torch.bfloat16) == w).float().mean() > 0.95
    # the saved training state is the fp32 master (exact resume)
    sd, _ = azr.full_state(qwen, optimizer, master, False)
    assert all(v.dtype == torch.float32 for v in sd.values())
    assert torch.equal(sd["model.embed_tokens.weight"], master[0].detach())


def test_bf16_weights_follow_masters_and_micro_batches_sum(tiny_ckpt, monkeypatch):
    """After a step every bf16 weight is its fp32 master rounded; gradients of micro-batches add up (the step does
    not depend on --micro_batch)."""
    monkeypatch.setenv("NANOAZR_KERNELS", "torch")
    seqs = [{"prompt_ids": [5, 6, 7], "response_ids": [9, 10], "advantage": 1.0, "weight": 0.25},
            {"prompt_ids": [8, 3], "response_ids": [11, 12], "advantage": -1.0, "weight": 0.25}]
    norms = []
    for micro_batch in (1, 2):
        cfg = azr.parse_config(["--lr=1e-3", f"--micro_batch={micro_batch}", "--grad_clip=1e9"])
        qwen, master, _ = azr.setup_policy(str(tiny_ckpt), cfg, torch.device("cpu"), torch.bfloat16, 1)
        start = [p.detach().clone() for p in qwen.parameters()]
        norms.append(azr.update(qwen, azr.make_optimizer(master, cfg), seqs, cfg, master=master)["grad_norm"])
        assert all(torch.equal(p, m.to(p.dtype)) for p, m in zip(qwen.parameters(), master))
        assert any(not torch.equal(p, s) for p, s in zip(qwen.parameters(), start))
    assert norms[0] == pytest.approx(norms[1], rel=1e-2)


def test_resume_restores_the_global_rngs(tmp_path):
    params = [torch.nn.Parameter(torch.zeros(2))]
    optimizer = torch.optim.AdamW(params)
    torch.save(optimizer.state_dict(), tmp_path / "optim.pt")
    (tmp_path / "buffers.json").write_text(json.dumps(azr.zero_buffers()))
    (tmp_path / "state.json").write_text(json.dumps({"step": 3, "world": 1, "python_rng": azr.list_state(
        random.getstate()), "torch_rng": torch.get_rng_state().tolist()}))
    want = (random.random(), torch.rand(1).item())
    random.seed(123)
    torch.manual_seed(123)
    azr.load_training_state(tmp_path, optimizer, False, None, 0, 1, "adamw")
    assert (random.random(), torch.rand(1).item()) == want


def test_resume_with_another_optimizer_layout_is_one_line(tmp_path, capsys):
    """8-bit AdamW under FSDP keeps per-rank optimizer shards: they resume on any number of processes with
    --optim=adamw8bit (tests/test_azr_reshard.py), but not into plain AdamW; and an FSDP 8-bit run cannot start
    from a full optim.pt. Both get one line naming the flags the checkpoint was saved with."""
    for optim, saved_file, sharded, world, why in (
            ("adamw", "optim.pt", True, 2, "no optim_rank0.pt; saved by 4 processes with --optim=adamw --fsdp=on"),
            ("adamw8bit", "optim_rank0.pt", False, 1,
             "no optim.pt; saved by 4 processes with --optim=adamw8bit --fsdp=on")):
        ckpt = tmp_path / optim
        ckpt.mkdir()
        (ckpt / "state.json").write_text(json.dumps({"step": 3, "world": 4, "python_rng": [], "torch_rng": [],
                                                     "config": {"optim": optim, "fsdp": "on"}}))
        (ckpt / saved_file).write_bytes(b"")
        now = "adamw" if optim == "adamw8bit" else "adamw8bit"  # the other optimizer
        with pytest.raises(SystemExit):
            azr.load_training_state(ckpt, None, sharded, None, 0, world, now)
        err = capsys.readouterr().err.strip()
        assert err.startswith("azr.py: error:") and why in err and "\n" not in err
        assert "same --optim and --fsdp" in err


def test_resume_without_the_runs_preset_is_one_line(tmp_path, capsys):
    """`--resume` of a --preset paper run typed without --preset would train on at the tiny preset's lr (1e-4),
    batch size and 24-token cap with only a warning: one line instead, before anything is written."""
    ckpt = tmp_path / "run" / "ckpt" / "step_000010"
    ckpt.mkdir(parents=True)
    for name, text in (("config.json", "{}"), ("buffers.json", json.dumps(azr.zero_buffers())),
                       ("state.json", json.dumps({"step": 10, "config": {"preset": "paper", "optim": "adamw"}}))):
        (ckpt / name).write_text(text)
    (ckpt / "model.safetensors").write_bytes(b"")
    (ckpt / "optim.pt").write_bytes(b"")
    cfg = azr.parse_config([f"--out={tmp_path / 'run'}", "--resume", "--steps=20", "--model=qwen2.5-7b"])
    with pytest.raises(SystemExit):
        azr.preflight(cfg, torch.device("cpu"), 0)
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"azr.py: error: {ckpt} was trained with --preset=paper;") and "\n" not in err
    cfg = azr.parse_config([f"--out={tmp_path / 'run'}", "--resume", "--steps=20", "--preset=paper",
                            "--eval_every=0"])
    assert azr.preflight(cfg, torch.device("cpu"), 0)[1] == ckpt


def test_full_disk_is_one_line(monkeypatch, capsys, tmp_path):
    import errno

    def full(argv=None):
        raise OSError(errno.ENOSPC, "No space left on device", "out/azr/ckpt/.tmp_step_000002/model.safetensors")

    def interrupted(argv=None):
        raise KeyboardInterrupt

    def stop(main, out):
        monkeypatch.setattr(azr, "main", main)
        with pytest.raises(SystemExit) as e:
            azr.entry([f"--out={out}"])
        err = capsys.readouterr().err.strip().splitlines()
        assert e.value.code != 0 and len(err) == 1
        return err[0]

    # after a checkpoint: --resume; before the first one, --resume would find nothing, so: the same command afresh
    out = tmp_path / "run"
    (out / "ckpt" / "step_000002").mkdir(parents=True)
    (out / "ckpt" / "step_000002" / "state.json").write_text("{}")
    line = stop(full, out)
    assert "disk full" in line and "rerun with the same flags and --resume" in line
    line = stop(interrupted, out)
    assert "interrupted" in line and "rerun with the same flags and --resume" in line
    for main in (full, interrupted):
        line = stop(main, tmp_path / "fresh")
        assert "no checkpoint was saved yet: rerun the same command without --resume" in line


def test_eval_data_folder_named_by_env_is_one_azr_line(monkeypatch, capsys, tmp_path):
    # azr.py has no --data-dir: its line names NANOAZR_DATA only, and nothing is created
    monkeypatch.setenv("NANOAZR_DATA", str(tmp_path / "no-data"))
    cfg = azr.parse_config([f"--out={tmp_path / 'o'}", "--eval_every=5"])
    with pytest.raises(SystemExit):
        azr.preflight(cfg, torch.device("cpu"), 0)
    err = capsys.readouterr().err.strip()
    assert err == (f"azr.py: error: --eval_every=5 needs CRUXEval: NANOAZR_DATA={tmp_path / 'no-data'} is not a "
                   "folder; point it at the benchmark data folder, unset it (../shared/data, else the hub) or pass "
                   "--eval_every=0")
    assert not (tmp_path / "o").exists()


def test_eval_data_without_folder_or_env_comes_from_the_hub(monkeypatch, tmp_path):
    # a clone without ../shared/data beside it and no NANOAZR_DATA: the in-loop CRUXEval goes to the hub, as
    # `python -m eval` does (it used to stop: the default folder was passed on as if the user had named it)
    from eval import data
    monkeypatch.delenv("NANOAZR_DATA", raising=False)
    monkeypatch.setattr(data, "REPO", tmp_path / "clone" / "nanoAZR")
    asked = []

    def hub(benchmark, local):
        asked.append(benchmark)
        return [{"code": "def f(a):\n    return a", "input": "1", "output": "1", "id": "sample_0"}]
    monkeypatch.setattr(data, "_hub_records", hub)
    cfg = azr.parse_config([f"--out={tmp_path / 'o'}", "--eval_every=5"])
    azr.preflight(cfg, torch.device("cpu"), 0)
    assert asked == ["cruxeval-i", "cruxeval-o"]


def test_batch_metrics_definitions():
    """Each metric of one batch: means over all records, valid_rate/num_valid over proposals, learnability_acc over the
    valid proposals that were scored only, solver accuracy; an empty batch counts 0."""
    recs = [{"reward": 1.0, "format_ok": True, "length": 3, "valid": True, "acc": 0.5},
            {"reward": -1.0, "format_ok": False, "length": 5, "valid": True, "acc": None},
            {"reward": -1.0, "format_ok": True, "length": 4, "valid": False, "acc": None}]
    m = azr.batch_metrics("abduction", "propose", recs)
    assert m == pytest.approx({"propose/abduction/reward": -1 / 3, "propose/abduction/format_rate": 2 / 3,
                               "propose/abduction/response_len": 4.0, "propose/abduction/count": 3,
                               "propose/abduction/valid_rate": 2 / 3, "propose/abduction/num_valid": 2,
                               "propose/abduction/learnability_acc": 0.5})
    solve = [{"reward": 1.0, "format_ok": True, "length": 2, "correct": True},
             {"reward": -0.5, "format_ok": True, "length": 4, "correct": False}]
    assert azr.batch_metrics("induction", "solve", solve) == pytest.approx({
        "solve/induction/reward": 0.25, "solve/induction/format_rate": 1.0, "solve/induction/response_len": 3.0,
        "solve/induction/count": 2, "solve/induction/accuracy": 0.5})
    assert azr.batch_metrics("deduction", "solve", [])["solve/deduction/count"] == 0


def test_log_line_fields():
    # the console line reads the right keys: valid_rate (not format_rate), grad_norm, per task, nan when a task is off
    m = {"propose/deduction/reward": 0.5, "propose/deduction/valid_rate": 1.0, "propose/deduction/format_rate": 0.25,
         "solve/deduction/reward": -0.25, "solve/deduction/accuracy": 0.75, "loss": 0.1234, "grad_norm": 3.5e-3,
         "tokens_per_s": 100.0, "exec_per_s": 7.0, **{f"time/{k}": 1.0 for k in azr.PHASES}}
    line = azr.log_line(4, m, ["deduction", "induction"])
    assert line.startswith("step 4 | P reward ded +0.50 ind +nan valid ded +1.00 ind +nan | S reward ded -0.25 ind "
                           "+nan acc ded +0.75 ind +nan | loss +0.1234 gnorm 3.50e-03 | 100 tok/s 7 exec/s | ")


def test_dump_step_rows(tmp_path):
    # one row per sequence: proposals with validity, status, learnability acc and entry; answers with the verdict and
    # the task entry of their own position in the solver batch
    prop = {"text": "p", "reward": 0.75, "format_ok": True, "valid": True, "status": "ok", "acc": 0.25,
            "entry": {"x": 1}, "group": 0}
    bad = {"text": "q", "reward": -1.0, "format_ok": True, "valid": False, "status": "timeout", "acc": None,
           "entry": None, "group": 1}
    ans = [{"text": f"a{j}", "reward": r, "format_ok": True, "correct": c, "group": j}
           for j, (r, c) in enumerate([(1.0, True), (-0.5, False)])]
    results = {("deduction", "propose"): [prop, bad], ("deduction", "solve"): ans}
    batches = {("deduction", "propose"): [{}, {}], ("deduction", "solve"): [{"entry": {"e": 0}}, {"entry": {"e": 1}}]}
    azr.dump_step(tmp_path, 7, results, batches)
    rows = [json.loads(x) for x in (tmp_path / "dumps" / "step_000007.jsonl").read_text().splitlines()]
    assert rows[0] == {"step": 7, "task": "deduction", "role": "propose", "group": 0, "response": "p", "reward": 0.75,
                       "format_ok": True, "valid": True, "status": "ok", "learnability_acc": 0.25, "entry": {"x": 1}}
    assert (rows[1]["status"], rows[1]["valid"], rows[1]["learnability_acc"]) == ("timeout", False, None)
    assert [(r["group"], r["response"], r["correct"], r["task_entry"]) for r in rows[2:]] == [
        (0, "a0", True, {"e": 0}), (1, "a1", False, {"e": 1})]


def test_save_checkpoint_layout_and_finding_it(tiny_ckpt, tmp_path, capsys):
    """save_checkpoint: a fresh temp folder renamed into place (a crashed save's leftovers never leak in), the latest
    pointer, weights + optimizer + buffers + tokenizer files, and state.json's step, config, world and RNG states.
    latest_checkpoint: the pointer, else the newest complete step folder; checkpoint_step checks the files."""
    import dataclasses
    qwen = Qwen2.from_pretrained(str(tiny_ckpt))
    opt = torch.optim.AdamW(qwen.parameters())
    cfg, buffers, root = azr.Config(out=str(tmp_path)), azr.zero_buffers(), tmp_path / "ckpt"
    (root / ".tmp_step_000003").mkdir(parents=True)
    (root / ".tmp_step_000003" / "junk").write_text("from a crashed save")
    random.seed(11)
    rng = azr.list_state(random.getstate())
    azr.save_checkpoint(tmp_path, 3, qwen, opt, None, False, buffers, cfg, str(tiny_ckpt), 0)
    final = root / "step_000003"
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step_000003"] and not (final / "junk").exists()
    assert (root / "latest").read_text() == "step_000003"
    assert {"config.json", "model.safetensors", "optim.pt", "buffers.json", "state.json", "tokenizer.json",
            "tokenizer_config.json"} <= {p.name for p in final.iterdir()}
    state = json.loads((final / "state.json").read_text())
    assert state["step"] == 3 and state["world"] == 1 and state["config"] == dataclasses.asdict(cfg)
    assert state["python_rng"] == json.loads(json.dumps(rng)) and len(state["torch_rng"]) > 0
    assert json.loads((final / "buffers.json").read_text()) == buffers
    assert azr.checkpoint_step(final) == 3 and azr.latest_checkpoint(tmp_path) == final
    azr.save_checkpoint(tmp_path, 5, qwen, opt, None, False, buffers, cfg, str(tiny_ckpt), 0)
    (root / "step_000007").mkdir()  # a save that died before state.json: never chosen
    (root / "latest").write_text("step_000009")  # names a folder that is gone
    assert azr.latest_checkpoint(tmp_path) == root / "step_000005"
    (root / "latest").unlink()
    assert azr.latest_checkpoint(tmp_path) == root / "step_000005"
    (final / "state.json").write_text('{"step": "3"}')
    with pytest.raises(SystemExit):
        azr.checkpoint_step(final)
    (root / "step_000005" / "buffers.json").unlink()
    with pytest.raises(SystemExit):
        azr.checkpoint_step(root / "step_000005")
    assert azr.buffers_problem(azr.zero_buffers()) is None
    no_step = azr.zero_buffers()
    del no_step["induction"][0]["step"]
    assert "induction entry 0" in azr.buffers_problem(no_step)
    assert azr.buffers_problem([]) == "not an object with the keys deduction, abduction, induction"
    assert azr.buffers_problem({"deduction": [], "abduction": []}).startswith("not an object with the keys")
    assert azr.buffers_problem(dict(azr.zero_buffers(), abduction={})) == "abduction is not a list"
    (root / "step_000005" / "buffers.json").write_text(json.dumps(buffers))
    assert azr.checkpoint_step(root / "step_000005") == 5
    (root / "step_000005" / "model.safetensors").unlink()
    with pytest.raises(SystemExit):
        azr.checkpoint_step(root / "step_000005")
    assert "is damaged (no model.safetensors)" in capsys.readouterr().err


def test_keep_optim_drops_old_optimizer_state(tiny_ckpt, tmp_path, capsys):
    """--keep_optim=N: after each save only the newest N complete checkpoints keep optim*.pt (at 7B 61 GB each);
    the rest keep weights, buffers and state, and resuming from one says what to do. 0 keeps every one."""
    qwen = Qwen2.from_pretrained(str(tiny_ckpt))
    opt, buffers, root = torch.optim.AdamW(qwen.parameters()), azr.zero_buffers(), tmp_path / "ckpt"
    (root / "step_000009").mkdir(parents=True)  # a save that died before state.json: not a checkpoint to count
    for step in (1, 2, 3):
        azr.save_checkpoint(tmp_path, step, qwen, opt, None, False, buffers, azr.Config(keep_optim=2), str(tiny_ckpt),
                            0)
    have = {p.name: (p / "optim.pt").is_file() for p in azr.complete_checkpoints(root)}
    assert have == {"step_000001": False, "step_000002": True, "step_000003": True}
    assert all((root / f"step_00000{s}" / "model.safetensors").is_file() for s in (1, 2, 3))
    assert azr.checkpoint_step(root / "step_000002") == 2
    with pytest.raises(SystemExit):
        azr.checkpoint_step(root / "step_000001")
    assert "holds no optimizer state" in capsys.readouterr().err
    azr.save_checkpoint(tmp_path, 4, qwen, opt, None, False, buffers, azr.Config(keep_optim=0), str(tiny_ckpt), 0)
    assert [(p / "optim.pt").is_file() for p in azr.complete_checkpoints(root)] == [False, True, True, True]
    azr.drop_old_optimizer_state(root, 1)
    assert [(p / "optim.pt").is_file() for p in azr.complete_checkpoints(root)] == [False, False, False, True]


def test_truncate_metrics_on_resume(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "loss": 0.5}\n{"step": 2, "loss": 0.4}\n{"step": 3, "loss": 0.3}\n{"step": 4, "lo')
    azr.truncate_metrics(path, 2)
    assert [json.loads(r)["step"] for r in path.read_text().splitlines()] == [1, 2]
    azr.truncate_metrics(tmp_path / "none.jsonl", 2)  # a run that died before its first step's line: nothing to do
    assert not (tmp_path / "none.jsonl").exists()


def test_prompt_cap_keeps_a_prompt_of_exactly_the_cap_in_both_roles():
    """Official filter: a prompt of max_prompt_tokens tokens is kept, one token more is dropped, for proposer and
    solver prompts alike."""
    class Chars:
        def encode(self, text, add_special_tokens=False):
            return list(text)
    buffer = [entry(i) for i in range(10, 20)]  # equally long solver prompts
    buffers = {"deduction": buffer, "abduction": [], "induction": []}
    n_solve = len(azr.solver_text("deduction", buffer[0]))
    n_propose = len(azr.proposer_text("deduction", {}, []))
    assert n_solve < n_propose
    for cap, sizes in ((n_solve - 1, (0, 0)), (n_solve, (0, 4)), (n_propose - 1, (0, 4)), (n_propose, (4, 4))):
        cfg = azr.parse_config(["--batch_size=4", "--group_size=1", "--num_references=0",
                                f"--max_prompt_tokens={cap}"])
        b = azr.build_batches(buffers, ["deduction"], cfg, 1, Chars(), random.Random(0))
        assert (len(b[("deduction", "propose")]), len(b[("deduction", "solve")])) == sizes, cap


def test_seeding_proposals_parse_the_whole_response(sb, monkeypatch):
    """propose_entries (the seeding phase) validates the whole decoded response, as the official seeding does."""
    text = "I will write:\n```python\ndef g(x):\n    return x * 3\n```\n```input\n2\n```\nno tags at all"

    class Tok:
        eos_token_id = 0

        def decode(self, ids, skip_special_tokens=True):
            return ids
    monkeypatch.setattr(azr, "rollout", lambda qwen, ids, *a, **k: [text for _ in ids])
    got = azr.propose_entries("deduction", [{"prompt_ids": [1]}], None, Tok(), sb, azr.Config(), 0, 0, 1, False)
    assert [(e["program"], e["output"]) for e in got] == [("def f(x):\n    return x * 3", "6")]


def test_die_names_the_rank_for_a_failure_of_its_own(monkeypatch, capsys):
    """Under torchrun an error only this rank met says which rank; one every rank meets is the plain line."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.delenv("TORCHELASTIC_ERROR_FILE", raising=False)
    for own, line in ((True, "azr.py: error: (rank 1) disk full"), (False, "azr.py: error: disk full")):
        with pytest.raises(SystemExit):
            azr.die("disk full", this_rank_only=own)
        assert capsys.readouterr().err.strip() == line


def test_entry_words_each_stop(monkeypatch, capsys, tmp_path):
    """entry(): Ctrl-C on a rank other than local 0 exits quietly (local rank 0 says it once); a gloo timeout is one
    line naming this rank; other OSErrors and RuntimeErrors stay tracebacks (a bug, not the user's input)."""
    import errno

    def raising(exc):
        def main(argv):
            raise exc
        return main
    argv = [f"--out={tmp_path}"]
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(azr, "main", raising(KeyboardInterrupt()))
    with pytest.raises(SystemExit) as e:
        azr.entry(argv)
    assert e.value.code == 2 and capsys.readouterr().err == ""
    monkeypatch.setattr(azr, "main", raising(RuntimeError("[gloo] Timed out waiting 7200000ms for recv")))
    with pytest.raises(SystemExit) as e:
        azr.entry(argv)
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and err.startswith("azr.py: error: (rank 1) another rank stopped answering")
    assert "rerun with --resume" in err and err.count("\n") == 0
    for exc in (OSError(errno.EACCES, "Permission denied", "x"), RuntimeError("CUDA error: out of memory")):
        monkeypatch.setattr(azr, "main", raising(exc))
        with pytest.raises(type(exc)):
            azr.entry(argv)
    monkeypatch.setenv("WORLD_SIZE", "1")  # one process: a timeout is no other rank's fault
    monkeypatch.setattr(azr, "main", raising(RuntimeError("Timed out")))
    with pytest.raises(RuntimeError):
        azr.entry(argv)


def test_help_into_a_closed_pipe_says_nothing():
    """`python azr.py --help | head -1`: the reader left before the text was written; exit 0, no traceback."""
    import os
    import subprocess
    import sys
    from pathlib import Path
    r, w = os.pipe()
    os.close(r)  # nobody reads: the first write fails with EPIPE
    try:
        proc = subprocess.run([sys.executable, str(Path(azr.__file__)), "--help"], stdout=w, stderr=subprocess.PIPE,
                              text=True, timeout=60)
    finally:
        os.close(w)
    assert proc.returncode == 0 and proc.stderr == ""


def test_open_tracker_logs_numbers_to_the_chosen_backend(monkeypatch, tmp_path, capsys):
    """--log=tensorboard / wandb: each gets the step's metrics (tensorboard: the numeric ones, flushed); a missing
    package is one line saying what to install."""
    import sys
    import types
    logged = []

    class Writer:
        def __init__(self, logdir):
            logged.append(("dir", logdir))

        def add_scalar(self, k, v, step):
            logged.append((k, v, step))

        def flush(self):  # (each step: what the writer holds is lost when the run ends or dies)
            logged.append("flush")
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=Writer))
    track = azr.open_tracker(azr.Config(log="tensorboard"), tmp_path)
    track({"loss": 0.5, "step": 3, "note": "text"}, 3)
    assert logged == [("dir", str(tmp_path / "tb")), ("loss", 0.5, 3), ("step", 3, 3), "flush"]
    wandb = types.SimpleNamespace(init=lambda **kw: logged.append(("init", kw["project"], kw["dir"])),
                                  log=lambda m, step: logged.append((m, step)))
    monkeypatch.setitem(sys.modules, "wandb", wandb)
    logged.clear()
    azr.open_tracker(azr.Config(log="wandb"), tmp_path)({"loss": 0.5}, 4)
    assert logged == [("init", "nanoazr", str(tmp_path)), ({"loss": 0.5}, 4)]
    assert azr.open_tracker(azr.Config(), tmp_path) is None
    monkeypatch.setitem(sys.modules, "wandb", None)  # not installed
    with pytest.raises(SystemExit):
        azr.open_tracker(azr.Config(log="wandb"), tmp_path)
    err = capsys.readouterr().err
    assert "--log=wandb needs a package that is not installed (wandb): pip install wandb" in err


def test_rollout_of_no_prompts_generates_nothing(monkeypatch):
    monkeypatch.setattr(azr, "generate", lambda *a, **k: pytest.fail("generate called without prompts"))
    assert azr.rollout(None, [], azr.Config(), 0, 0) == []
