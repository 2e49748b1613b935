"""Phones leased from a DeviceFarmer STF farm for one ``mnbench device`` run, and always given back.

:class:`Farm` is a context manager around :class:`~device_bench.stf.StfClient`. :meth:`Farm.take` leases each
chosen phone (``POST /user/devices`` with the lease timeout), registers this host's ADB key once, asks for
the phone's remote-connect address and returns it as a :class:`~device_bench.lab.LabDevice` whose serial is
that ``HOST:PORT``: the session code reaches it like any adbd endpoint (:mod:`device_bench.connect`), and the
per-phone lock (:mod:`device_bench.phone_lock`) still applies on top of STF's lease. The rows' ``target`` is
the farm's serial and their ``target_desc`` holds ``stf`` (the farm's URL and the phone's STF fields).

A phone another user holds is skipped with one line, or waited for up to ``wait_s``. STF releases a phone
whose remote-connect address saw no ADB packet for the lease timeout (see :mod:`device_bench.stf`), and a
benchmark run can be silent for longer, so each lease has a keep-alive thread that runs ``true`` over its own
ADB connection every third of the timeout.

Leaving the context releases every lease (``DELETE .../remoteConnect``, then ``DELETE /user/devices/S``)
however it is left: normal end, an error, the first or second Ctrl-C. While inside, SIGTERM is turned into
Ctrl-C (so a killed CI job cleans up like an interrupted one), and while releasing, Ctrl-C and SIGTERM are
ignored (each request is bounded by the HTTP timeout). A lease that cannot be released is said with its
serial; with no other error on the way out, that is :class:`~device_bench.errors.LeaseNotReleased`.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

from .adb_direct import AdbDirectTransport, default_key_path, load_signers
from .adb_server import AdbServer
from .binary import BinaryChoice, prebuilt_abi, prebuilt_url
from .connect import parse_tcp_serial
from .errors import BenchError, BenchInputError, FarmInputError, LeaseNotReleased
from .lab import DeviceSpec, LabDevice, select
from .phone_lock import this_host
from .stf import StfClient, StfDevice, StfHttpError

logger = logging.getLogger(__name__)

DEFAULT_LEASE_S = 900.0     # STF's own default group timeout (``stf provider --group-timeout``)
POLL_S = 2.0                # how often a wait for a held phone asks the farm again
KEEPALIVE_COMMAND_S = 30.0


@dataclass
class Lease:
    """One leased phone: its STF description, remote-connect address and keep-alive."""

    device: StfDevice
    address: str | None = None
    keeper: "_KeepAlive | None" = None
    notes: list[str] = field(default_factory=list)


class Farm:
    """The leases of one run on one farm; see the module docstring.

    Args:
        client: the farm's API.
        lease_s: the lease (idle) timeout given to STF.
        say: prints one line for the user (skipped phones, failed releases).
        connect_options: passed to :class:`AdbDirectTransport` by the keep-alive (tests: key, timeouts).
    """

    def __init__(self, client: StfClient, lease_s: float = DEFAULT_LEASE_S,
                 say: Callable[[str], None] = logger.warning, **connect_options) -> None:
        self.client, self.lease_s, self.say, self.connect_options = client, lease_s, say, connect_options
        self.leases: dict[str, Lease] = {}
        self.email = ""
        self._key_registered = False
        self._old_sigterm = None

    # ------------------------------------------------------------------------------------ context
    def __enter__(self) -> "Farm":
        self.email = str(self.client.user().get("email") or "")   # checks the URL and the token first
        if threading.current_thread() is threading.main_thread():
            self._old_sigterm = signal.signal(signal.SIGTERM, _sigterm_as_ctrl_c)
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        """Release every lease (signals ignored meanwhile); raise or say what could not be released."""
        main = threading.current_thread() is threading.main_thread()
        old_sigint = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
        old_sigterm = signal.signal(signal.SIGTERM, signal.SIG_IGN) if main else None
        try:
            failures = [failure for lease in list(self.leases.values()) if (failure := self._release(lease))]
        finally:
            if main:
                signal.signal(signal.SIGINT, old_sigint)
                signal.signal(signal.SIGTERM, self._old_sigterm or old_sigterm)
                self._old_sigterm = None
        if not failures:
            return
        message = (f"could not release {len(failures)} phone(s) leased from {self.client.url}: "
                   f"{'; '.join(failures)} (release them in STF's UI, or STF does after "
                   f"{self.lease_s:g} s idle)")
        if sys.exc_info()[1] is None:
            raise LeaseNotReleased(message)
        self.say(message)    # another error is on its way out: say this one too

    # ------------------------------------------------------------------------------------ choose
    def choose(self, specs: Sequence[DeviceSpec], all_devices: bool, where: dict[str, str]
               ) -> tuple[list[tuple[StfDevice, dict]], list[DeviceSpec]]:
        """The farm phones asked for (with their labels) and the specs the farm does not list.

        ``--all-devices`` adds every free phone; ``where`` keeps the phones whose STF fields (or labels)
        match. Phones that are held, absent or not ready are said in one line each and left out.

        Raises:
            BenchInputError: ``where`` names a key that is not an STF field.
        """
        listed = {device.serial: device for device in self.client.devices()}
        known = {key for device in listed.values() for key in device.fields} | {"serial"}
        unknown = sorted(key for key in where if key not in known)
        if unknown and listed:
            raise BenchInputError(f"--where {', '.join(unknown)}: STF phones have {', '.join(sorted(known))}")
        wanted: dict[str, tuple[StfDevice, dict]] = {}
        rest = []
        for spec in specs:
            if spec.server is None and spec.serial in listed:
                wanted.setdefault(spec.serial, (listed[spec.serial], dict(spec.labels)))
            else:
                rest.append(spec)
        if all_devices:
            for device in listed.values():
                if device.state == "free":
                    wanted.setdefault(device.serial, (device, {}))
                elif device.serial not in wanted and _matches(device, {}, where):
                    self.say(f"farm phone {device.serial} ({device.fields['model'] or '?'}): {device.state}, "
                             "not taken")
        return [(device, labels) for device, labels in wanted.values()
                if _matches(device, labels, where)], rest

    # ------------------------------------------------------------------------------------ take
    def take(self, chosen: Sequence[tuple[StfDevice, dict]], wait_s: float = 0.0,
             binary: BinaryChoice | None = None) -> list[LabDevice]:
        """Lease and remote-connect each phone; phones held by others are skipped (or waited for).

        Raises:
            BenchInputError: a phone's ABI has no benchmark binary (checked before any lease).
            FarmInputError: the farm does not have a phone (404).
            FarmError: STF failed a lease or a remote connect (what was taken is released on the way out).
        """
        if binary is None or binary.path is None:
            for device, _ in chosen:
                try:
                    prebuilt_url(prebuilt_abi([device.fields["abi"]]), release="-")
                except BenchError as error:
                    raise type(error)(f"farm phone {device.serial}: {error}") from None
        taken = []
        for device, labels in chosen:
            if self._lease(device, wait_s):
                taken.append(self._connect(device, labels))
        return taken

    def _lease(self, device: StfDevice, wait_s: float) -> bool:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                self.client.lease(device.serial, self.lease_s)
            except StfHttpError as error:
                if error.status == 404:
                    raise FarmInputError(f"the farm {self.client.url} has no phone {device.serial} "
                                         f"(404 {error.description})") from None
                if error.status != 403:
                    raise
                remaining_s = deadline - time.monotonic()
                if remaining_s <= 0:
                    state = self._state(device.serial)
                    waited = f"; waited {wait_s:g} s, see --lock-wait" if wait_s else " (see --lock-wait)"
                    self.say(f"farm phone {device.serial}: {state}: skipped{waited}")
                    return False
                time.sleep(min(POLL_S, remaining_s))
                continue
            self.leases[device.serial] = Lease(device)
            return True

    def _state(self, serial: str) -> str:
        try:
            return self.client.device(serial).state
        except BenchError as error:
            return f"not available ({error})"

    def _connect(self, device: StfDevice, labels: dict) -> LabDevice:
        lease = self.leases[device.serial]
        if not self._key_registered:   # STF's remote connect only lets in the ADB keys its users registered
            load_signers(None)          # creates ~/.android/adbkey(.pub) when missing, as adb does
            public = default_key_path().with_name("adbkey.pub").read_text(encoding="utf-8").strip()
            self.client.add_adb_key(public, f"mnbench@{this_host()}")
            self._key_registered = True
        lease.address = self.client.remote_connect(device.serial)
        lease.keeper = _KeepAlive(lease.address, self.lease_s / 3, self.connect_options)
        lease.keeper.start()
        about = {"url": self.client.url, "serial": device.serial, "remote_connect": lease.address,
                 **device.fields}
        return LabDevice(lease.address, None, device.serial, labels, farm=about)

    # ------------------------------------------------------------------------------------ release
    def _release(self, lease: Lease) -> str | None:
        """Give one phone back; returns why it could not be, or None."""
        serial = lease.device.serial
        if lease.keeper is not None:
            lease.keeper.stop()
        if lease.address is not None:
            try:
                self.client.remote_disconnect(serial)
            except BenchError as error:
                logger.info("farm phone %s: remote disconnect: %s", serial, error)
        try:
            self.client.release(serial)
        except StfHttpError as error:
            if error.status != 403:
                return f"{serial} ({error})"
            lease.notes.append(f"already given back ({error.description})")   # expired or taken by an admin
            logger.warning("farm phone %s was no longer ours at release: %s", serial, error.description)
        except BenchError as error:
            return f"{serial} ({error})"
        del self.leases[serial]
        return None


def _matches(device: StfDevice, labels: dict, where: dict[str, str]) -> bool:
    values = {**device.fields, "serial": device.serial, **labels}
    return all(values.get(key) == value for key, value in where.items())


def _sigterm_as_ctrl_c(_signum, _frame) -> None:
    raise KeyboardInterrupt


class _KeepAlive:
    """Runs ``true`` on the phone over its own ADB connection every ``interval_s`` until stopped."""

    def __init__(self, address: str, interval_s: float, connect_options: dict) -> None:
        self.address, self.interval_s, self.connect_options = address, interval_s, connect_options
        self.stopped = threading.Event()
        self.beats = 0
        self._thread = threading.Thread(target=self._run, name=f"mnbench-stf-keepalive-{address}",
                                        daemon=True)
        self._transport: AdbDirectTransport | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop after the command in progress, if any (not waited for: the phone may not answer)."""
        self.stopped.set()

    def _run(self) -> None:
        try:
            while not self.stopped.wait(self.interval_s):
                try:
                    if self._transport is None:
                        self._transport = AdbDirectTransport.tcp(*parse_tcp_serial(self.address),
                                                                 **self.connect_options)
                        self._transport.connect()
                    self._transport.shell("true", KEEPALIVE_COMMAND_S)
                    self.beats += 1
                except BenchError as error:   # next time on a new connection; the session reports its own
                    logger.info("keep-alive of %s: %s", self.address, error)
                    self._close()
        finally:
            self._close()

    def _close(self) -> None:
        if self._transport is not None:
            transport, self._transport = self._transport, None
            try:
                transport.close()
            except Exception as error:  # noqa: BLE001 - closing a dead connection
                logger.debug("keep-alive close: %s", error)


def select_with_farm(farm: Farm, specs: Sequence[DeviceSpec], servers: Sequence[AdbServer], all_devices: bool,
                     where: dict[str, str], wait_s: float = 0.0, binary: BinaryChoice | None = None
                     ) -> list[LabDevice]:
    """The devices of one run on a farm and, mixed in, on adb servers (:func:`device_bench.lab.select`).

    An unqualified serial the farm lists is a farm phone; the other names go to the adb servers given with
    ``servers`` (an explicit list; empty: none). ``all_devices`` takes every free farm phone and every phone
    of those servers. The farm phones are leased here.

    Raises:
        FarmInputError: a serial neither the farm nor an adb server has (the farm answers 404).
        BenchInputError: ``where`` selects nothing; an ABI without a benchmark binary.
        BenchError: no phone is left to benchmark (all held by others).
    """
    chosen, rest = farm.choose(specs, all_devices, where)
    if not servers:
        for spec in rest:
            if spec.server is None and parse_tcp_serial(spec.serial) is None:
                try:
                    farm.client.device(spec.serial)
                except StfHttpError as error:
                    raise FarmInputError(f"the farm {farm.client.url} has no phone {spec.serial} "
                                         f"({error.status} {error.description})") from None
                raise FarmInputError(f"farm phone {spec.serial} is not in your list of {farm.client.url}")
    rest = [spec for spec in rest if all(spec.labels.get(key) == value for key, value in where.items())]
    lab = select(rest, servers or [AdbServer()], all_devices and bool(servers)) \
        if rest or (all_devices and servers and not where) else []
    if not chosen and not lab:
        shown = " ".join(f"{key}={value}" for key, value in where.items())
        raise (BenchInputError(f"--where {shown} selects no phone") if where else
               BenchError(f"no phone to benchmark: the farm {farm.client.url} has no free phone"
                          + (" and the adb servers list none" if servers else "")))
    leased = farm.take(chosen, wait_s, binary)
    if not leased and not lab:
        raise BenchError(f"no phone to benchmark: every phone asked for on {farm.client.url} is held by "
                         "someone else (see --lock-wait)")
    return leased + lab


def open_farm(url: str, token_file=None, lease_s: float = DEFAULT_LEASE_S,
              say: Callable[[str], None] = logger.warning, **connect_options) -> Farm:
    """A :class:`Farm` for ``--stf URL`` with the token from ``$STF_TOKEN`` or ``token_file`` (not entered).

    Raises:
        FarmInputError: a malformed URL, or no token.
    """
    from .stf import read_token

    return Farm(StfClient(url, read_token(token_file)), lease_s, say, **connect_options)


def farm_listing(client: StfClient) -> list[dict]:
    """``mnbench devices --stf``: every phone of the farm with its STF fields and whose it is."""
    return [{"serial": device.serial, "state": device.state, **device.fields, "farm": client.url}
            for device in client.devices()]
