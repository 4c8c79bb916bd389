"""A child process that writes to the history store, for the crash and concurrency tests.

``python history_writer.py DB TAG COUNT [CONVERSATION_ID]`` appends COUNT user/model
message pairs, printing ``wrote N`` after each committed message (the parent reads these to
know what must survive), one conversation per process unless an id is given. With
``$GO_FILE`` set, it opens the store, prints ``ready`` and waits for that file to exist
before writing, so that several writers start at the same moment. ``$PARENT`` names the
message its first question follows (default: the end of the branch viewed); like a
chat, each question follows this writer's last reply. ``$PAUSE_S`` paces
the writes (a chat writes a message every few seconds, not in a tight loop; without a
pause, SQLite's busy handler lets one tight-looping writer finish before the next gets in).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from gemma_chat.history.records import AFTER_ACTIVE
from gemma_chat.history.store import HistoryStore, MessageRecord


def main() -> int:
    db, tag, count = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    store = HistoryStore(db)
    conversation = int(sys.argv[4]) if len(sys.argv) > 4 else store.create(system=tag)
    go = os.environ.get("GO_FILE")
    if go:
        print("ready", flush=True)
        while not Path(go).exists():
            time.sleep(0.001)
    pause = float(os.environ.get("PAUSE_S", "0"))
    parent = int(os.environ.get("PARENT", AFTER_ACTIVE))
    for n in range(count):
        time.sleep(pause)
        question = store.add(
            conversation, MessageRecord("user", f"{tag} question {n}", parent_id=parent)
        )
        print(f"wrote {2 * n + 1}", flush=True)
        reply = store.add(
            conversation,
            MessageRecord(
                "model",
                f"{tag} answer {n}",
                stop_reason="end_of_turn",
                reply_to=question.id,
                parent_id=question.id,
            ),
        )
        parent = reply.id
        print(f"wrote {2 * n + 2}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
