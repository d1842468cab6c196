"""Twilio Studio source for dlt."""
