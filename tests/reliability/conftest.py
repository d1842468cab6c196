from tests.source.conftest import emulator, emulator_factory, loaded  # noqa: F401  (shared fixtures)
