"""Functions.base.runtime: which precision a CPU gets under --mixed-precision."""

import logging

import pytest

from Functions.base import runtime

CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
flags\t\t: fpu vme sse sse2 avx2 avx512f {extra}
bogomips\t: 4000.00

processor\t: 1
flags\t\t: fpu vme sse sse2 avx2 avx512f {extra}
"""


@pytest.mark.parametrize("extra, expected", [("avx512_bf16 avx512_vnni", True), ("amx_bf16 amx_tile", True),
                                             ("avx512_vnni", False), ("", False)])
def test_cpu_has_bf16_reads_the_flags_line(tmp_path, extra, expected):
    info = tmp_path / "cpuinfo"
    info.write_text(CPUINFO.format(extra=extra))
    assert runtime.cpu_has_bf16(info) is expected


def test_cpu_has_bf16_is_false_without_cpuinfo(tmp_path):
    assert runtime.cpu_has_bf16(tmp_path / "missing") is False


@pytest.mark.parametrize("native, warns", [(True, False), (False, True)])
def test_mixed_precision_on_a_cpu_uses_bfloat16_and_warns_only_without_bf16_instructions(
        monkeypatch, caplog, native, warns):
    import keras

    before = keras.mixed_precision.global_policy().name
    monkeypatch.setattr(runtime, "has_gpu", lambda: False)
    monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: native)
    try:
        with caplog.at_level(logging.WARNING, logger="Functions"):
            runtime.set_precision(True)
        assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"
        assert any("slower than float32" in r.getMessage() for r in caplog.records) is warns
        runtime.set_precision(False)
        assert keras.mixed_precision.global_policy().name == "float32"
    finally:
        keras.mixed_precision.set_global_policy(before)
