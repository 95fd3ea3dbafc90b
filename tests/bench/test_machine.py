"""The machine record every bench result carries (bench/machine.py)."""

from __future__ import annotations

from bench.machine import machine, machine_line
from edge_mm.runtime.cpu_features import proc_cpuinfo, x86_family_model

ZEN3 = "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 1\nmodel name\t: AMD EPYC\n\n"


def test_the_family_and_model_tell_apart_cpus_with_one_brand_string() -> None:
    zen4 = ZEN3.replace("model\t\t: 1\n", "model\t\t: 17\n")
    assert x86_family_model(ZEN3) == "family 25 model 1"
    assert x86_family_model(zen4) == "family 25 model 17"
    second = ZEN3 + "processor\t: 1\ncpu family\t: 6\nmodel\t\t: 85\n"
    assert x86_family_model(second) == "family 25 model 1"  # the first block
    arm = "processor\t: 0\nBogoMIPS\t: 50.00\nCPU part\t: 0xd0c\n\nprocessor\t: 1\n\nHardware\t: BCM2835\n"
    assert x86_family_model(arm) == ""  # Arm: no family
    assert proc_cpuinfo(arm)["hardware"] == "BCM2835"  # a line after the blocks is read too
    assert machine()["cpu_id"] == x86_family_model()


def test_a_run_under_the_cpu_mask_says_so(monkeypatch) -> None:
    monkeypatch.delenv("CPUMASK", raising=False)
    assert "masked" not in machine_line()
    m = {**machine(), "cpumask": "avx2", "cpu_id": "family 25 model 17"}
    line = machine_line(m)
    assert "masked by `scripts/cpumask.sh avx2`" in line
    assert "(family 25 model 17, " in line


def test_a_record_stored_before_these_fields_still_prints() -> None:
    old = {"cpu_model": "AMD EPYC", "machine": "x86_64", "cores": 2, "int8_path": "avx2", "int8_flags": ["avx2"]}
    assert machine_line({**old, "platform": "Linux"}).startswith(
        "Machine: AMD EPYC (x86_64, 2 cores), int8 path **avx2** ("
    )
