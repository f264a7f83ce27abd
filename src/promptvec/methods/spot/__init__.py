from promptvec.methods.spot.method import SpotGeneric, SpotSettings, SpotTargeted

__all__ = ["SpotGeneric", "SpotSettings", "SpotTargeted"]
