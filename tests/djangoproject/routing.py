"""Routing of the test project; tests of each package add their consumers here.

It starts with every consumer of the Channels 1.x Getting Started page
(``tests/djangoproject/tutorial.py``, paths listed there).
"""
from .tutorial import channel_routing as tutorial_routing

channel_routing = [*tutorial_routing]
