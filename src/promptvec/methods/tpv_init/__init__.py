from promptvec.methods.tpv_init.method import TPVInit, TPVInitSettings

__all__ = ["TPVInit", "TPVInitSettings"]
