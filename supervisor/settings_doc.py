"""Print the configuration reference as markdown: ``python -m supervisor.settings_doc``.

The README's "Configuration reference" section is this output, generated from the one
settings table (``supervisor/_settings.py``) so documentation and parser cannot drift.
"""

from __future__ import annotations

from ._settings import render_markdown

__all__ = ["render_markdown"]

if __name__ == "__main__":
    print(render_markdown())
