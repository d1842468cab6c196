"""The twilio-studio command, run as a user runs it."""
