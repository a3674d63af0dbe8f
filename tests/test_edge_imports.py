"""The edge path never imports TensorFlow: checked in fresh interpreters."""
import subprocess
import sys

import pytest

HEAVY = ("tensorflow", "keras", "tf2onnx", "onnx")


@pytest.mark.parametrize("module", ["rnnedge", "rnnedge.runtime", "rnnedge.spec", "rnnedge.manifest",
                                    "rnnedge.cli", "rnnedge.data", "converters"])
def test_import_is_light(module):
    code = (f"import sys, {module}\n"
            f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"importing {module} pulled in {out}"


def test_cli_help_and_presets_are_light():
    code = ("import sys\nfrom rnnedge.cli import cli\n"
            "try:\n    cli.main(['presets', '--json'], standalone_mode=False)\nexcept SystemExit: pass\n"
            f"print('HEAVY', ','.join(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().endswith("HEAVY"), out[-300:]
