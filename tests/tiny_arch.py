"""A tiny architecture (16x16 input, IBN and fused IBN) that builds and compiles in seconds."""

TINY = {
    "input_channels": 1,
    "resolution": 16,
    "channel_divisor": 1,
    "activation": "relu6",
    "stem": {"kernel": 3, "channels": 8, "stride": 2},
    "stages": [
        {"block": "ibn", "kernel": 3, "expansion": 2, "channels": 8, "depth": 2, "stride": 1},
        {"block": "fused_ibn", "kernel": 3, "expansion": 2, "channels": 16, "depth": 1, "stride": 2},
    ],
    "head": {"type": "classification", "channels": 32, "num_classes": 10},
}

# A stem, one IBN and the head: 7 distinct TVM tasks (stem, expand = head conv, depthwise, project + residual, mean,
# reshape, classifier; TINY has 10), about the fewest a classification network has: for tests that tune every task.
ONE_BLOCK = {
    **TINY,
    "stages": [{"block": "ibn", "kernel": 3, "expansion": 2, "channels": 8, "depth": 1, "stride": 1}],
    "head": {"type": "classification", "channels": 16, "num_classes": 10},
}
