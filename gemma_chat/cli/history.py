"""``gemma-chat history``: list, show, search, export, import, rename and delete saved
conversations.

Every command opens the store itself; a damaged file gives the one-line
:class:`~gemma_chat.history.store.CorruptStore` error (exit 1) and is left untouched,
and ``history move-aside`` renames it so a new store can start. The store module is
imported inside the commands, so registering this sub-app costs ``ask`` nothing.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from gemma_chat.cli import options as o
from gemma_chat.cli.output import notify
from gemma_chat.errors import GemmaChatError, UsageError
from gemma_chat.sanitize import json_safe, one_line

if TYPE_CHECKING:
    from gemma_chat.history.store import HistoryStore, SearchHit

TITLE_WIDTH = 200
"""The most characters of a title shown on a line: an imported file may hold any title."""
SNIPPET_WIDTH = 400
"""The same for a search hit's snippet (a dozen words, but a "word" can be megabytes)."""

history_app = typer.Typer(
    name="history",
    help="Saved conversations: list, show, search, export, import, rename, delete.",
    rich_markup_mode=None,
)


@history_app.callback(invoke_without_command=True)
def _group(ctx: typer.Context) -> None:
    # Bare `history` prints its help on stdout (exit 0), not as a usage error.
    if ctx.invoked_subcommand is None:
        print(ctx.get_help())


IdArg = Annotated[
    int,
    typer.Argument(
        metavar="ID", callback=o.conversation_id, help="The conversation id (history list)."
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
LimitOpt = Annotated[int | None, typer.Option("--limit", min=1, help="Show at most N.")]
AllBranchesOpt = Annotated[
    bool,
    typer.Option(
        "--all-branches",
        help="Markdown: every branch (the one last viewed first, then each other from where "
        "it leaves those above), not only the one last viewed.",
    ),
]


class ExportFormat(str, Enum):
    """What ``history export`` writes."""

    md = "md"
    json = "json"


def _store() -> HistoryStore:
    from gemma_chat.history.store import HistoryStore

    return HistoryStore()


def _on_terminal() -> bool:
    return sys.stdout.isatty()


def local_time(stamp: str) -> str:
    """``2026-11-30 14:45`` in local time from a stored UTC time."""
    try:
        return datetime.fromisoformat(stamp).astimezone().strftime("%Y-%m-%d %H:%M")
    except ValueError:  # an imported file may carry any text here
        return one_line(stamp)[:16]


@history_app.command("list")
def list_(json_out: JsonOpt = False, limit: LimitOpt = None) -> None:
    """Conversations, most recently updated first, with how many messages and branches."""
    with _store() as store:
        records = store.conversations(limit)
        branches = [store.branch_count(record.id) for record in records]
    if json_out:
        found = [{**asdict(r), "branch_count": n} for r, n in zip(records, branches, strict=True)]
        print(json_safe(json.dumps(found, ensure_ascii=False, indent=2)))
        return
    if not records:
        notify("no saved conversations yet")
        return
    width = max(2, *(len(str(record.id)) for record in records))
    print(f"{'ID':>{width}}  {'UPDATED':<16}  {'MSGS':>4}  {'BRANCHES':>8}  TITLE")
    for record, count in zip(records, branches, strict=True):
        print(
            f"{record.id:>{width}}  {local_time(record.updated_at):<16}  "
            f"{record.message_count:>4}  {count:>8}  {one_line(record.title, TITLE_WIDTH)}"
        )


@history_app.command()
def show(
    conversation_id: IdArg,
    json_out: JsonOpt = False,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose", "-v", help="Also show how a long input was answered: every note."
        ),
    ] = False,
    tree: Annotated[
        bool,
        typer.Option(
            "--tree",
            help="Every message on one line each: id, role, first words; * marks the branch "
            "viewed (--json: the tree as JSON).",
        ),
    ] = False,
    all_branches: AllBranchesOpt = False,
) -> None:
    """Print a conversation as a readable transcript of the branch last viewed (--json:
    the lossless export of every branch; --tree: the tree, one line per message)."""
    from gemma_chat.history.transfer import export_json, export_markdown

    with _store() as store:
        if tree:
            from gemma_chat.cli.history_tree import print_tree

            print_tree(store, conversation_id, json_out)
            return
        if json_out:
            text = export_json(store, conversation_id)
        else:
            text = export_markdown(store, conversation_id, verbose, all_branches)
    if json_out or not _on_terminal():
        sys.stdout.write(text)
        return
    from rich.console import Console
    from rich.markdown import Markdown

    Console().print(Markdown(text, hyperlinks=False))


@history_app.command()
def search(
    text: Annotated[list[str], typer.Argument(metavar="TEXT...", help="Words to find.")],
    json_out: JsonOpt = False,
    limit: LimitOpt = None,
) -> None:
    """Find messages containing every word (each also as a prefix), best first."""
    query = " ".join(text)
    with _store() as store:
        hits = store.search(query, limit=limit or 50)
    if json_out:
        found = [{**asdict(hit), "snippet": hit.highlighted()} for hit in hits]
        print(json_safe(json.dumps(found, ensure_ascii=False, indent=2)))
        return
    if not hits:
        notify(f"no message matches {query!r}")
        return
    if _on_terminal():
        _print_hits_styled(hits)
        return
    for hit in hits:
        print(_hit_heading(hit))
        print(f"    {_who(hit.role)}: {one_line(hit.highlighted(), SNIPPET_WIDTH)}")


def _who(role: str) -> str:
    return "you" if role == "user" else "gemma"


def _hit_heading(hit: SearchHit) -> str:
    title = one_line(hit.title, TITLE_WIDTH)
    # The id, not a position: positions mean nothing across branches, and ask --from
    # and history show --tree take and show ids.
    return f"{hit.conversation_id}  {title}  (message {hit.message_id})"


def _print_hits_styled(hits: list[SearchHit]) -> None:
    """On a terminal, the matches in bold (rich also honours NO_COLOR and dumb terminals)."""
    from rich.console import Console
    from rich.text import Text

    console = Console(highlight=False, soft_wrap=True)
    for hit in hits:
        line = Text("    ").append(f"{_who(hit.role)}: ", style="dim")
        # Split on the markers before cleaning, so the markers survive one_line.
        for index, part in enumerate(hit.highlighted("\x00", "\x00").split("\x00")):
            line.append(one_line(part, SNIPPET_WIDTH), style="bold" if index % 2 else None)
        console.print(Text(_hit_heading(hit), style="bold cyan"))
        console.print(line)


@history_app.command()
def export(
    conversation_id: IdArg,
    format: Annotated[
        ExportFormat,
        typer.Option("--format", "-f", help="md: a readable transcript; json: lossless."),
    ] = ExportFormat.md,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", metavar="FILE", help="Write to FILE.")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace FILE if it exists.")] = False,
    all_branches: AllBranchesOpt = False,
) -> None:
    """Write a conversation as Markdown (the branch last viewed; --all-branches: every
    one) or lossless JSON (every branch), on stdout by default.

    FILE is written atomically, and is never one of gemma-chat's own files (the
    history database, the config, the cache).
    """
    from gemma_chat.history.files import write_export
    from gemma_chat.history.transfer import export_json, export_markdown

    with _store() as store:
        if format is ExportFormat.json:
            text = export_json(store, conversation_id)
        else:
            text = export_markdown(store, conversation_id, all_branches=all_branches)
    if output is None or str(output) == "-":
        sys.stdout.write(text)
        return
    write_export(output, text, store.path, force=force)


@history_app.command("import")
def import_(
    file: Annotated[
        str, typer.Argument(metavar="FILE.json", help="A JSON export ('-' reads stdin).")
    ],
) -> None:
    """Add a conversation from a JSON export (at most 64 MiB); print its id."""
    from gemma_chat.history.files import read_import
    from gemma_chat.history.transfer import import_json

    text, source = read_import(file)
    with _store() as store:
        new_id = import_json(store, text, source)
    print(new_id)


@history_app.command()
def delete(
    conversation_id: IdArg,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a conversation and its messages (asks first unless --yes)."""
    with _store() as store:
        record = store.get(conversation_id)
        if not yes:
            if not sys.stdin.isatty():
                raise UsageError(
                    f"not deleting conversation {conversation_id} without confirmation: pass --yes"
                )
            question = (
                f"Delete conversation {record.id}, {one_line(record.title, TITLE_WIDTH)!r} "
                f"({record.message_count} messages)?"
            )
            if not typer.confirm(question, default=False, err=True):
                notify("nothing deleted")
                raise typer.Exit(1)
        store.delete(conversation_id)
    # Its saved KV state holds the whole conversation too: it goes with it.
    from gemma_chat.backend.kv_cache import KVStateCache

    KVStateCache().forget(record.uuid)
    notify(f"deleted conversation {conversation_id}")


@history_app.command()
def rename(
    conversation_id: IdArg,
    title: Annotated[list[str], typer.Argument(metavar="TITLE...", help="The new title.")],
) -> None:
    """Give a conversation a new title."""
    with _store() as store:
        store.rename(conversation_id, " ".join(title))


@history_app.command("move-aside")
def move_aside(
    force: Annotated[
        bool, typer.Option("--force", help="Move it even though it reads fine.")
    ] = False,
) -> None:
    """Rename an unreadable history database (kept, never deleted) so that a new one
    starts; print its new name."""
    from gemma_chat.history import store

    path = store.store_file()
    if path.exists() and not force:
        problem = _damage(path)
        if problem is None:
            raise GemmaChatError(
                f"the history database {path} reads fine; not moving it "
                "(pass --force to move it aside anyway)"
            )
    print(store.move_aside(path))


def _damage(path: Path) -> str | None:
    """What is wrong with the database file, or None when SQLite's quick check passes.

    Opened with plain sqlite3 and only read: a file that is not a database is never
    written to.
    """
    import sqlite3

    try:
        conn = sqlite3.connect(path)
    except sqlite3.Error as exc:
        return str(exc)
    try:
        result = [row[0] for row in conn.execute("PRAGMA quick_check").fetchall()]
    except sqlite3.Error as exc:
        return str(exc)
    finally:
        conn.close()
    return None if result == ["ok"] else "; ".join(map(str, result))
