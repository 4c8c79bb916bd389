"""Structured output: a JSON Schema or a GBNF grammar that constrains a reply, and the
check of the reply against it.

* :mod:`~gemma_chat.structured.constraint`: what constrains a reply
  (:class:`OutputConstraint`) and reading it from ``--schema``/``--grammar`` text;
* :mod:`~gemma_chat.structured.concise`: the concise schema form
  (``'name, age int, tags: list of keywords'``);
* :mod:`~gemma_chat.structured.validate`: the reply parsed and validated on the client.

The backends turn a constraint into what their runtime understands (llama.cpp's grammar
sampler, a server's ``json_schema`` field); this package imports neither.
"""
