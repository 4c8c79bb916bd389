"""Scripts for the tiny Gemma 2 models: what greedy decoding produces after ``model\\n``."""

RUNAWAY = (
    "▁Once",
    "▁upon",
    "▁a",
    "▁time",
    ".",
    "<end_of_turn>",
    "\n",
    "<start_of_turn>",
    "user\n",
    "▁Tell",
    "▁more",
    "<end_of_turn>",
)
"""The famous Gemma 2 bug: the story, <end_of_turn>, then an invented user turn (loops)."""
RUNAWAY_REPLY = " Once upon a time."

MARKER_AS_TEXT = (
    "▁The",
    "▁end",
    ".",
    "<end",
    "_of",
    "_turn",
    ">",
    "\n",
    "<start",
    "_of_",
    "turn>",
    "user\n",
    "▁Hi",
)
"""The end-of-turn marker spelled as ordinary pieces, then a made-up turn."""
MARKER_AS_TEXT_REPLY = " The end."

NEW_TURN = ("▁Sure", "!", "<start_of_turn>", "user\n", "▁Next", "<end_of_turn>")
"""A new <start_of_turn> without closing the model's own turn."""
NEW_TURN_REPLY = " Sure!"

NOT_A_MARKER = ("▁a", "▁<", "end", "▁b", "<end_of_turn>")
"""Text that starts like a marker but is not one: it must be shown."""
NOT_A_MARKER_REPLY = " a <end b"

LONG_AND_SPLIT = ("▁प्रधानमंत्री", "<0xE4>", "<0xB8>", "<0xAD>", "!", "<end_of_turn>")
"""A 37-byte piece (over llama-cpp-python's 32-byte buffer), then 中 across byte tokens."""
LONG_AND_SPLIT_REPLY = " प्रधानमंत्री中!"

LOOP = ("▁cat", "▁cat\n", "▁cat")
"""Loops forever on the same span, like the demo model does on chat prompts."""
