"""Development harness shared by the end-to-end tests (tests/e2e) and the benchmarks (bench/):
start a real ``blockdrive serve`` on a free port (``harness.server``) and put a byte-counting,
connection-cutting TCP proxy in front of it (``harness.proxy``).

It is not part of the installed product (setup.py does not list it): it lives beside tests/ and
bench/ so that neither has to import the other."""
