"""A lab on one machine: loopback phones behind several private Google adb servers (Debian's ``adb``).

Used by ``tests/test_lab.py`` and ``benchmarks/lab_throughput.py``. Each server has its own HOME (its own
adbkey) and port on 127.0.0.1; phones are spread over the servers round-robin and joined with ``adb
connect``. :meth:`Lab.stop` disconnects the phones, kills the servers and stops the phones.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from .fixtures import GoogleAdb, LoopbackHandle, free_port, start_loopback


@dataclass
class Lab:
    """Running servers and phones; ``server_of[serial]`` is the server a phone is connected to."""

    servers: list[GoogleAdb]
    phones: list[LoopbackHandle]
    server_of: dict[str, GoogleAdb] = field(default_factory=dict)

    @staticmethod
    def address(server: GoogleAdb) -> str:
        return f"127.0.0.1:{server.server_port}"

    def add_phone(self, workdir: Path, server: GoogleAdb, **knobs) -> LoopbackHandle:
        """Start one more phone and connect it to ``server``."""
        phone = start_loopback(workdir, **knobs)
        self.phones.append(phone)
        self.server_of[phone.serial] = server
        state = server.connect(phone.serial)
        if state != "device":
            raise RuntimeError(f"adb shows {phone.serial} as {state!r}")
        return phone

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
        for phone in self.phones:
            phone.stop()


def start_lab(workdir: Path, phones: int = 8, servers: int = 2) -> Lab:
    """Start the servers and phones (in parallel) and connect every phone to its server.

    Raises:
        RuntimeError: a server or phone did not start, or a phone did not reach the ``device`` state.
    """
    lab = Lab([], [])
    try:
        for index in range(servers):
            home = workdir / f"server{index}"
            home.mkdir(parents=True, exist_ok=True)
            server = GoogleAdb(home, free_port())
            started = server.run("start-server", timeout_s=30)
            if started.returncode != 0:
                raise RuntimeError(f"adb start-server failed: {started.stderr}")
            lab.servers.append(server)
        with ThreadPoolExecutor(max_workers=phones) as pool:
            lab.phones = list(pool.map(lambda index: start_loopback(workdir / f"phone{index}"),
                                       range(phones)))
        lab.server_of = {phone.serial: lab.servers[index % servers] for index, phone in enumerate(lab.phones)}
        with ThreadPoolExecutor(max_workers=phones) as pool:
            states = list(pool.map(lambda phone: lab.server_of[phone.serial].connect(phone.serial),
                                   lab.phones))
        if set(states) != {"device"}:
            raise RuntimeError(f"adb states of the lab's phones: {states}")
    except BaseException:
        lab.stop()
        raise
    return lab
