"""The papers' published figures that a report sets beside ours, read from ``results/reference/``.

* Pixel latencies: MobileNetV3 paper (arXiv:1905.02244v5) Table 3 (float) and Table 4 (8-bit), measured with
  the TFLite benchmark tool on one large core, batch size 1 (Sec. 6.1.2 and the Table 3 caption). When
  ``mnv3_table4_quantized.csv`` is absent, the slim README's 8-bit rows (same Pixel figures within 1 %) stand
  in. V2 checkpoints at other widths and resolutions: the slim README's Pixel-1 CPU column.
* Published ImageNet top-1, for the accuracy/latency view: V1 slim grid (2018_08_02 release, float and the
  TFLite 8-bit evaluation), V2 slim README (float), V3 paper Tables 3 and 4.

Every function returns a DataFrame keyed by ``version, alpha, resolution, quant`` with a ``source`` column.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

REFERENCE_DIR = Path(__file__).resolve().parents[2] / "results" / "reference"
PAPER_CONDITIONS = ("MobileNetV3 paper (arXiv:1905.02244v5): TFLite benchmark tool, single-threaded on one "
                    "large core, batch size 1, Google Pixel 1/2/3")
V3_NETWORKS = {"V3-Large 1.0": ("v3-large", 1.0), "V3-Large 0.75": ("v3-large", 0.75),
               "V3-Small 1.0": ("v3-small", 1.0), "V3-Small": ("v3-small", 1.0),
               "V3-Small 0.75": ("v3-small", 0.75), "V2 1.0": ("v2", 1.0), "V2 0.35": ("v2", 0.35)}
PIXELS = {"pixel1_ms": "Pixel", "pixel2_ms": "Pixel 2", "pixel3_ms": "Pixel 3"}
KEYS = ["version", "alpha", "resolution", "quant"]


def _read(root: Path, name: str) -> pd.DataFrame | None:
    path = Path(root) / name
    return pd.read_csv(path) if path.is_file() else None


def _v3_rows(frame: pd.DataFrame, quant: str, table: str) -> pd.DataFrame:
    final = frame[frame["paper_version"].str.startswith("v5") & frame["network"].isin(V3_NETWORKS)]
    rows = [{"version": V3_NETWORKS[r.network][0], "alpha": V3_NETWORKS[r.network][1], "resolution": 224,
             "quant": quant, "network": r.network, "pixel1_ms": r.p1_ms, "pixel2_ms": r.p2_ms,
             "pixel3_ms": r.p3_ms, "top1_pct": r.top1_pct, "source": f"V3 paper v5 {table}"}
            for r in final.itertuples()]
    return pd.DataFrame(rows)


def paper_latency(root: Path = REFERENCE_DIR) -> pd.DataFrame:
    """Published Pixel latencies (ms) per configuration; empty when the reference files are missing."""
    frames = []
    table3 = _read(root, "mnv3_table3_float.csv")
    if table3 is not None:
        frames.append(_v3_rows(table3, "fp32", "Table 3"))
    table4 = _read(root, "mnv3_table4_quantized.csv")
    if table4 is not None:
        frames.append(_v3_rows(table4, "int8", "Table 4"))
    else:
        frames.append(_slim_v3_int8(root))
    slim_v2 = _read(root, "mnv2_slim_readme.csv")
    if slim_v2 is not None:
        frames.append(pd.DataFrame({
            "version": "v2", "alpha": slim_v2["depth_multiplier"].astype(float),
            "resolution": slim_v2["resolution"].astype(int), "quant": "fp32",
            "network": slim_v2["checkpoint"],
            "pixel1_ms": slim_v2["pixel1_cpu_ms"], "pixel2_ms": None, "pixel3_ms": None,
            "top1_pct": slim_v2["top1_pct"], "source": "slim README (V2 checkpoints, Pixel 1 CPU)"}))
    frames = [frame for frame in frames if len(frame)]
    if not frames:
        return pd.DataFrame(columns=KEYS + ["network", *PIXELS, "top1_pct", "source"])
    merged = pd.concat(frames, ignore_index=True)
    return merged.drop_duplicates(KEYS, keep="first").reset_index(drop=True)  # the V3 paper wins


def _slim_v3_int8(root: Path) -> pd.DataFrame:
    slim = _read(root, "mnv3_slim_readme_and_doc_tables.csv")
    if slim is None:
        return pd.DataFrame()
    rows = slim[(slim["precision"] == "8-bit") & slim["variant"].isin(["Large", "Small"])
                & slim["source"].str.contains("slim")]
    return pd.DataFrame({
        "version": rows["variant"].map({"Large": "v3-large", "Small": "v3-small"}),
        "alpha": rows["depth_multiplier"].astype(float), "resolution": 224, "quant": "int8",
        "network": "V3-" + rows["variant"] + " 8-bit", "pixel1_ms": rows["pixel1_ms"],
        "pixel2_ms": rows["pixel2_ms"], "pixel3_ms": rows["pixel3_ms"], "top1_pct": rows["top1_pct"],
        "source": "slim README 8-bit row (mnv3_table4_quantized.csv not found)"})


def published_top1(root: Path = REFERENCE_DIR) -> pd.DataFrame:
    """Published ImageNet top-1 (%) per configuration and quantization."""
    frames = [paper_latency(root)[KEYS + ["top1_pct", "source"]]]
    grid = _read(root, "mnv1_slim_grid.csv")
    if grid is not None:
        grid = grid[grid["checkpoint_release"] == "2018_08_02"]
        frames.append(pd.DataFrame({
            "version": "v1", "alpha": grid["alpha"].astype(float),
            "resolution": grid["resolution"].astype(int),
            "quant": grid["precision"].map(lambda text: "fp32" if text == "float" else "int8"),
            "top1_pct": grid["top1_pct"], "source": "slim mobilenet_v1.md (2018_08_02)"}))
    merged = pd.concat([frame for frame in frames if len(frame)], ignore_index=True)
    merged = merged.dropna(subset=["top1_pct"])
    return merged.drop_duplicates(KEYS, keep="first").reset_index(drop=True)


def pixel_column(device_model: str | None) -> str | None:
    """``pixel1_ms``/``pixel2_ms``/``pixel3_ms`` for a Pixel 1/2/3 (XL or not), else None."""
    if not device_model:
        return None
    name = " ".join(str(device_model).replace("XL", "").split())
    for column, pixel in PIXELS.items():
        if name == pixel:
            return column
    return None
