from promptvec.methods.single_source.method import SingleSourceInit, SingleSourceSettings

__all__ = ["SingleSourceInit", "SingleSourceSettings"]
