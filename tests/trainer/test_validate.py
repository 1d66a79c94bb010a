"""The streaming validator: every kind of bad input located exactly, chunking-independent, exact stats."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from tests.support.data import chat_jsonl, dpo_jsonl
from trainer.data.validate import JsonlLineChecker, StreamingValidator, ValidationReport, validate_file


def line(obj: object) -> bytes:
    return json.dumps(obj).encode() + b"\n"


def msgs(*messages: dict[str, object], **extra: object) -> bytes:
    return line({"messages": list(messages), **extra})


U = {"role": "user", "content": "hi"}
A = {"role": "assistant", "content": "hello"}
GOOD = chat_jsonl(2)  # lines 1-2 are fine, the bad line is line 3 (example 3)


def run(data: bytes, **kwargs: object) -> ValidationReport:
    v = StreamingValidator(**kwargs)  # type: ignore[arg-type]
    v.feed(data)
    return v.finish()


BAD = [
    ("broken-json", b'{"messages": [\n', "invalid_json", None),
    ("not-a-dict", b"[1, 2]\n", "not_a_dict", None),
    ("messages-not-list", line({"messages": "hi"}), "missing_messages", None),
    ("empty-messages", line({"messages": []}), "missing_messages", None),
    ("content-number", msgs({"role": "user", "content": 5}, A), "invalid_content", 1),
    ("missing-assistant", msgs(U), "no_trainable_assistant", None),
    ("all-weights-zero", msgs(U, {**A, "weight": 0}), "no_trainable_assistant", None),
    ("unknown-role", msgs({"role": "robot", "content": "x"}, A), "unknown_role", 1),
    ("missing-role", msgs({"content": "x"}, A), "missing_role", 1),
    (
        "tool-args-not-json",
        msgs(
            U,
            {
                "role": "assistant",
                "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{x"}}],
            },
            A,
        ),
        "invalid_tool_call",
        2,
    ),
    (
        "tool-args-not-string",
        msgs(
            U,
            {
                "role": "assistant",
                "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": {}}}],
            },
            A,
        ),
        "invalid_tool_call",
        2,
    ),
    (
        "tool-without-name",
        msgs(
            U,
            {
                "role": "assistant",
                "tool_calls": [{"id": "c", "type": "function", "function": {"arguments": "{}"}}],
            },
            A,
        ),
        "invalid_tool_call",
        2,
    ),
    ("tool-message-without-id", msgs(U, {"role": "tool", "content": "r"}, A), "missing_tool_call_id", 2),
    ("weight-two", msgs(U, {**A, "weight": 2}), "invalid_weight", 2),
    ("weight-bool", msgs(U, {**A, "weight": True}), "invalid_weight", 2),
    ("weight-on-user", msgs({**U, "weight": 1}, A), "invalid_weight", 1),
    ("unknown-key", msgs({**U, "colour": "red"}, A), "unknown_key", 1),
    (
        "bad-tools",
        msgs(U, A, tools=[{"type": "function", "function": {"name": "bad name"}}]),
        "invalid_tools",
        None,
    ),
    ("non-utf8", b'{"messages": "\xff\xfe"}\n', "invalid_utf8", None),
    ("unknown-format", line({"prompt": "p", "completion": "c"}), "unknown_format", None),
    ("mixed-formats", dpo_jsonl(1), "mixed_formats", None),
]


@pytest.mark.parametrize(("case", "bad", "code", "message"), BAD, ids=[b[0] for b in BAD])
def test_bad_example_is_located(case: str, bad: bytes, code: str, message: int | None) -> None:
    report = run(GOOD + bad)
    assert not report.ok
    p = report.first_problem
    assert p is not None and (p.code, p.line) == (code, 3), report.problems
    assert (p.example, p.message_index) == (3, message)
    assert "Line 3" in p.message
    assert report.problem_counts == {code: 1}


def test_dpo_problems() -> None:
    two = line(
        {
            "input": {"messages": [U]},
            "preferred_output": [A, A],
            "non_preferred_output": [A],
        }
    )
    report = run(dpo_jsonl(2) + two)
    assert report.first_problem is not None and report.first_problem.code == "invalid_dpo_output"
    aliases = line({"input": {"messages": [U]}, "preferred_completion": [A], "non_preferred_completion": [A]})
    assert run(dpo_jsonl(2) + aliases).ok


def test_good_files_pass() -> None:
    tool_round = msgs(
        {"role": "system", "content": "You call tools."},
        U,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        {**A, "weight": 0},
        {"role": "assistant", "content": [{"type": "text", "text": "Sunny in Oslo."}], "weight": 1},
        tools=[{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
        parallel_tool_calls=False,
    )
    report = run(chat_jsonl(10) + tool_round, expected_format="chat", min_examples=10)
    assert report.ok, report.problems
    assert report.stats.n_examples == 11 and report.stats.format == "chat"
    assert run(dpo_jsonl(12), expected_format="preference").ok


def test_expected_format_and_min_examples() -> None:
    report = run(chat_jsonl(3), expected_format="preference", min_examples=10)
    assert report.problem_counts == {"format_mismatch": 3, "invalid_n_examples": 1}
    assert "method 'dpo'" in report.problems[0].message
    assert "Training file has 3 example(s), but must have at least 10 examples" in report.problems[-1].message


def test_empty_and_blank_files() -> None:
    assert run(b"").problem_counts == {"empty_file": 1}
    assert run(b"\n \n").problem_counts == {"empty_file": 1}
    report = run(chat_jsonl(2) + b"\n")
    assert report.ok and report.stats.n_blank_lines == 1


def test_huge_line_is_reported_without_being_buffered() -> None:
    huge = b'{"messages": "' + b"x" * 5000 + b'"}\n'
    v = StreamingValidator(max_line_bytes=1000)
    for i in range(0, len(GOOD + huge + GOOD), 100):
        v.feed((GOOD + huge + GOOD)[i : i + 100])
        assert len(v._splitter._partial) <= 1000 + 100
    report = v.finish()
    assert report.problem_counts == {"line_too_long": 1}
    assert report.first_problem is not None and report.first_problem.line == 3
    assert report.stats.n_examples == 5


def test_chunking_never_changes_the_report() -> None:
    data = (
        GOOD
        + "é unicode ü".encode()
        + b"\n"
        + msgs({"role": "user", "content": "ü" * 50}, A)
        + b'{"x": [\n'
        + GOOD
    )
    whole = run(data).to_dict()
    for size in (1, 2, 3, 7, 64):
        v = StreamingValidator()
        for i in range(0, len(data), size):
            v.feed(data[i : i + size])
        assert v.finish().to_dict() == whole, size


def test_max_problems_caps_the_list_not_the_counts() -> None:
    report = run(b"[1]\n" * 50, max_problems=5)
    assert len(report.problems) == 5 and report.problem_counts == {"not_a_dict": 50}


def tiny_tokenizer() -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator(
        ["hello there", "hi", "general kenobi"] * 20,
        trainers.BpeTrainer(vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()),
    )
    return tok


def test_stats_are_exact(tmp_path: Path) -> None:
    tok = tiny_tokenizer()
    ex1 = msgs({"role": "system", "content": "hello there"}, U, A)
    empty = msgs(U, {"role": "assistant", "content": "  "})
    data = ex1 + ex1 + empty + msgs(A)
    path = tmp_path / "d.jsonl"
    path.write_bytes(data)
    report = validate_file(path, tokenizer=tok, max_tokens=14, chunk_size=7)
    s = report.stats
    assert report.ok
    assert (s.n_examples, s.n_duplicates, s.n_empty_assistant) == (4, 1, 1)
    assert (s.n_without_system, s.n_without_user) == (2, 1)

    def count(*texts: str) -> int:
        return 3 + 3 * len(texts) + sum(len(tok.encode(t, add_special_tokens=False).ids) for t in texts)

    expected = [count("hello there", "hi", "hello")] * 2 + [count("hi", "  "), count("hello")]
    assert s.tokens_counted and s.total_tokens == sum(expected)
    assert (s.min_tokens, s.max_tokens) == (min(expected), max(expected))
    assert s.n_over_limit == sum(1 for e in expected if e > 14)


def test_token_estimate_without_tokenizer() -> None:
    data = msgs(U, {"role": "assistant", "content": "x" * 40})
    s = run(data).stats
    assert not s.tokens_counted and s.total_tokens == (len(data) - 1) // 4


def test_jsonl_line_checker() -> None:
    c = JsonlLineChecker()
    c.feed(b'{"a": 1}\n{"b"')
    c.feed(b": 2}\n[3]\n")
    p = c.finish()
    assert p is not None and p.line == 3 and "Line 3 is not a dictionary" in p.message
    c = JsonlLineChecker()
    c.feed(b'{"a": 1}')
    assert c.finish() is None
    c = JsonlLineChecker()
    assert (p := c.finish()) is not None and p.code == "empty_file"


class LineByLine(StreamingValidator):
    _FAST = {}  # type: ignore[assignment]  # no typed fast path: every line takes formats.py


@pytest.mark.parametrize(("case", "bad", "code", "message"), BAD, ids=[b[0] for b in BAD])
def test_line_by_line_path_reports_the_same(case: str, bad: bytes, code: str, message: int | None) -> None:
    slow = LineByLine()
    slow.feed(GOOD + bad)
    assert slow.finish().to_dict() == run(GOOD + bad).to_dict()


def test_fast_and_line_by_line_paths_agree_on_stats() -> None:
    """Blocks of clean examples take the typed fast path; the same data fed line by line must match."""
    empty_out = line(
        {
            "input": {"messages": [{"role": "system", "content": "s"}, U]},
            "preferred_output": [{"role": "assistant", "content": " "}],
            "non_preferred_output": [{"role": "assistant", "content": ""}],
        }
    )
    for data in (
        dpo_jsonl(5) + empty_out * 3 + dpo_jsonl(4),
        chat_jsonl(20) + msgs(U, {"role": "assistant", "content": ""}),
    ):
        fast = run(data).to_dict()
        slow = LineByLine()
        slow.feed(data)
        assert slow.finish().to_dict() == fast
    s = run(dpo_jsonl(5) + empty_out * 3).stats
    assert (s.n_empty_assistant, s.n_without_system, s.n_duplicates) == (6, 5, 2)
