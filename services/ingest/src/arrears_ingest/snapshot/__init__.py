"""The last good snapshot of each source's accounts and the diff that turns a new read into events."""
