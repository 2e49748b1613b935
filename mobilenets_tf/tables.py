"""The papers' architecture tables, transcribed row by row. Data only.

Sources (final arXiv versions):
    V1: Howard et al., arXiv:1704.04861, Table 1.
    V2: Sandler et al., arXiv:1801.04381, Table 2 (t, c, n, s).
    V3: Howard et al., arXiv:1905.02244v5, Table 1 (Large) and Table 2 (Small).
Where the printed table and the published model disagree, the row follows the model whose parameter count the
paper reports, and a comment says why (see docs/counting.md).
"""

from __future__ import annotations

from .specs import HS, R6, RE, ArchSpec, Classifier, Conv, DwSep, InvRes, Pool, Width

FIXED, WIDEN_ONLY = Width.FIXED, Width.WIDEN_ONLY


def stages(*rows: tuple[float, int, int, int], kernel_size: int = 3) -> tuple[InvRes, ...]:
    """Expand V2 stage rows ``(t, c, n, s)`` into blocks: the first of each stage takes the stride."""
    return tuple(
        InvRes(kernel_size, expansion, filters, strides=strides if index == 0 else 1)
        for expansion, filters, repeats, strides in rows
        for index in range(repeats)
    )


def ir(kernel_size, expansion, filters, *, se=False, activation=R6, strides=1) -> InvRes:
    """One V3 bottleneck row: kernel, exp size / input channels, #out, SE, NL, s."""
    return InvRes(kernel_size, expansion, filters, strides=strides, se=se, activation=activation)


MOBILENET_V1 = ArchSpec(
    "v1",
    divisor=1,  # V1 truncates alpha * filters (slim depth(), Keras int()); no rounding to 8
    rows=(
        # Type / stride, filter shape  -- paper Table 1 (BN + ReLU after every layer; ReLU6 as in the
        # reference code)
        Conv(3, 32, strides=2),                  # 224x224x3 in
        DwSep(64),                               # 112x112x32
        DwSep(128, strides=2),                   # 112x112x64
        DwSep(128),                              # 56x56x128
        DwSep(256, strides=2),                   # 56x56x128
        DwSep(256),                              # 28x28x256
        DwSep(512, strides=2),                   # 28x28x256
        DwSep(512), DwSep(512), DwSep(512), DwSep(512), DwSep(512),  # 5x at 14x14x512
        DwSep(1024, strides=2),                  # 14x14x512
        DwSep(1024),                             # 7x7x1024; the table prints s2 here, but the input and
                                                 # output are both 7x7: stride 1, as in the reference code
        Pool(),                                  # Avg Pool 7x7
        Classifier(),                            # FC 1024 x classes
    ),
)

MOBILENET_V2 = ArchSpec(
    "v2",
    divisor=8,
    rows=(
        Conv(3, 32, strides=2),                  # 224^2 x 3, conv2d
        *stages(
            # t, c, n, s  -- paper Table 2
            (1, 16, 1, 1),                       # 112^2 x 32
            (6, 24, 2, 2),                       # 112^2 x 16
            (6, 32, 3, 2),                       # 56^2 x 24
            (6, 64, 4, 2),                       # 28^2 x 32
            (6, 96, 3, 1),                       # 14^2 x 64
            (6, 160, 3, 2),                      # 14^2 x 96
            (6, 320, 1, 1),                      # 7^2 x 160
        ),
        Conv(1, 1280, width=WIDEN_ONLY),   # 7^2 x 320, conv2d 1x1 (widened only for alpha > 1)
        Pool(),                                  # avgpool 7x7
        Classifier(),                            # conv2d 1x1, k
    ),
)

MOBILENET_V3_LARGE = ArchSpec(
    "v3-large",
    divisor=8,
    rows=(
        # Input, Operator, exp size, #out, SE, NL, s  -- paper Table 1
        Conv(3, 16, strides=2, activation=HS, width=FIXED),  # 224^2 x 3, conv2d
        ir(3, 16 / 16, 16, activation=RE),                               # 112^2 x 16
        ir(3, 64 / 16, 24, activation=RE, strides=2),                    # 112^2 x 16
        ir(3, 72 / 24, 24, activation=RE),                               # 56^2 x 24
        ir(5, 72 / 24, 40, se=True, activation=RE, strides=2),           # 56^2 x 24
        ir(5, 120 / 40, 40, se=True, activation=RE),                     # 28^2 x 40
        ir(5, 120 / 40, 40, se=True, activation=RE),                     # 28^2 x 40
        ir(3, 240 / 40, 80, activation=HS, strides=2),                   # 28^2 x 40
        ir(3, 200 / 80, 80, activation=HS),                              # 14^2 x 80
        ir(3, 184 / 80, 80, activation=HS),                              # 14^2 x 80
        ir(3, 184 / 80, 80, activation=HS),                              # 14^2 x 80
        ir(3, 480 / 80, 112, se=True, activation=HS),                    # 14^2 x 80
        ir(3, 672 / 112, 112, se=True, activation=HS),                   # 14^2 x 112
        ir(5, 672 / 112, 160, se=True, activation=HS, strides=2),        # 14^2 x 112
        ir(5, 960 / 160, 160, se=True, activation=HS),                   # 7^2 x 160
        ir(5, 960 / 160, 160, se=True, activation=HS),                   # 7^2 x 160
        Conv(1, 960, activation=HS),                                     # 7^2 x 160, conv2d 1x1
        Pool(),                                                          # 7^2 x 960, pool 7x7
        Conv(1, 1280, activation=HS, batch_norm=False, width=WIDEN_ONLY),  # 1^2 x 960, NBN
        Classifier(),                                                    # 1^2 x 1280, conv2d 1x1 NBN, k
    ),
)

MOBILENET_V3_SMALL = ArchSpec(
    "v3-small",
    divisor=8,
    rows=(
        # Input, Operator, exp size, #out, SE, NL, s  -- paper Table 2
        Conv(3, 16, strides=2, activation=HS, width=FIXED),  # 224^2 x 3, conv2d 3x3
        ir(3, 16 / 16, 16, se=True, activation=RE, strides=2),           # 112^2 x 16
        ir(3, 72 / 16, 24, activation=RE, strides=2),                    # 56^2 x 16
        ir(3, 88 / 24, 24, activation=RE),                               # 28^2 x 24
        ir(5, 96 / 24, 40, se=True, activation=HS, strides=2),           # 28^2 x 24
        ir(5, 240 / 40, 40, se=True, activation=HS),                     # 14^2 x 40
        ir(5, 240 / 40, 40, se=True, activation=HS),                     # 14^2 x 40
        ir(5, 120 / 40, 48, se=True, activation=HS),                     # 14^2 x 40
        ir(5, 144 / 48, 48, se=True, activation=HS),                     # 14^2 x 48
        ir(5, 288 / 48, 96, se=True, activation=HS, strides=2),          # 14^2 x 48
        ir(5, 576 / 96, 96, se=True, activation=HS),                     # 7^2 x 96
        ir(5, 576 / 96, 96, se=True, activation=HS),                     # 7^2 x 96
        # 7^2 x 96, conv2d 1x1. The table marks SE here, but the published model (slim V3_SMALL, Keras
        # MobileNetV3Small, and the paper's own 2.5M parameters) has none: SE would add 0.17M parameters.
        Conv(1, 576, activation=HS),
        Pool(),                                                          # 7^2 x 576, pool 7x7
        Conv(1, 1024, activation=HS, batch_norm=False, width=WIDEN_ONLY),  # 1^2 x 576, NBN (v5: 1024)
        Classifier(),                                                    # 1^2 x 1024, conv2d 1x1 NBN, k
    ),
)
