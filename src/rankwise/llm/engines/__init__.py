"""The engines: each runs one model behind the primitives of ``rankwise.llm.protocol``."""
