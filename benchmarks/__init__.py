"""Benchmarks of the Twilio Studio source against the local emulator: ``python -m benchmarks.run``."""
