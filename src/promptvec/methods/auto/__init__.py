from promptvec.methods.auto.method import AutoInit, AutoSettings

__all__ = ["AutoInit", "AutoSettings"]
