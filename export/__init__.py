"""Convert MobileNets to LiteRT (float32, float16, dynamic-range and full-integer int8), verify, describe."""
