"""The streaming training-data validator: used at upload, by fine-tuning jobs and by `ftapi validate`.

Push-based (`feed(chunk)` then `finish()`), so a caller can validate bytes while it streams them to
storage; memory holds one line plus a few bytes per example. Torch-free: api/ imports it.
Token counting is batched (`Tokenizer.encode_batch` runs on every core).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from trainer.data.formats import ExampleInfo, check_chat, check_preference, detect_format
from trainer.data.lines import (
    MAX_JSON_DEPTH,
    JsonlLineChecker,
    Line,
    LineSplitter,
    decode_line,
    line_too_long,
    openers_per_line,
)
from trainer.data.problems import Problem
from trainer.data.stats import TOKENS_PER_EXAMPLE, TOKENS_PER_MESSAGE, DataStats, TokenLengths
from trainer.data.typed import (
    CHAT_BLOCK,
    EMPTY_ASSISTANT,
    HAS_SYSTEM,
    HAS_USER,
    NOT_CLEAN,
    PREFERENCE_BLOCK,
    clean_chat,
    clean_preference,
    n_messages,
)

if TYPE_CHECKING:
    from tokenizers import Tokenizer

__all__ = [
    "DataStats",
    "JsonlLineChecker",
    "Problem",
    "StreamingValidator",
    "ValidationReport",
    "validate_file",
]

Format = Literal["chat", "preference"]
_METHOD = {"chat": "supervised", "preference": "dpo"}
_TOKEN_BATCH = 4096


@dataclass
class ValidationReport:
    problems: list[Problem]
    problem_counts: dict[str, int]
    stats: DataStats
    first_problem: Problem | None = field(default=None)

    @property
    def ok(self) -> bool:
        return not self.problem_counts

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "problems": [p.to_dict() for p in self.problems],
            "problem_counts": self.problem_counts,
            "stats": self.stats.to_dict(),
        }

    def format_text(self) -> str:
        s = self.stats
        out = [f"{'OK' if self.ok else 'INVALID'}: {s.n_examples} example(s), format {s.format or 'unknown'}"]
        if self.problems:
            out.append("")
            out.append(f"Problems ({sum(self.problem_counts.values())} in all):")
            out += [f"  {p.message}" for p in self.problems]
            out.append("  by kind: " + ", ".join(f"{k}={v}" for k, v in sorted(self.problem_counts.items())))
        how = (
            "counted"
            if s.tokens_counted
            else "estimated as line bytes / 4; pass --tokenizer for exact counts"
        )
        out += [
            "",
            f"Tokens per example ({how}): min {s.min_tokens}, mean {s.mean_tokens}, p50 {s.p50_tokens}, "
            f"p95 {s.p95_tokens}, max {s.max_tokens}; total {s.total_tokens}",
        ]
        if s.max_tokens_limit is not None:
            out.append(f"Examples over {s.max_tokens_limit} tokens: {s.n_over_limit}")
        out += [
            f"Exact duplicates: {s.n_duplicates}",
            f"Empty assistant turns: {s.n_empty_assistant}",
            f"Examples without a system message: {s.n_without_system}; "
            f"without a user message: {s.n_without_user}",
        ]
        if s.n_blank_lines:
            out.append(f"Blank lines (ignored): {s.n_blank_lines}")
        return "\n".join(out)


@dataclass
class RangeResult:
    """What one validator saw, to be merged with the results of the ranges after it."""

    problems: list[Problem]
    counts: Counter[str]
    stats: DataStats
    hashes: set[int]
    lengths: TokenLengths


def _maybe_too_deep(block: bytes) -> set[int]:
    """Indexes of the block's lines with more than MAX_JSON_DEPTH openers (`[`, `{`): only those
    can nest too deep, and the slow path measures them (and words the problem). Counted in C over
    the whole block; it still costs the fast path about 7-10% (bench figures in the README)."""
    counts = openers_per_line(block)
    counts[0] -= 1  # the block's own "["
    if max(counts) <= MAX_JSON_DEPTH:
        return set()
    return {i for i, n in enumerate(counts) if n > MAX_JSON_DEPTH}


class StreamingValidator:
    _FAST: dict[str, tuple[Any, Any]] = {
        "chat": (CHAT_BLOCK, clean_chat),
        "preference": (PREFERENCE_BLOCK, clean_preference),
    }

    def __init__(
        self,
        *,
        expected_format: Format | None = None,
        tokenizer: Tokenizer | None = None,
        max_tokens: int | None = None,
        max_problems: int = 20,
        min_examples: int | None = None,
        count_tokens: bool = True,
        max_line_bytes: int = 16 * 1024 * 1024,
        first_line: int = 1,
        initial_format: Format | None = None,
    ) -> None:
        """`first_line` and `initial_format` let a validator take over in the middle of a file
        (trainer.data.parallel): numbering continues there, and the format is the file's."""
        self.expected_format = expected_format
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens
        self.max_problems = max_problems
        self.min_examples = min_examples
        self.count_tokens = count_tokens
        self._splitter = LineSplitter(max_line_bytes, first_line=first_line)
        self._decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder()
        self.stats = DataStats(format=expected_format or initial_format, tokens_counted=tokenizer is not None)
        self._problems: list[Problem] = []
        self._counts: Counter[str] = Counter()
        self._seen: set[int] = set()
        self._lengths = TokenLengths()
        self._pending_texts: list[str] = []
        self._pending_examples: list[tuple[int, int]] = []  # (number of texts, number of messages)

    def _problem(self, problem: Problem) -> None:
        self._counts[problem.code] += 1
        if len(self._problems) < self.max_problems:
            self._problems.append(problem)

    def feed(self, chunk: bytes) -> None:
        self._block(*self._splitter.feed(chunk))

    def _block(self, first: int, lines: list[bytes | None]) -> None:
        """Fast path: one typed decode for the whole block; anything unclean goes line by line."""
        while self.stats.format is None and lines:
            # The format is set by the first example; until then, go line by line.
            self._one(first, lines[0])
            first, lines = first + 1, lines[1:]
        fast = self._FAST.get(self.stats.format or "")
        if fast is None or not lines or not all(lines):
            for number, data in enumerate(lines, first):
                self._one(number, data)
            return
        decoder, clean = fast
        # One line of the block per text line (JSON whitespace), so openers can be counted per line.
        block = b"[" + b",\n".join(lines) + b"]"  # type: ignore[arg-type]
        try:
            examples = decoder.decode(block)
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
            examples = None
        # Equal counts also rule out a line holding two JSON values ("{...}, {...}").
        if examples is None or len(examples) != len(lines):
            for number, data in enumerate(lines, first):
                self._one(number, data)
            return
        deep = _maybe_too_deep(block)
        if not deep and not (self.count_tokens and self.tokenizer is not None):
            block_flags = [clean(example, None) for example in examples]
            if min(block_flags) >= 0:  # the common case: tally the whole block with C-level helpers
                self._tally_block(block_flags, lines)  # type: ignore[arg-type]
                return
        want_texts = self.count_tokens and self.tokenizer is not None
        clean_flags: list[int] = []
        clean_lines: list[bytes] = []
        for i, (data, example) in enumerate(zip(lines, examples, strict=True)):
            number = first + i
            texts: list[str] | None = [] if want_texts else None
            flags = NOT_CLEAN if i in deep else clean(example, texts)
            if flags < 0:
                # Tally what came before first, so that this example gets the right number.
                self._tally_block(clean_flags, clean_lines)
                clean_flags, clean_lines = [], []
                self._one(number, data)
                continue
            clean_flags.append(flags)
            clean_lines.append(data)  # type: ignore[arg-type]
            if texts is not None:
                self._queue_tokens(texts, n_messages(example))
        self._tally_block(clean_flags, clean_lines)

    def _tally_block(self, flags: list[int], lines: list[bytes]) -> None:
        """Statistics of clean examples from the fast path, in one pass of C-level helpers."""
        if not flags:
            return
        stats = self.stats
        stats.n_examples += len(flags)
        self._count_duplicates(lines)
        if self.count_tokens and self.tokenizer is None:
            self._lengths.values.extend(len(d) // 4 for d in lines)
        for value, count in Counter(flags).items():
            stats.n_empty_assistant += (value // EMPTY_ASSISTANT) * count
            stats.n_without_system += 0 if value & HAS_SYSTEM else count
            stats.n_without_user += 0 if value & HAS_USER else count

    def _one(self, number: int, data: bytes | None) -> None:
        if data is None:
            self.stats.n_examples += 1
            self._problem(line_too_long(number, self._splitter.max_line_bytes))
        else:
            self._line(Line(number, data))

    def _line(self, line: Line) -> None:
        """The authoritative check of one line (formats.py words every problem)."""
        if not line.data.strip():
            self.stats.n_blank_lines += 1
            return
        self.stats.n_examples += 1
        example = self.stats.n_examples
        obj, problem = decode_line(line, self._decoder)
        if problem is not None:
            self._problem(Problem(line.number, example, None, problem.code, problem.message))
            return
        assert isinstance(obj, dict)
        fmt = detect_format(obj)
        if fmt is None:
            self._example_problem(
                line,
                example,
                None,
                "unknown_format",
                "the example has neither 'messages' (chat format) nor 'input' and "
                "'preferred_output' (preference format)",
            )
            return
        if self.stats.format is None:
            self.stats.format = fmt
        elif fmt != self.stats.format:
            if self.expected_format is not None:
                self._example_problem(
                    line,
                    example,
                    None,
                    "format_mismatch",
                    f"the example is in the {fmt} format, but the job uses method "
                    f"'{_METHOD[self.expected_format]}' ({self.expected_format} format)",
                )
            else:
                self._example_problem(
                    line,
                    example,
                    None,
                    "mixed_formats",
                    f"the example is in the {fmt} format, but earlier examples are in the "
                    f"{self.stats.format} format",
                )
            return
        info = check_chat(obj) if fmt == "chat" else check_preference(obj)
        for message, code, reason in info.problems:
            self._example_problem(line, example, message, code, reason)
        if not info.problems:
            self._collect(line.data, info)

    def _example_problem(self, line: Line, example: int, message: int | None, code: str, reason: str) -> None:
        where = f"Line {line.number}, example {example}" + (f", message {message}" if message else "")
        self._problem(Problem(line.number, example, message, code, f"{where}: {reason}"))

    def _collect(self, data: bytes, info: ExampleInfo) -> None:
        """Statistics of one valid example checked by the slow path."""
        stats = self.stats
        self._count_duplicates([data])
        stats.n_empty_assistant += info.n_empty_assistant
        stats.n_without_system += not info.has_system
        stats.n_without_user += not info.has_user
        if not self.count_tokens:
            return
        if self.tokenizer is None:
            self._lengths.add(len(data) // 4)
        else:
            self._queue_tokens(info.texts, info.n_messages)

    def _count_duplicates(self, lines: list[bytes]) -> None:
        # Byte-identical lines; 64-bit hashes keep memory per example small.
        before = len(self._seen)
        self._seen.update(map(hash, lines))
        self.stats.n_duplicates += len(lines) - (len(self._seen) - before)

    def _queue_tokens(self, texts: list[str], n_messages: int) -> None:
        self._pending_texts += texts
        self._pending_examples.append((len(texts), TOKENS_PER_EXAMPLE + TOKENS_PER_MESSAGE * n_messages))
        if len(self._pending_texts) >= _TOKEN_BATCH:
            self._flush_tokens()

    def _flush_tokens(self) -> None:
        if not self._pending_examples:
            return
        assert self.tokenizer is not None
        encode = getattr(self.tokenizer, "encode_batch_fast", self.tokenizer.encode_batch)
        counts = [len(e.ids) for e in encode(self._pending_texts, add_special_tokens=False)]
        i = 0
        for n_texts, overhead in self._pending_examples:
            self._lengths.add(overhead + sum(counts[i : i + n_texts]))
            i += n_texts
        self._pending_texts.clear()
        self._pending_examples.clear()

    def finish_range(self) -> RangeResult:
        """End of this validator's bytes, without the whole-file checks (see trainer.data.parallel)."""
        self._block(*self._splitter.finish())
        self._flush_tokens()
        return RangeResult(self._problems, self._counts, self.stats, self._seen, self._lengths)

    def finish(self) -> ValidationReport:
        self.finish_range()
        return self.conclude()

    def conclude(self) -> ValidationReport:
        """Whole-file checks and the report."""
        if self.stats.n_examples == 0:
            self._problem(Problem(0, None, None, "empty_file", "The file is empty: it has no examples."))
        elif self.min_examples is not None and self.stats.n_examples < self.min_examples:
            self._problem(
                Problem(
                    0,
                    None,
                    None,
                    "invalid_n_examples",
                    f"Training file has {self.stats.n_examples} example(s), but must have at least "
                    f"{self.min_examples} examples",
                )
            )
        self._lengths.fill(self.stats, self.max_tokens)
        self._problems.sort(key=lambda p: p.line or float("inf"))  # file-level problems last
        return ValidationReport(
            problems=list(self._problems),
            problem_counts=dict(self._counts),
            stats=self.stats,
            first_problem=self._problems[0] if self._problems else None,
        )


def validate_file(path: str | Path, *, chunk_size: int = 1 << 20, **kwargs: Any) -> ValidationReport:
    validator = StreamingValidator(**kwargs)
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            validator.feed(chunk)
    return validator.finish()


def load_tokenizer(path_or_dir: str | Path) -> Tokenizer:
    """A Hugging Face `tokenizer.json`, or a model directory that holds one (no download, ever)."""
    from tokenizers import Tokenizer

    path = Path(path_or_dir)
    if path.is_dir():
        path = path / "tokenizer.json"
    return Tokenizer.from_file(str(path))
