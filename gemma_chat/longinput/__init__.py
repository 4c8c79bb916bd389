"""Inputs larger than the context: split them, ask the question of each part, and
combine the notes into one answer (map-reduce). No Textual, used by ``ask`` and the app."""
