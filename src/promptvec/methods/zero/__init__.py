from promptvec.methods.zero.method import ZeroSettings, ZeroShot

__all__ = ["ZeroSettings", "ZeroShot"]
