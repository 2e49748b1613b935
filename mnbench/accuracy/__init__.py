"""Accuracy beside latency: evaluate .tflite models on labeled images, fine-tune MobileNets on the CPU.

Modules (importing this package loads neither TensorFlow nor LiteRT):
    datasets      labeled images: ImageFolder layout or a labels file; splits and limits
    evaluate      top-1/top-5, per-class accuracy and confusions of .tflite models (LiteRT interpreter)
    metrics       top-k with fair ties, Wilson intervals, McNemar's test for paired models (NumPy only)
    results       append-only accuracy results under results/accuracy/, joinable with latency runs
    finetune      training from scratch or from weights, early stopping, BatchNorm statistics that hold
    batchnorm     population ("precise") BatchNorm statistics for short runs
    pixels        images as uint8 squares; evaluation crops identical to export calibration's
    weights_file  weights that carry their configuration and class names (``W.weights.json``)
"""
