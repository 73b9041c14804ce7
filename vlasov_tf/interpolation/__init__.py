"""The explicit interpolating Transformer: the construction and its checks."""
