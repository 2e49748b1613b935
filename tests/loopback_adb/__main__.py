"""Run the loopback ADB device: ``python -m tests.loopback_adb --port 0 --port-file F --sandbox DIR``.

The port is written to ``--port-file`` (atomically) once the device listens; SIGTERM/SIGINT stop it and kill
every command it started.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

from .device import DEFAULT_FEATURES, DeviceConfig, Faults, LoopbackDevice
from .sandbox import Sandbox, load_profile


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.loopback_adb", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 = any free port outside 5555-5585")
    parser.add_argument("--port-file", type=Path, help="write the listening port here")
    parser.add_argument("--sandbox", type=Path, required=True, help="folder standing in for the phone's /")
    parser.add_argument("--profile", type=Path, help="JSON profile: props, cpus, thermal_zones, battery")
    parser.add_argument("--adb-keys", type=Path, help="authorized keys file")
    parser.add_argument("--no-auth", action="store_true", help="accept hosts without AUTH")
    parser.add_argument("--no-new-keys", action="store_true", help="accept only keys in --adb-keys")
    parser.add_argument("--features", default=DEFAULT_FEATURES, help="features in the banner ('' = none)")
    parser.add_argument("--max-data", type=int, default=1024 * 1024, help="device maxdata in bytes")
    parser.add_argument("--cmd-timeout-s", type=float, default=300.0, help="kill commands running longer")
    parser.add_argument("--reject-auth", action="store_true", help="fault: never accept a key (unauthorized)")
    parser.add_argument("--drop-after-push-bytes", type=int, help="fault: cut the connection mid-push")
    parser.add_argument("--drop-on-shell", help="fault: cut the connection during a command containing this")
    parser.add_argument("--delay-s", type=float, default=0.0, help="fault: delay CNXN/AUTH/OPEN answers")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sandbox = Sandbox(args.sandbox, load_profile(args.profile)).create()
    faults = Faults(reject_auth=args.reject_auth, drop_after_push_bytes=args.drop_after_push_bytes,
                    drop_on_shell=args.drop_on_shell, delay_s=args.delay_s)
    config = DeviceConfig(sandbox=sandbox, auth_required=not args.no_auth,
                          accept_new_keys=not args.no_new_keys, features=args.features,
                          maxdata_bytes=args.max_data, cmd_timeout_s=args.cmd_timeout_s, faults=faults,
                          adb_keys=args.adb_keys)
    device = LoopbackDevice(config, host=args.host, port=args.port).start()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    if args.port_file:
        partial = args.port_file.with_name(args.port_file.name + ".partial")
        partial.write_text(f"{device.port}\n")
        os.replace(partial, args.port_file)
    print(f"loopback adb device listening on {args.host}:{device.port} (sandbox {sandbox.root})", flush=True)
    while not stop.wait(0.5):
        pass
    device.stop()
    stop.wait(0.3)  # let connection threads kill their process groups
    return 0


if __name__ == "__main__":
    sys.exit(main())
