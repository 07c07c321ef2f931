"""Incident controls: the sending halt (halts.py), its API (views.py) and the console's ops page uses both.
See docs/security.md, "Incident controls"."""
