from promptvec.methods.multi_source.method import MultiSourceInit

__all__ = ["MultiSourceInit"]
