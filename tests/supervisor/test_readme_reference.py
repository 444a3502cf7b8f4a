"""The README's configuration reference is the settings table, rendered (one source)."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_readme_configuration_reference_matches_the_settings_table():
    rendered = subprocess.run(
        [sys.executable, "-m", "supervisor.settings_doc"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"<!-- settings:begin[^>]*-->\n(.*?)\n<!-- settings:end -->", readme, re.S)
    assert match, "README.md lost its settings markers"
    assert match.group(1).strip() == rendered, "README is stale: paste `python -m supervisor.settings_doc` between the markers"
