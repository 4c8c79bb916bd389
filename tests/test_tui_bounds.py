"""The app's bounds on slow work: quitting never waits for a server that never answers,
and a message or conversation too long to fit is refused without being tokenized."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from sse_server import SSEServer
from tui_support import notifications, scripted_loader, send, settle, wait_until

from gemma_chat.backend.scripted import ScriptedBackend
from gemma_chat.backend.sse import RemoteCancelled
from gemma_chat.chat.conversation import Role
from gemma_chat.chat.template import GemmaTemplate
from gemma_chat.config.settings import Settings
from gemma_chat.history.store import HistoryStore, MessageRecord
from gemma_chat.tui.app import GemmaChatApp
from gemma_chat.tui.kv_resume import TOO_LONG, StateEvent

HUGE = "word " * 200_000  # 1 MB: no 4096-token context can hold it


@pytest.fixture(scope="module")
def server() -> Iterator[SSEServer]:
    srv = SSEServer()
    yield srv
    srv.close()


@pytest.mark.timeout(45)  # the server lets go after 60 s: a regression fails here
async def test_quitting_while_a_server_check_hangs_returns_at_once(
    server: SSEServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gemma_chat.models import loader

    outcome: list[BaseException] = []
    ended = threading.Event()
    load_backend = loader.load_backend

    def watched(*args: Any, **kwargs: Any) -> Any:
        try:
            return load_backend(*args, **kwargs)
        except BaseException as exc:
            outcome.append(exc)
            raise
        finally:
            ended.set()

    monkeypatch.setattr(loader, "load_backend", watched)
    # A timeout far beyond the test's: only the cancel event can end the wait.
    settings = Settings(backend="openai", base_url=server.url("hang"), timeout=600)
    app = GemmaChatApp(settings)
    async with app.run_test() as pilot:
        await wait_until(pilot, lambda: any(w.group == "model" for w in app.workers))
        await settle(pilot)
        assert not ended.is_set()  # still waiting for the server
        await pilot.press("ctrl+q")
    # The load's thread let go of the server (the process would wait for it otherwise).
    assert ended.wait(40)
    assert [type(exc) for exc in outcome] == [RemoteCancelled]
    assert app.engine is None


async def test_a_message_too_long_to_fit_stays_in_the_input(vocab) -> None:
    # long_input = "refuse": by default such a message is answered part by part
    settings = Settings(long_input="refuse")
    app = GemmaChatApp(settings, loader=scripted_loader(vocab, ["never"], n_ctx=4096))
    async with app.run_test() as pilot:
        await wait_until(pilot, lambda: app.engine is not None)
        await send(pilot, HUGE)
        await settle(pilot)
        assert not app.generating  # no reply worker tokenizing a megabyte
        assert app.conversation.turns == []
        assert app.prompt.text == HUGE  # nothing typed is lost
        (notice,) = [n for n in notifications(app) if "too long" in n]
        assert "stays in the input" in notice
        # A message that fits is sent as before.
        app.prompt.clear()
        await send(pilot, "Hello")
        await wait_until(pilot, lambda: not app.generating and len(app.conversation.turns) == 2)
        assert app.conversation.turns[0].role is Role.USER


def kv_loader(vocab: Any):
    """A scripted model with a sha256, so the app saves and restores its KV state."""

    def load(settings: Settings, notify: Any) -> tuple[Any, Any]:
        return SimpleNamespace(sha256="ab" * 32), ScriptedBackend(vocab, ["ok"], n_ctx=4096)

    return load


async def test_kv_state_jobs_never_tokenize_a_conversation_too_long_to_fit(
    vocab, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    render = GemmaTemplate.render

    def counted(self: GemmaTemplate, *args: Any, **kwargs: Any) -> list[int]:
        calls.append(1)
        return render(self, *args, **kwargs)

    monkeypatch.setattr(GemmaTemplate, "render", counted)
    with HistoryStore(tmp_path / "history.db") as store:
        cid = store.create()
        store.add(cid, MessageRecord("user", HUGE))
        store.add(cid, MessageRecord("model", "ok", stop_reason="end_of_turn"))
        app = GemmaChatApp(Settings(), loader=kv_loader(vocab), store=store, resume=cid)
        async with app.run_test() as pilot:
            await wait_until(pilot, lambda: app.engine is not None)
            await wait_until(pilot, lambda: bool(app.kv.events))
            app.exit()  # quitting leaves the conversation: its save is bounded too
        app.kv.close()
    assert app.kv.events == [
        StateEvent("restore", cid, 0, TOO_LONG),
        StateEvent("save", cid, False, TOO_LONG),
    ]
    assert calls == []
