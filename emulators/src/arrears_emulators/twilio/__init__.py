"""Twilio Programmable Messaging API emulator (the Messages resource of the 2010-04-01 REST API)."""
