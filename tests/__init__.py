"""The test suite: run ``python -m pytest -q``; fixtures in conftest.py, helpers in tests/kit."""
