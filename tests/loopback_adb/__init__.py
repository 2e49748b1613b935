"""A loopback Android device for tests: speaks the real ADB protocol on 127.0.0.1, backed by a sandbox folder.

Run it with ``python -m tests.loopback_adb --port 0 --port-file F --sandbox DIR [--profile P.json]``
(``--help`` lists the knobs); pytest fixtures are in :mod:`tests.loopback_adb.fixtures`.

* Protocol (:mod:`.protocol`, :mod:`.device`): CNXN with version/maxdata negotiation, AUTH (20-byte token,
  signature checked with plain ``pow()``, RSAPUBLICKEY accepted like tapping "Allow" unless ``--no-new-keys``
  or ``--reject-auth``), OPEN/OKAY/WRTE/CLSE with one WRTE in flight, WRTEs split at the host's maxdata,
  checksums always sent and only checked below version 0x01000001.
* Services (:mod:`.services`): ``shell:``/``exec:`` (legacy: stderr merged, no exit status),
  ``shell,v2,...:`` (framed stdout/stderr/exit), ``sync:`` (STAT, STA2, LST2, LIST, LIS2, SEND, RECV, QUIT).
  Banner features default to ``shell_v2,stat_v2,ls_v2,fixed_push_mkdir``; ``--features ""`` makes adb fall
  back to legacy shell and STAT v1. Interactive shells (no command) are not offered.
* Sandbox (:mod:`.sandbox`): ``/data``, ``/sdcard``, ``/sys``, ``/system``, ``/vendor``, ``/proc/cpuinfo``...
  live under DIR; ``getprop``, ``dumpsys battery``, ``taskset`` (records, does not pin) and ``python3`` are in
  ``DIR/system/bin``; ``/sys`` cpufreq, thermal and battery files come from the profile. Commands run with the
  host's ``/bin/sh`` in their own process group, killed on CLSE, connection loss, ``--cmd-timeout-s`` or stop.
* Records (``DIR/.loopback``): ``events.jsonl`` (cnxn, auth method, open, spawn, exit, killed, sync, drop),
  ``adb_keys``, ``taskset.log``, ``fake_benchmark.json`` and ``fake_benchmark_calls.jsonl``.
* Faults: ``--reject-auth``, ``--drop-after-push-bytes N``, ``--drop-on-shell TEXT``, ``--delay-s S``.
"""
