"""The Studio emulator against Twilio's spec, SDK and documented behaviour."""
