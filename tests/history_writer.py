"""A child process that writes to the history store, for the crash and concurrency tests.

``python history_writer.py DB TAG COUNT [CONVERSATION_ID]`` appends COUNT user/model
message pairs, printing ``wrote N`` after each committed message (the parent reads these to
know what must survive), one conversation per process unless an id is given.
"""

from __future__ import annotations

import sys
from pathlib import Path

from gemma_chat.history.store import HistoryStore, MessageRecord


def main() -> int:
    db, tag, count = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    store = HistoryStore(db)
    conversation = int(sys.argv[4]) if len(sys.argv) > 4 else store.create(system=tag)
    for n in range(count):
        store.add(conversation, MessageRecord("user", f"{tag} question {n}"))
        print(f"wrote {2 * n + 1}", flush=True)
        store.add(
            conversation,
            MessageRecord("model", f"{tag} answer {n}", stop_reason="end_of_turn"),
        )
        print(f"wrote {2 * n + 2}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
