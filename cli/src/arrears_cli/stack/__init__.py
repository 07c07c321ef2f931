"""Embedded dev stack."""
