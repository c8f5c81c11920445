"""The /metrics helpers: method labels are a closed set; allow_from parses CIDR lists and
refuses anything else at start-up."""

from __future__ import annotations

import ipaddress

import pytest

from storage.errors import ConfigError
from webapi.metrics import method_label, parse_networks


def test_method_labels_are_a_closed_set():
    assert method_label("GET") == "GET" and method_label("PROPFIND") == "PROPFIND"
    assert {method_label(m) for m in ("get", "BREW", "X" * 1000, "G\u00c9T")} == {"other"}


def test_allow_from_parses_cidr_lists():
    nets = parse_networks("127.0.0.1, 10.0.0.0/8 ::1/128")
    assert nets == [ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("10.0.0.0/8"),
                    ipaddress.ip_network("::1/128")]
    assert parse_networks("") == []
    with pytest.raises(ConfigError):
        parse_networks("10.0.0.0/8, localhost")
