"""The dlt source end to end against the emulator and loopback servers."""
