"""What ``blockdrive jobs run`` and ``jobs history`` print for people."""

from __future__ import annotations

from jobs import humanize


def test_sizes_in_binary_units():
    assert humanize.size(512) == "512 B"
    assert humanize.size(1536) == "1.5 KiB"
    assert humanize.size(int(1.2 * 2**30)) == "1.2 GiB"
    assert humanize.size(3 * 2**50 * 1024) == "3072.0 PiB"  # the last unit takes any size
    assert humanize.size(1536, digits=2) == "1.50 KiB"


def test_a_figure_is_shown_by_the_kind_its_key_names():
    assert humanize.figure("dedup_ratio", 1.2405059024029486) == "1.24x"
    assert humanize.figure("bytes_freed", 5 * 2**20) == "5.0 MiB"
    assert humanize.figure("write_seconds", 3.456) == "3.5s"
    assert humanize.figure("packs_tiered", 12345) == "12,345"
    assert humanize.figure("dry_run", True) == "yes"
    assert humanize.figure("errors", [1, 2, 3, 4]) == "4 entries (--json lists them)"
    assert humanize.figure("note", None) == "-"


def test_lines_align_labels_indent_mappings_and_skip_empty_lists():
    out = humanize.lines({"plan_mark": {"blocks": 3, "bytes": 2048}, "swept": 2, "errors": []})
    assert out == ["  plan mark:", "    blocks  3", "    bytes   2.0 KiB", "  swept      2"]
