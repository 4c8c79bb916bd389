"""Map-reduce over inputs larger than the context: the split, the exact prompts of every
call (a scripted backend with the real Gemma 3 vocabulary records them), reduce rounds,
cancelling during the map, and a failing call that ends the run."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

from gemma_chat.backend.scripted import ScriptedBackend
from gemma_chat.backend.sse import RemoteError
from gemma_chat.chat.conversation import Role, Turn
from gemma_chat.chat.template import GemmaTemplate
from gemma_chat.config.settings import Sampling
from gemma_chat.generation.engine import Engine
from gemma_chat.generation.events import TextDelta
from gemma_chat.longinput.runner import LongDone, MapReduce, StepFinished, StepStarted
from gemma_chat.longinput.split import Source, split_text

N_CTX = 512
MAX_TOKENS = 32
QUESTION = "Which crate holds the most pears?"
INSTRUCTION = "Answer from this part alone; if it holds nothing that helps, say so in one line."


class RecordingBackend(ScriptedBackend):
    """A scripted backend that keeps every prompt it was given, and can fail or stop."""

    def __init__(self, *args, fail_at: int | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.prompts: list[list[int]] = []
        self.fail_at = fail_at
        self.on_start: list = []

    def generate(self, prompt: Sequence[int], *args, **kwargs) -> Iterator[int]:
        self.prompts.append(list(prompt))
        for hook in self.on_start:
            hook(len(self.prompts))
        if self.fail_at is not None and len(self.prompts) == self.fail_at:
            raise RemoteError("the server closed the connection")
        return super().generate(prompt, *args, **kwargs)


def long_text(paragraphs: int = 90) -> str:
    """About 5x a 512-token context, in paragraphs of three lines."""
    out = []
    for i in range(paragraphs):
        out.append(
            f"Crate {i} holds {i * 3 % 17} pears.\nIt was packed on day {i}.\n"
            f"The label says lot {1000 + i}."
        )
    return "\n\n".join(out) + "\n"


def engine_on(
    vocab, replies, max_tokens: int = MAX_TOKENS, **kwargs
) -> tuple[Engine, RecordingBackend]:
    backend = RecordingBackend(vocab, replies, n_ctx=N_CTX, **kwargs)
    return Engine(backend, Sampling(temperature=0.0, seed=1, max_tokens=max_tokens)), backend


def run_all(runner: MapReduce, cancel: threading.Event | None = None) -> tuple[list, LongDone]:
    events = list(runner.run(cancel))
    assert isinstance(events[-1], LongDone)
    return events, events[-1]


def test_split_keeps_paragraphs_whole_and_every_part_fits(vocab) -> None:
    text = long_text()
    count = lambda t: len(vocab.tokenize(t))  # noqa: E731
    parts = split_text(text, 120, count)
    assert len(parts) > 5
    assert "".join(parts) == text  # nothing lost, nothing added
    assert all(count(part) <= 120 for part in parts)
    # Every part ends at a paragraph boundary (the last one at the end of the text).
    assert all(part.endswith("\n\n") for part in parts[:-1])


def test_a_line_too_long_is_cut_at_spaces_then_anywhere(vocab) -> None:
    count = lambda t: len(vocab.tokenize(t))  # noqa: E731
    line = " ".join(f"word{i}" for i in range(400))
    parts = split_text(line, 50, count)
    assert "".join(parts) == line and all(count(p) <= 50 for p in parts)
    assert all(p.endswith(" ") for p in parts[:-1])  # cut after a space
    blob = "x" * 3000  # no space at all
    parts = split_text(blob, 50, count)
    assert "".join(parts) == blob and all(count(p) <= 50 for p in parts)


def test_exact_prompts_of_map_and_reduce_on_input_five_times_the_context(vocab) -> None:
    engine, backend = engine_on(vocab, lambda n: f"note {n}")
    text = long_text()
    runner = MapReduce(engine, [Source("crates.txt", text)], QUESTION)
    assert runner.plan.input_tokens >= 5 * N_CTX
    events, result = run_all(runner)
    chunks = runner.plan.chunks
    n = len(chunks)
    assert n >= 5 and result.failed is None and not result.cancelled
    assert "\n\n".join(c.text for c in chunks) == text.strip("\n")  # every line, once
    template = GemmaTemplate(vocab)
    for i, chunk in enumerate(chunks):
        expected = (
            f"part {i + 1} of {n} of crates.txt\n```\n{chunk.text}\n```\n\n{QUESTION}\n"
            f"{INSTRUCTION}"
        )
        assert backend.prompts[i] == template.render([Turn(Role.USER, expected)])
        assert len(backend.prompts[i]) <= N_CTX - MAX_TOKENS
    notes = "\n\n".join(f"part {i + 1} of {n} of crates.txt:\nnote {i}" for i in range(n))
    final = (
        f"Notes on crates.txt, one for each part:\n\n{notes}\n\nAnswer from these notes: {QUESTION}"
    )
    assert backend.prompts[n] == template.render([Turn(Role.USER, final)])
    assert len(backend.prompts) == n + 1 == runner.plan.min_calls
    # Only the last call's text streams out; every call is reported.
    answer = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert answer == f"note {n}" == result.done.text
    started = [e for e in events if isinstance(e, StepStarted)]
    assert [e.kind for e in started] == ["map"] * n + ["reduce"]
    assert [e.step.stop_reason for e in events if isinstance(e, StepFinished)] == [
        "end_of_turn"
    ] * (n + 1)


def test_notes_that_do_not_fit_are_reduced_in_rounds(vocab) -> None:
    # Every note is as long as a note may be, so the notes need more than one prompt.
    long_note = " ".join(f"pear{i}" for i in range(300))  # never a repeating span
    engine, backend = engine_on(
        vocab, lambda n: long_note if n < 50 else "the answer", max_tokens=1024
    )  # the reserve is a quarter of the context: 128 tokens
    runner = MapReduce(engine, [Source("crates.txt", long_text())], QUESTION)
    _events, result = run_all(runner)
    kinds = [s.kind for s in result.steps]
    n = len(runner.plan.chunks)
    assert kinds[:n] == ["map"] * n and kinds.count("reduce") >= 2
    notes = [s for s in result.steps if s.title != "the answer"]
    assert all(s.completion_tokens == 128 for s in notes)  # a note is at most the reserve
    assert len(result.steps) <= runner.plan.max_calls
    assert all(len(p) <= N_CTX - 128 for p in backend.prompts)
    combine = next(s for s in result.steps if s.kind == "reduce")
    assert combine.title.startswith("notes on parts 1-")
    assert result.steps[-1].title == "the answer" and result.failed is None


def test_cancel_during_the_map_stops_the_whole_run(vocab) -> None:
    cancel = threading.Event()
    engine, backend = engine_on(vocab, lambda n: f"note {n} " * 4, delay_s=0.01)
    backend.on_start.append(lambda calls: cancel.set() if calls == 3 else None)
    runner = MapReduce(engine, [Source("crates.txt", long_text())], QUESTION)
    events, result = run_all(runner, cancel)
    assert result.cancelled and result.failed is None
    assert len(backend.prompts) == 3  # no call after the cancel
    assert [s.stop_reason for s in result.steps] == ["end_of_turn", "end_of_turn", "cancelled"]
    assert [s.text for s in result.steps[:2]] == ["note 0 " * 4, "note 1 " * 4]
    assert not any(isinstance(e, TextDelta) for e in events)  # no answer was started


def test_a_failing_call_ends_the_run_and_is_reported(vocab) -> None:
    engine, backend = engine_on(vocab, lambda n: f"note {n}", fail_at=3)
    runner = MapReduce(engine, [Source("crates.txt", long_text())], QUESTION)
    _, result = run_all(runner)
    assert len(backend.prompts) == 3 and len(result.steps) == 3  # nothing after it
    assert result.failed is result.steps[-1]
    assert result.failed.stop_reason == "failed"
    assert "closed the connection" in (result.failed.error or "")
    assert result.failed.title == f"part 3 of {len(runner.plan.chunks)} of crates.txt"


def test_the_progress_bar_only_on_a_terminal() -> None:
    import io

    from gemma_chat.cli.long_ask import ProgressBar

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty, pipe = Terminal(), io.StringIO()
    for stream in (tty, pipe):
        bar = ProgressBar(stream)
        bar.update(StepStarted(3, 11, "map", "part 3 of 9 of \x1b]0;x\x07.log"))
        bar.clear()
    assert pipe.getvalue() == ""
    assert tty.getvalue() == (
        "\r\x1b[2K[###-----------------] 3/11 map: part 3 of 9 of ␛]0;x␇.log\r\x1b[2K"
    )
