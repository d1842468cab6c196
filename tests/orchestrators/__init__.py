"""Dagster and Airflow, for real, against the emulator."""
