"""The vector store: prompts and task prompt vectors, content-addressed, with an SQLite index."""

from promptvec.store.hub import pull, push
from promptvec.store.peft_io import convert_legacy, export_peft, import_peft
from promptvec.store.store import Entry, StoreError, VectorStore

__all__ = ["Entry", "StoreError", "VectorStore", "convert_legacy", "export_peft", "import_peft", "pull", "push"]
