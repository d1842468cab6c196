"""Faults, kills, hostile answers, odd values and secrets."""
