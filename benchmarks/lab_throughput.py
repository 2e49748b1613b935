"""How a lab scales: wall time of `mnbench device` for 8 models on 1, 2, 4 and 8 loopback phones.

The phones are loopback ADB devices (tests/loopback_adb) behind 2 private Google adb servers on 127.0.0.1,
half of them on each, reached with `--adb-server` exactly as a lab across hosts is. Their stand-in
benchmark_model sleeps `--phone-seconds` per run (a real phone computes on its own CPU, not the host's), so
the figures measure what mnbench adds: connecting, facts, lock, pushes, cool-down reads, the run command,
temperatures, clean-up, storing, and how well phones run in parallel. Each configuration benchmarks all 8
models on each of its phones (8 x N runs, 1 thread, xnnpack); configurations are interleaved, in a
different order each round, and the median round is reported. Parallel efficiency = throughput with N
phones / (N x throughput with 1 phone).

Writes results/lab_throughput.md. Run: python benchmarks/lab_throughput.py [--rounds 3] [--phone-seconds 1]

``--farm`` measures a DeviceFarmer STF farm instead (and rewrites only the file's "Farm" section): 1 and 8
loopback phones behind the loopback STF of tests/loopback_stf.py, each leased, remote-connected (through the
stand-in's TCP bridge, as STF's provider bridges a phone), benchmarked, disconnected and released; the wall
time runs from the first lease to the last release.
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

from _context import header  # noqa: E402
from device_bench.android import BenchSettings, benchmark_devices  # noqa: E402
from device_bench.lab import parse_server, parse_spec, select  # noqa: E402
from tests.loopback_adb.fixtures import FAKE_BENCHMARK, free_port  # noqa: E402
from tests.loopback_adb.lab import start_lab  # noqa: E402
from tests.test_device_run import tiny_model  # noqa: E402

PHONE_COUNTS = (1, 2, 4, 8)
FARM_COUNTS = (1, 8)
MODELS = 8
FARM_SECTION = "## Farm phones (DeviceFarmer STF)"
SETTINGS = BenchSettings(num_runs=3, min_secs=0, cooldown_max_wait_s=0, run_timeout_s=60,
                         command_timeout_s=30)


def private_client(work: Path) -> None:
    """A private ~/.android, cache and adb port for this process (never the user's, never the internet)."""
    from adb_shell.auth.keygen import keygen

    android = work / "client-android"
    android.mkdir()
    keygen(str(android / "adbkey"))
    os.environ.update(ANDROID_USER_HOME=str(android), ANDROID_ADB_SERVER_PORT=str(free_port()),
                      MNBENCH_CACHE_DIR=str(work / "cache"),
                      MNBENCH_BINARIES_URL=f"http://127.0.0.1:{free_port()}/none")
    os.environ.pop("ADB_SERVER_SOCKET", None)


def measure_rounds(counts: tuple[int, ...], rounds: int, what: str, run_one) -> dict[int, list[dict]]:
    """``run_one(count)`` for every count, interleaved, in the opposite order every other round."""
    measured: dict[int, list[dict]] = {count: [] for count in counts}
    for round_index in range(rounds):
        for count in counts if round_index % 2 == 0 else tuple(reversed(counts)):
            result = run_one(count)
            measured[count].append(result)
            print(f"round {round_index + 1}: {count} {what}, {result['runs']} runs, {result['wall_s']:.2f} s",
                  flush=True)
    return measured


def scaling_rows(counts: tuple[int, ...], measured: dict[int, list[dict]]) -> list[tuple[str, float]]:
    """Table rows (phones, runs, median wall, all rounds, runs/s, speed-up, parallel efficiency) against the
    first count, each with its median wall time."""
    rows, base = [], None
    for count in counts:
        walls = [item["wall_s"] for item in measured[count]]
        wall_s, runs = statistics.median(walls), measured[count][0]["runs"]
        throughput = runs / wall_s
        base = base or throughput
        row = (f"| {count} | {runs} | {wall_s:.2f} | {', '.join(f'{w:.2f}' for w in walls)} | "
               f"{throughput:.2f} | {throughput / base:.2f} | {throughput / (count * base):.2f} |")
        rows.append((row, wall_s))
    return rows


def one_configuration(lab, count: int, models: list[Path], settings: BenchSettings, results: Path) -> dict:
    phones = lab.phones[:count]   # alternating servers: phone i is on server i % 2
    servers = [parse_server(lab.address(server)) for server in lab.servers]
    started = time.perf_counter()
    chosen = select([parse_spec(phone.serial) for phone in phones], servers)
    run = benchmark_devices(chosen, models, settings=settings, benchmark_binary=FAKE_BENCHMARK,
                            results_root=results)
    return measured_run(run, count, "phones", time.perf_counter() - started)


def measured_run(run, count: int, what: str, wall_s: float) -> dict:
    """One configuration's figures; any failed run stops the benchmark (its figures would mean nothing)."""
    failed = [row["error"] for row in run.rows if row["status"] != "ok"]
    if failed:
        raise SystemExit(f"{len(failed)} runs failed with {count} {what}: {failed[0]}")
    return {"phones": count, "runs": len(run.rows), "wall_s": wall_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--phone-seconds", type=float, default=1.0, help="stand-in run time on the phone")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "lab_throughput.md")
    parser.add_argument("--farm", action="store_true",
                        help="measure 1 and 8 phones leased from a loopback STF")
    args = parser.parse_args()
    if args.farm:
        return farm_main(args)
    if shutil.which("adb") is None:
        raise SystemExit("needs Google's adb (Debian: apt-get install -y adb)")
    work = Path(tempfile.mkdtemp(prefix="lab_throughput_"))
    private_client(work)
    load_before = os.getloadavg()
    lab = start_lab(work / "lab", phones=max(PHONE_COUNTS), servers=2)
    try:
        for phone in lab.phones:
            phone.set_benchmark("ok", delay_s=args.phone_seconds)
        models = [tiny_model(work / "models" / f"model{index}.tflite") for index in range(MODELS)]
        measured = measure_rounds(PHONE_COUNTS, args.rounds, "phones", lambda count: one_configuration(
            lab, count, models, SETTINGS, work / "results"))
    finally:
        lab.stop()
    load_after = os.getloadavg()
    write(args, measured, load_before, load_after)
    shutil.rmtree(work, ignore_errors=True)


def write(args, measured: dict[int, list[dict]], load_before, load_after) -> None:
    command = (f"python benchmarks/lab_throughput.py --rounds {args.rounds} "
               f"--phone-seconds {args.phone_seconds:g}")
    title = "Lab throughput: 8 models on 1, 2, 4, 8 loopback phones behind 2 adb servers"
    lines = [header(title, command), "",
             f"Load average (1, 5, 15 min) before: {', '.join(f'{x:.2f}' for x in load_before)}; after: "
             f"{', '.join(f'{x:.2f}' for x in load_after)}. The machine is shared with other jobs: compare "
             "the rows with each other (measured interleaved in one run), not with other machines.", "",
             f"Each phone's stand-in benchmark_model sleeps {args.phone_seconds:g} s per run, so one phone "
             f"needs at least {MODELS * args.phone_seconds:g} s for the 8 models; the rest is mnbench's own "
             "work per phone (connect, facts, lock, pushes, temperatures, clean-up) and contention between "
             "phones for this machine's 2 cores (every loopback phone's shell and stand-in run here; a real "
             "phone does its work on its own CPU).", "",
             "| phones | runs | wall s (median of rounds) | all rounds s | runs/s | speed-up "
             "| parallel efficiency | overhead per run s |", "|---:|---:|---:|---|---:|---:|---:|---:|"]
    lines += [row + f" {wall_s / MODELS - args.phone_seconds:.2f} |"   # overhead per run on each phone
              for row, wall_s in scaling_rows(PHONE_COUNTS, measured)]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


def farm_main(args) -> None:
    import secrets
    from concurrent.futures import ThreadPoolExecutor

    from tests.loopback_adb.fixtures import start_loopback
    from tests.loopback_stf import LoopbackStf

    work = Path(tempfile.mkdtemp(prefix="farm_throughput_"))
    private_client(work)
    load_before = os.getloadavg()
    stf = LoopbackStf(f"stf-{secrets.token_hex(16)}")
    with ThreadPoolExecutor(max_workers=max(FARM_COUNTS)) as pool:
        phones = list(pool.map(lambda index: start_loopback(work / f"phone{index}"), range(max(FARM_COUNTS))))
    try:
        for index, phone in enumerate(phones):
            phone.set_benchmark("ok", delay_s=args.phone_seconds)
            stf.add(f"FARM-{index}", phone.serial)
        models = [tiny_model(work / "models" / f"model{index}.tflite") for index in range(MODELS)]
        measured = measure_rounds(FARM_COUNTS, args.rounds, "farm phones", lambda count:
                                  one_farm_configuration(stf, count, models, SETTINGS, work / "results"))
        if stf.held() or stf.taken != stf.released:
            raise SystemExit(f"leases left: {stf.held()} ({stf.taken} taken, {stf.released} released)")
    finally:
        stf.stop()
        for phone in phones:
            phone.stop()
    write_farm(args, measured, load_before, os.getloadavg())
    shutil.rmtree(work, ignore_errors=True)


def one_farm_configuration(stf, count: int, models: list[Path], settings: BenchSettings,
                           results: Path) -> dict:
    from device_bench.binary import BinaryChoice
    from device_bench.farm import Farm, select_with_farm
    from device_bench.stf import StfClient

    started = time.perf_counter()
    with Farm(StfClient(stf.url, stf.token)) as farm:
        specs = [parse_spec(f"FARM-{index}") for index in range(count)]
        chosen = select_with_farm(farm, specs, [], False, {}, binary=BinaryChoice(FAKE_BENCHMARK))
        run = benchmark_devices(chosen, models, settings=settings, benchmark_binary=FAKE_BENCHMARK,
                                results_root=results)
    return measured_run(run, count, "farm phones", time.perf_counter() - started)


def write_farm(args, measured: dict[int, list[dict]], load_before, load_after) -> None:
    from _context import context

    ctx = context()
    command = (f"python benchmarks/lab_throughput.py --farm --rounds {args.rounds} "
               f"--phone-seconds {args.phone_seconds:g}")
    lines = ["", FARM_SECTION, "", f"Command: `{command}`  ",
             f"Machine: {ctx['cpu']}, {ctx['cores']} cores, {ctx['os']}, Python {ctx['python']}  ",
             f"Commit: {ctx['git_commit']}  ", f"Date: {ctx['utc_time']}", "",
             f"Load average (1, 5, 15 min) before: {', '.join(f'{x:.2f}' for x in load_before)}; after: "
             f"{', '.join(f'{x:.2f}' for x in load_after)} (shared machine: compare these rows with each "
             "other only).", "",
             "Phones leased from the loopback STF (tests/loopback_stf.py) through `device_bench.farm`, the "
             "code behind `mnbench device --stf`: lease, ADB key, remote connect (a TCP bridge to each "
             "loopback phone), keep-alive, benchmark, disconnect and release are all inside the wall time. "
             f"The stand-in benchmark_model sleeps {args.phone_seconds:g} s per run, so a phone needs at "
             f"least {MODELS * args.phone_seconds:g} s for the 8 models.", "",
             "| farm phones | runs | wall s (median of rounds) | all rounds s | runs/s | speed-up "
             "| parallel efficiency |", "|---:|---:|---:|---|---:|---:|---:|"]
    lines += [row for row, _ in scaling_rows(FARM_COUNTS, measured)]
    text = args.out.read_text() if args.out.exists() else ""
    text = text.split("\n" + FARM_SECTION, 1)[0].rstrip("\n") + "\n"
    args.out.write_text(text + "\n".join(lines) + "\n")
    print(f"wrote the farm section of {args.out}")


if __name__ == "__main__":
    main()
