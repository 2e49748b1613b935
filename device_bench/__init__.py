"""device_bench: run .tflite benchmarks on the host CPU and on Android phones, and store the results."""
