"""Loads into a real PostgreSQL."""
