"""Structured output (issue #15): ``--schema`` and ``--grammar`` on the demo model.

The constrained replies run on the real Gemma 3 270M through llama.cpp's grammar sampler;
even this small base model must produce JSON that validates. The CLI runs are real
subprocesses (each loads the demo model), kept to the cases only the CLI can show: exit
codes, ``--json``'s ``data``, and what the history keeps.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_cli

from gemma_chat.chat.conversation import Conversation, StopReason
from gemma_chat.config.settings import Sampling
from gemma_chat.errors import UsageError
from gemma_chat.generation.engine import Engine
from gemma_chat.history.store import HistoryStore
from gemma_chat.structured.concise import concise_schema
from gemma_chat.structured.constraint import OutputConstraint, parse_schema
from gemma_chat.structured.validate import InvalidReply, parse_reply

# An object with an enum, an integer and an array: the test schema. The bounds
# (maxItems, maxLength) keep the greedy base model from looping inside the array.
PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 24},
        "age": {"type": "integer"},
        "mood": {"enum": ["happy", "sad", "neutral"]},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 16}, "maxItems": 3},
    },
    "required": ["name", "age", "mood", "tags"],
    "additionalProperties": False,
}
QUESTION = "Describe Alice, a happy 30 year old who likes cats, as JSON."


def _reply(backend, constraint: OutputConstraint, max_tokens: int = 96, **sampling: object):
    engine = Engine(
        backend,
        Sampling(temperature=0.0, seed=1, max_tokens=max_tokens).model_copy(update=sampling),
        constraint=constraint,
    )
    conversation = Conversation()
    conversation.add_user(QUESTION)
    return engine.reply(conversation)


@pytest.mark.slow
@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_schema_reply_validates_and_ends_with_end_of_turn(demo_backend, temperature) -> None:
    constraint = parse_schema(json.dumps(PERSON))
    done = _reply(demo_backend, constraint, temperature=temperature)
    # The turn ended by itself once the JSON was whole: <end_of_turn> stayed reachable.
    assert done.stop_reason is StopReason.END_OF_TURN, done.text
    assert done.stats.completion_tokens < 96
    data = parse_reply(done.text, constraint)
    assert set(data) == {"name", "age", "mood", "tags"}
    assert isinstance(data["age"], int) and data["mood"] in ("happy", "sad", "neutral")


@pytest.mark.slow
def test_concise_schema_reply_validates(demo_backend) -> None:
    constraint = parse_schema("name, age int, mood happy|sad")
    done = _reply(demo_backend, constraint)
    assert done.stop_reason is StopReason.END_OF_TURN, done.text
    assert set(parse_reply(done.text, constraint)) == {"name", "age", "mood"}


@pytest.mark.slow
def test_grammar_constrains_the_reply(demo_backend) -> None:
    constraint = OutputConstraint(grammar='root ::= "yes" | "no"', label="yn.gbnf")
    done = _reply(demo_backend, constraint)
    assert done.text in ("yes", "no")
    assert done.stop_reason is StopReason.END_OF_TURN


@pytest.mark.slow
def test_unconstrained_reply_is_not_json(demo_backend) -> None:
    # The control: without the grammar the base model does not answer in JSON, so the
    # tests above prove the constraint, not the prompt.
    engine = Engine(demo_backend, Sampling(temperature=0.0, seed=1, max_tokens=24))
    conversation = Conversation()
    conversation.add_user(QUESTION)
    done = engine.reply(conversation)
    with pytest.raises(InvalidReply):
        parse_reply(done.text, parse_schema(json.dumps(PERSON)))


def test_concise_form() -> None:
    schema = concise_schema(
        "name, age int, score float\nok bool, mood happy|sad, tags: list of keywords"
    )
    props = schema["properties"]
    assert props["name"] == {"type": "string"}
    assert props["age"] == {"type": "integer"}
    assert props["score"] == {"type": "number"}
    assert props["ok"] == {"type": "boolean"}
    assert props["mood"] == {"type": "string", "enum": ["happy", "sad"]}
    assert props["tags"] == {
        "type": "array",
        "items": {"type": "string"},
        "description": "list of keywords",
    }
    assert schema["required"] == ["name", "age", "score", "ok", "mood", "tags"]
    assert concise_schema("ids list of int")["properties"]["ids"]["items"] == {"type": "integer"}
    assert concise_schema("bio: a short bio")["properties"]["bio"] == {
        "type": "string",
        "description": "a short bio",
    }
    # A description in double quotes may hold commas and new lines.
    quoted = concise_schema('summary: "two sentences, no more\nplain words", n int')
    assert quoted["properties"]["summary"]["description"] == "two sentences, no more\nplain words"
    assert quoted["required"] == ["summary", "n"]


@pytest.mark.parametrize(
    "text, message",
    [
        ("age years", "unknown type 'years'"),
        ("tags list of things", "unknown type 'things'"),
        ("name, name", "given twice"),
        ("9lives int", "not a field name"),
        (" , ", "no fields"),
        ('summary: "open, never closed', "left open"),
    ],
)
def test_concise_form_errors(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        concise_schema(text)


def test_validation_messages() -> None:
    constraint = parse_schema("name, age int")
    assert parse_reply('{"name": "a", "age": 3} ', constraint) == {"name": "a", "age": 3}
    with pytest.raises(InvalidReply, match="ends before the JSON is complete"):
        parse_reply('{"name": "a", "age":', constraint)
    with pytest.raises(InvalidReply, match="at age: 'x' is not of type 'integer'"):
        parse_reply('{"name": "a", "age": "x"}', constraint)
    with pytest.raises(InvalidReply, match="not valid JSON"):
        parse_reply("Sure! Here it is", constraint)
    # A grammar has nothing to validate on the client.
    assert parse_reply("anything", OutputConstraint(grammar='root ::= "a"')) is None


def _one_line_error(proc, code: int, text: str) -> str:
    err = proc.stderr.decode()
    assert proc.returncode == code, err
    assert err.count("\n") == 1 and err.startswith("gemma-chat: "), err
    assert text in err
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--schema", '{"type": "object",'], "the inline schema is not valid JSON"),
        (["--schema", "name, age years"], "unknown type 'years' for 'age'"),
        (["--schema", "@missing.json"], "no such file"),
        (["--schema", '{"type": 12}'], "not a valid JSON Schema"),
        (["--schema", "name", "--grammar", "g.gbnf"], "cannot be used together"),
        (["--grammar", "missing.gbnf"], "no such file"),
    ],
)
def test_bad_schema_input_is_a_usage_error(args: list[str], message: str) -> None:
    # Checked before any model loads (no model is even found here): one line, exit 2.
    proc = run_cli("ask", "-m", "/nonexistent.gguf", *args, "question")
    _one_line_error(proc, 2, message)


def test_malformed_schema_file_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "s.json").write_text('{"type": "object", "properties": {')
    proc = run_cli("ask", "--schema", f"@{tmp_path / 's.json'}", "q")
    _one_line_error(proc, 2, "the schema file s.json is not valid JSON")


def _stored_reply() -> tuple[str, str | None, bool]:
    with HistoryStore() as store:
        record = store.latest()
        assert record is not None
        reply = store.messages(record.id)[-1]
    assert reply.role == "model"
    return reply.text, reply.stop_reason, reply.partial


@pytest.mark.slow
def test_ask_json_has_the_validated_data(demo_path) -> None:
    proc = run_cli(
        "ask", "--temp", "0", "-n", "96", "--schema", json.dumps(PERSON), "--json", QUESTION
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["stop_reason"] == "end_of_turn"
    assert result["data"] == json.loads(result["text"])
    assert set(result["data"]) == {"name", "age", "mood", "tags"}
    assert "error" not in result


@pytest.mark.slow
def test_max_tokens_cut_is_a_clean_error_and_the_reply_is_kept(demo_path) -> None:
    proc = run_cli("ask", "--temp", "0", "-n", "6", "--schema", "name, age int", QUESTION)
    _one_line_error(proc, 1, "cut off (max tokens) before its JSON was complete")
    printed = proc.stdout.decode()
    assert printed.startswith("{")  # what arrived was printed
    text, stop_reason, partial = _stored_reply()
    assert text.startswith("{") and stop_reason == "max_tokens" and partial


@pytest.mark.slow
def test_grammar_over_the_cli_and_a_grammar_that_does_not_parse(demo_path, tmp_path) -> None:
    good = tmp_path / "yn.gbnf"
    good.write_text('root ::= "yes" | "no"\n')
    proc = run_cli("ask", "--temp", "0", "--grammar", str(good), "Is the sky blue?")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode() in ("yes\n", "no\n")
    bad = tmp_path / "bad.gbnf"
    bad.write_text('root ::= "yes" | undefined-rule\n# \x1b]0;pwned\x07\n')
    proc = run_cli("ask", "--grammar", str(bad), "Is the sky blue?")
    err = _one_line_error(proc, 2, "Undefined rule identifier 'undefined-rule'")
    # llama.cpp prints the grammar itself to stderr: captured, never shown.
    assert "pwned" not in err and "\x1b" not in err
    with HistoryStore() as store:  # the unanswerable question was taken back
        record = store.latest()
        assert record is not None and store.messages(record.id)[-1].role == "model"


@pytest.mark.parametrize(("temperature", "top_k"), [(0.0, 64), (1.0, 8)])
def test_the_shortlist_samples_the_same_tokens_as_the_full_pass(
    demo_backend, temperature, top_k, monkeypatch
) -> None:
    """A refused token is sampled again from the best tokens the grammar allows when
    that is exact (greedy, top-k): the reply is token for token the one the
    whole-vocabulary pass gives, with the same seed."""
    from gemma_chat.backend import grammar

    samplers: list[grammar.GrammarSampler] = []
    close = grammar.GrammarSampler.close

    def kept(self: grammar.GrammarSampler) -> None:
        samplers.append(self)
        close(self)

    monkeypatch.setattr(grammar.GrammarSampler, "close", kept)
    constraint = parse_schema(json.dumps(PERSON))
    sampling = {"max_tokens": 24, "temperature": temperature, "top_k": top_k}
    fast = _reply(demo_backend, constraint, **sampling)
    monkeypatch.setattr(grammar, "allowed_needed", lambda sampling: None)
    full = _reply(demo_backend, constraint, **sampling)
    assert fast.token_ids == full.token_ids and fast.text == full.text
    shortlisted, whole = samplers
    assert shortlisted.resampled == whole.resampled > 0
    assert shortlisted.full_passes < shortlisted.resampled  # the shortlist did the work
    assert whole.full_passes == whole.resampled


def test_the_shortlist_is_exact_only_for_greedy_or_top_k_without_a_penalty() -> None:
    from gemma_chat.backend.grammar import SHORTLIST, allowed_needed

    assert allowed_needed(Sampling(temperature=0.0)) == 1
    assert allowed_needed(Sampling(temperature=0.7, top_k=40)) == 40
    assert allowed_needed(Sampling(temperature=0.7, top_k=0)) is None  # every token counts
    assert allowed_needed(Sampling(temperature=0.7, top_k=SHORTLIST)) is None
    assert allowed_needed(Sampling(temperature=0.0, repeat_penalty=1.1)) is None
    assert allowed_needed(None) is None


def test_the_shortlist_gives_way_when_it_holds_fewer_allowed_tokens_than_top_k(
    demo_backend,
) -> None:
    """Digits only, and just one digit among the best 1,024 tokens: top-k 8 needs the 8
    best digits, which lie outside, so the shortlist gives way to the full pass; greedy
    needs only the best one, which it holds."""
    import numpy as np
    from llama_cpp._internals import LlamaSampler

    from gemma_chat.backend.grammar import SHORTLIST, GrammarSampler

    llm = demo_backend.llama
    sampler = GrammarSampler(llm._model, "root ::= [0-9]+")
    try:
        n_vocab = llm.n_vocab()
        digits = [llm.tokenize(str(d).encode(), add_bos=False, special=False)[0] for d in range(10)]
        logits = np.zeros(n_vocab, dtype=np.single)
        logits[np.arange(SHORTLIST) + 1000] = 10.0  # the best tokens: none is a digit...
        logits[digits[0]] = 11.0  # ...but one
        top_k = LlamaSampler()
        top_k.add_top_k(8)
        top_k.add_dist(1)
        assert sampler._from_shortlist(top_k, logits, 8) is None
        greedy = LlamaSampler()
        greedy.add_greedy()
        assert sampler._from_shortlist(greedy, logits, 1) == digits[0]
    finally:
        sampler.close()
