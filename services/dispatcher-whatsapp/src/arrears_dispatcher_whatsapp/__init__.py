"""dispatcher-whatsapp: WhatsApp Business Cloud API channel (a plugin: see docs/whatsapp.md)."""
