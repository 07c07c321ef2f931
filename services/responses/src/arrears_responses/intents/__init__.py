"""Reply understanding: safety rules (carrier keywords), a trained model, promise extraction."""

from .classifier import Classification, ReplyClassifier, classify

__all__ = ["Classification", "ReplyClassifier", "classify"]
