"""The load-test harness behind ``python -m loadtest harness``.

Scenarios (connect, online, offline-drain, fan-out, mixed) drive simulated
devices held by several load processes against a pushgw cluster started on
loopback, and the online and offline-drain shapes also against Eclipse
Mosquitto, so the report can print same-run ratios.
"""
