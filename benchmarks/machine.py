"""The CPU a benchmark ran on, named precisely enough to compare runs.

lscpu's "Model name" alone says "AMD EPYC" for machines that differ 2-3x on these benchmarks
(an AVX2-only Zen 3 against wider parts), so the family/model numbers and the widest vector
instructions are printed beside it.
"""
import os
import platform
import subprocess


def cpu_name() -> str:
    """e.g. "AMD EPYC (family 25 model 1, AVX2, no AVX-512), 2 cores"."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    except OSError:
        return f"{platform.processor() or 'unknown CPU'}, {os.cpu_count()} cores"
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    fields = {key.strip(): value.strip() for key, value in fields.items()}
    flags = set(fields.get("Flags", "").split())
    vector = ("AVX-512" if "avx512f" in flags else
              "AVX2, no AVX-512" if "avx2" in flags else "no AVX2")
    name = fields.get("Model name") or platform.processor() or "unknown CPU"
    return (f"{name} (family {fields.get('CPU family', '?')} model {fields.get('Model', '?')}, "
            f"{vector}), {os.cpu_count()} cores")


if __name__ == "__main__":
    print(cpu_name())
