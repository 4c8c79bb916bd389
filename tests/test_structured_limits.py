"""Schemas and grammars that would crash or confuse llama.cpp or the validator are refused
up front, and a reply the validator cannot check is a clean one-line error with the reply
kept (review findings F1 and F2 of issue #15)."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli
from test_remote_schema import _ask, strict  # noqa: F401  (a fixture)

from gemma_chat.errors import UsageError
from gemma_chat.history.store import HistoryStore
from gemma_chat.structured.constraint import OutputConstraint, parse_schema
from gemma_chat.structured.grammar_depth import MAX_NESTING, nesting
from gemma_chat.structured.validate import InvalidReply, parse_reply

TREE = {"$defs": {"n": {"type": "array", "items": {"$ref": "#/$defs/n"}}}, "$ref": "#/$defs/n"}
"""A legitimate recursive schema: nested lists."""


def test_nesting_counts_groups_not_parentheses_in_strings_classes_or_comments() -> None:
    assert nesting('root ::= ("a" ("b")?)?') == 2
    assert nesting('root ::= "((((" [(((] x # ((((\nx ::= "\\"(" ("y")') == 1
    assert nesting("root ::= " + "(" * 3000 + '"a"' + ")" * 3000) == 3000


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ({"$ref": "#"}, "refers back to itself"),
        ({"$defs": {"a": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"}, "refers back to itself"),
        ({"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}}, "itself"),
        ({"$ref": "#/$defs/zz"}, "points at nothing"),
        ({"$ref": "https://example.com/x.json"}, "only references inside the schema"),
        ({"$ref": "#anchor"}, "not a JSON pointer"),
    ],
)
def test_refs_that_loop_dangle_or_leave_the_schema_are_usage_errors(schema, message) -> None:
    with pytest.raises(UsageError, match=message):
        parse_schema(json.dumps(schema))


def test_a_recursive_schema_is_taken_and_a_deep_reply_is_one_clean_error() -> None:
    constraint = parse_schema(json.dumps(TREE))
    assert parse_reply("[[], [[]]]", constraint) == [[], [[]]]
    deep = "[" * 400 + "]" * 400  # json.loads takes it; the validator recursed past the limit
    with pytest.raises(InvalidReply, match="nested too deeply to check"):
        parse_reply(deep, constraint)


def test_a_deep_grammar_file_is_refused_before_llama_cpp_parses_it(tmp_path) -> None:
    grammar = tmp_path / "deep.gbnf"
    n = 200_000  # segfaulted llama.cpp's parser (exit 139) before
    grammar.write_text("root ::= " + "(" * n + '"a"' + ")" * n + "\n")
    proc = run_cli("ask", "--model", "demo", "--no-save", "--grammar", str(grammar), "hi")
    err = proc.stderr.decode()
    assert proc.returncode == 2, err
    assert len(err.splitlines()) == 1 and f"({MAX_NESTING})" in err


def test_a_schema_unrolled_too_deep_is_refused_not_a_crash(demo_path) -> None:
    schema = '{"type": "string", "maxLength": 100000}'
    proc = run_cli(
        "ask", "--model", str(demo_path), "-n", "4", "--no-save", "--schema", schema, "hi"
    )
    err = proc.stderr.decode()
    assert proc.returncode == 2, err
    assert len(err.splitlines()) == 1 and "maxLength" in err


def test_a_reply_the_validator_cannot_check_is_exit_1_and_kept(strict) -> None:  # noqa: F811
    server = strict("[" * 400 + "]" * 400)
    proc = _ask(server.url, "--schema", json.dumps(TREE), "Nest.")
    err = proc.stderr.decode()
    assert proc.returncode == 1, err
    assert "internal error" not in err and "Traceback" not in err
    assert err.splitlines()[-1].startswith("gemma-chat: error: the reply is nested too deeply")
    with HistoryStore() as store:
        record = store.latest()
        assert record is not None
        reply = store.messages(record.id)[-1]
    assert reply.role == "model" and reply.text.startswith("[[[")


def test_unchecked_constraint_types_still_pass() -> None:
    assert parse_reply("anything", OutputConstraint(grammar='root ::= "a"')) is None


def test_a_line_break_never_enters_a_json_string(demo_path) -> None:
    """llama-cpp-python's converter let a raw newline into a string (the reviewer's seed:
    'Invalid control character', exit 1); the grammar now excludes control characters,
    as llama.cpp's own converter does."""
    schema = '{"type":"object","properties":{"poem":{"type":"string"}},"required":["poem"]}'
    proc = run_cli(
        "ask", "--model", str(demo_path), "--seed", "1", "--temperature", "1.0",
        "--max-tokens", "150", "--json", "--no-save", "--schema", schema,
        "Write a four-line poem about the sea. Put each line on its own line.",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr.decode()
    result = json.loads(proc.stdout)
    assert result["stop_reason"] == "end_of_turn" and isinstance(result["data"]["poem"], str)


def test_a_toml_date_in_a_prompts_schema_is_reported_when_it_loads(tmp_path) -> None:
    """A TOML table may hold a date, which no JSON schema can: it was an internal error
    on a remote backend, and a misleading grammar error after the model loaded."""
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "dt.toml").write_text(
        'description = "dt"\n[schema]\ntype = "object"\ndefault = 1979-05-27T07:32:00Z\n'
    )
    env = {"GEMMA_CHAT_CONFIG": str(tmp_path / "config.toml")}
    proc = run_cli("ask", "--backend", "openai", "--base-url", "http://127.0.0.1:9/v1",
                   "-p", "dt", "--no-save", "hi", env=env)  # fmt: skip
    err = proc.stderr.decode()
    assert proc.returncode == 2, err
    assert err.count("\n") == 1 and "dt.toml" in err and "JSON cannot carry" in err
