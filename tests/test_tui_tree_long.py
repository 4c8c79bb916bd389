"""Switching versions in a long conversation: one switch never mounts hundreds of
messages at once (it froze the screen for 30 s at 600 messages)."""

from __future__ import annotations

from tui_support import scripted_loader, settle, wait_until

from gemma_chat.config.settings import Settings
from gemma_chat.history.store import HistoryStore, MessageRecord
from gemma_chat.tui.app import GemmaChatApp


async def test_switching_back_to_a_long_branch_mounts_a_bounded_window(vocab, tmp_path) -> None:
    store = HistoryStore(tmp_path / "h.db")
    cid = store.create(system=None, params={}, origin="app")
    parent = None
    first_q = None
    for i in range(300):
        q = store.add(cid, MessageRecord("user", f"question {i}", parent_id=parent))
        first_q = first_q or q.id
        a = store.add(
            cid,
            MessageRecord("model", f"**answer** {i}\n\n- a\n- b", reply_to=q.id, parent_id=q.id),
        )
        parent = a.id
    store.add(
        cid, MessageRecord("model", "other first answer", reply_to=first_q, parent_id=first_q)
    )
    store.view(cid, parent)  # the long branch viewed
    app = GemmaChatApp(Settings(), loader=scripted_loader(vocab, ["x"]), store=store, resume=cid)
    async with app.run_test(size=(100, 40)) as pilot:
        await wait_until(pilot, lambda: len(app.switcher.turn_widgets()) == 40)
        await pilot.press("alt+right")  # no selection: the first reply's versions
        await wait_until(pilot, lambda: app.conversation.turns[1].text == "other first answer")
        await settle(pilot)
        await pilot.press("alt+left")  # back to the long branch
        await wait_until(pilot, lambda: len(app.conversation.turns) == 600, timeout=120)
        await settle(pilot)
        mounted = len(app.switcher.turn_widgets())
        assert mounted <= 80, f"{mounted} messages mounted at once by one switch"
        assert any("messages up" in str(n.message) for n in app._notifications)
