"""A lab of phones on several hosts, reached through the adb servers that labs already run.

Each host with phones runs an adb server that listens on the network (``adb -a -P 5037 nodaemon server``);
device farms such as DeviceFarmer STF hand out claimed phones as ``HOST:PORT`` adbd endpoints. mnbench asks
every server given with ``--adb-server HOST:PORT`` (default: the one ``$ADB_SERVER_SOCKET`` or
``$ANDROID_ADB_SERVER_PORT`` names) which phones it has, and reaches each phone through its server.

A device is named ``SERIAL`` (looked up on every server; on two it is an error), ``HOST:PORT`` (a serial the
servers list, else an adbd endpoint reached directly) or ``HOST:PORT/SERIAL`` (that server's phone). A
devices file holds one per line with ``key=value`` labels (``R58M123 soc=sm8550 pool=ci``); ``--where
key=value`` selects by label, and the labels land in the result rows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from .adb_server import AdbServer
from .connect import parse_tcp_serial
from .errors import AdbServerUnavailable, AmbiguousDevice, BenchInputError
from .transport import DeviceEntry

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeviceSpec:
    """A device as the user names it: ``serial``, the ``server`` (``HOST:PORT``) when qualified, labels."""

    serial: str
    server: str | None = None
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.server}/{self.serial}" if self.server else self.serial


@dataclass(frozen=True)
class LabDevice:
    """A resolved device: its serial, the server it is on (None: reached directly), its name in the rows."""

    serial: str
    server: AdbServer | None
    name: str
    labels: dict[str, str] = field(default_factory=dict)
    farm: dict | None = None    # a phone leased from STF (:mod:`device_bench.farm`): the farm and its fields

    def about(self) -> dict:
        """What the rows' ``target_desc`` records about where the phone was."""
        return {"adb_server": self.server.address if self.server else None, "labels": dict(self.labels),
                **({"stf": dict(self.farm)} if self.farm else {})}


def parse_server(text: str) -> AdbServer:
    """An adb server from ``HOST:PORT`` (or ``[v6]:PORT``).

    Raises:
        BenchInputError: not HOST:PORT (a usage error, exit 2).
    """
    address = parse_tcp_serial(text.strip())
    if address is None:
        raise BenchInputError(f"--adb-server {text!r} is not HOST:PORT (e.g. lab-host-3:5037)")
    return AdbServer(*address)


def parse_spec(text: str) -> DeviceSpec:
    """One device: ``SERIAL``, ``HOST:PORT`` or ``HOST:PORT/SERIAL``, then optional ``key=value`` labels.

    Raises:
        BenchInputError: a label without ``=``, or an empty serial.
    """
    words = text.split()
    if not words:
        raise BenchInputError("empty device name")
    head, labels = words[0], {}
    for word in words[1:]:
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise BenchInputError(f"device {head}: label {word!r} is not key=value")
        labels[key] = value
    server, slash, serial = head.partition("/")
    if slash and parse_tcp_serial(server) is not None:
        if not serial:
            raise BenchInputError(f"device {head!r} names a server but no serial")
        return DeviceSpec(serial, parse_server(server).address, labels)
    return DeviceSpec(head, None, labels)


def read_devices_file(path: Path) -> list[DeviceSpec]:
    """Devices from a file, one per line with optional labels; blank lines and ``#`` comments are skipped.

    Raises:
        BenchInputError: the file cannot be read, or a line is malformed (its number is named).
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise BenchInputError(f"cannot read the devices file {path}: {error}") from None
    specs = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if line:
            try:
                specs.append(parse_spec(line))
            except BenchInputError as error:
                raise BenchInputError(f"{path}:{number}: {error}") from None
    return specs


def parse_where(pairs: Iterable[str]) -> dict[str, str]:
    """``--where key=value`` options as a dict.

    Raises:
        BenchInputError: a pair without ``=``.
    """
    wanted = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise BenchInputError(f"--where {pair!r} is not key=value")
        wanted[key.strip()] = value.strip()
    return wanted


def list_servers(servers: Sequence[AdbServer], strict: bool = True) -> list[tuple[AdbServer, DeviceEntry]]:
    """Every device of every server, with its server; a server that does not answer is skipped (and
    logged as a warning when ``strict``).

    Raises:
        AdbServerUnavailable: ``strict`` and no server answers at all.
    """
    listed, failures = [], []
    for server in servers:
        try:
            listed += [(server, entry) for entry in server.list_devices()]
        except AdbServerUnavailable as error:
            failures.append(str(error))
            logger.log(logging.WARNING if strict else logging.DEBUG, "%s", error)
    if strict and failures and len(failures) == len(servers):
        raise AdbServerUnavailable("; ".join(failures))
    return listed


def select(specs: Sequence[DeviceSpec], servers: Sequence[AdbServer], all_devices: bool = False,
           where: dict[str, str] | None = None) -> list[LabDevice]:
    """Resolve the named devices (and, with ``all_devices``, every device the servers list) to servers.

    Raises:
        AmbiguousDevice: an unqualified serial that several servers list.
        BenchInputError: ``where`` selects nothing.
        AdbServerUnavailable: ``all_devices`` and no server answers.
    """
    where = where or {}
    specs = [spec for spec in specs if all(spec.labels.get(key) == value for key, value in where.items())]
    listed = list_servers(servers, strict=all_devices)   # named devices may be adbd endpoints: no server
    by_serial: dict[str, list[AdbServer]] = {}
    for server, entry in listed:
        by_serial.setdefault(entry.serial, []).append(server)
    chosen = [_resolve(spec, servers, by_serial) for spec in specs]
    if all_devices and not where:
        for server, entry in listed:
            shared = len(by_serial[entry.serial]) > 1
            name = f"{server.address}/{entry.serial}" if shared else entry.serial
            chosen.append(LabDevice(entry.serial, server, name))
    unique: dict[str, LabDevice] = {}
    for device in chosen:
        unique.setdefault(device.name, device)   # a devices-file line (with labels) wins over the listing
    unique = list(unique.values())
    if where and not unique:
        shown = " ".join(f"{key}={value}" for key, value in where.items())
        raise BenchInputError(f"--where {shown} selects no device of the devices file")
    return unique


def _resolve(spec: DeviceSpec, servers: Sequence[AdbServer],
             by_serial: dict[str, list[AdbServer]]) -> LabDevice:
    if spec.server is not None:
        server = next((item for item in servers if item.address == spec.server), None)
        server = server or parse_server(spec.server)
        return LabDevice(spec.serial, server, spec.name, spec.labels)
    holders = by_serial.get(spec.serial, [])
    if len(holders) > 1:
        qualified = ", ".join(f"{server.address}/{spec.serial}" for server in holders)
        raise AmbiguousDevice(f"device {spec.serial} is listed by {len(holders)} adb servers: name one of "
                              f"{qualified}")
    if holders:
        return LabDevice(spec.serial, holders[0], spec.serial, spec.labels)
    # Not listed: a HOST:PORT adbd endpoint (STF, Wi-Fi) reached directly, or a missing phone that fails its
    # runs with the first server's listing as the reason.
    server = None if parse_tcp_serial(spec.serial) else (servers[0] if servers else None)
    return LabDevice(spec.serial, server, spec.serial, spec.labels)
