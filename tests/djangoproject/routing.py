"""Routing of the test project; tests of each package add their consumers here."""
channel_routing = []
