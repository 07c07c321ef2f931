"""Stripe-style Checkout Sessions emulator: the API, a hosted payment page and signed webhooks."""
