"""Lets the tests import agent.py and main.py from this folder (pytest puts a root conftest's folder on sys.path)."""
